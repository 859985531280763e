"""Large CPU buffers kept from one call to the next, like CUDA's caching allocator.

A long recurrence stores a few hundred MB per call for its backward (pixel MNIST's
LSTM: 784 steps x 128 sequences). Fresh memory from the OS costs a page fault
per 4 KiB on first touch, and glibc hands blocks this large back to the OS on
free, so every training step would pay for all of it again, a large share of
the step. `empty` instead hands out a kept buffer that nothing refers to any more.

"Nothing refers to it" is read off the buffer's storage: every tensor that views
it (an output the caller still holds, a tensor saved for a backward that has not
run, or that ran with retain_graph=True) holds a reference, so a buffer is handed
out again only once all of them are gone. The count is torch's
`torch._C._storage_Use_Count`, which torch.compile's CUDA graph trees use for the
same purpose; where a build lacks it, every call gets fresh memory.

`release()` drops the kept buffers (e.g. after training, to give the memory back).
"""

from __future__ import annotations

import math
import threading

import torch
from torch import Tensor

# Smaller blocks come from glibc's heap, which reuses them without new page faults.
MIN_BYTES = 1 << 20
# How many buffers to keep: a deep bidirectional stack holds two per layer and
# direction from its forward to its backward.
KEEP = 16

_kept: list[Tensor] = []  # least recently handed out first
_lock = threading.Lock()


def _use_count(buf: Tensor) -> int | None:
    count = getattr(torch._C, "_storage_Use_Count", None)
    return None if count is None else count(buf.untyped_storage()._cdata)


# A buffer's own count when nothing else refers to it (the tensor, and the
# Python storage object that untyped_storage() returns).
_FREE = _use_count(torch.empty(1))


def empty(shape: tuple[int, ...], like: Tensor) -> Tensor:
    """An uninitialised tensor of `shape` with like's dtype and device; on CPU and from
    MIN_BYTES up, a view of a kept buffer when one is free."""
    n = math.prod(shape)
    if like.device.type != "cpu" or n * like.element_size() < MIN_BYTES or _FREE is None:
        return like.new_empty(shape)
    with _lock:
        best = None
        for k, buf in enumerate(_kept):
            fits = buf.dtype == like.dtype and n <= buf.numel() <= 2 * n
            if fits and (best is None or buf.numel() < _kept[best].numel()):
                if _use_count(buf) == _FREE:
                    best = k
        if best is not None:
            buf = _kept.pop(best)
        else:
            buf = like.new_empty(n)
            # forget the least recently used free buffers beyond KEEP
            free = [id(b) for b in _kept if _use_count(b) == _FREE]
            drop = set(free[: max(0, len(_kept) + 1 - KEEP)])
            _kept[:] = [b for b in _kept if id(b) not in drop]
        _kept.append(buf)
        return buf[:n].view(shape)


def release() -> None:
    """Forget every kept buffer (those still in use are freed when their users let go)."""
    with _lock:
        _kept.clear()
