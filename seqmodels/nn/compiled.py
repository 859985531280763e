"""The compiled engine: fused.py's recurrence with K time steps per compiled call.

On the fused engine a cell's `step` runs as eager torch ops: some 15 per step in
the forward and 25 in the backward for an LSTM-like cell, each a separate pass
over a (B, H) state and, below torch's parallel grain (32,768 elements), on one
core. torch.compile of one step would fuse them, but each call of a compiled
function costs tens of microseconds, about what the fusion saves. Here the
function compiled is a chunk of K steps:

    for t in chunk:  gates = gx_t + h_{t-1} W_hh^T;  state = cell.step(gates, state)

so the call cost is paid once per K steps, and inductor turns each step into one
product and one fused pointwise kernel in the forward, and one of each in the
backward (AOTAutograd compiles the chunk's backward too; autograd sees one node
per chunk). Everything else is fused.py's: the input product for all steps in
one GEMM, the recurrent weight passed in detached so that its gradient stays one
product over all steps (fused._Projection), lengths as a `torch.where` that keeps
an ended sequence's state.

Compilation happens on a layer's first call for each (cell class, batch, hidden
size, K, dtype, device, lengths or not) and again for inference (no_grad): tens
of seconds each on a small CPU (`compile_seconds` keeps what each took). Each
such key gets its own copy of the chunk function, so one key's recompilations
never exhaust another's share of dynamo's recompile limit. Where compilation
fails (no C++ compiler, a step torch.compile cannot trace), one warning says why
and the same chunks run eagerly, with the same numbers.

tanh is compiled as 2 sigmoid(2x) - 1 (inductor's `cpp.use_decompose_tanh`): on
the CPUs measured its vectorised tanh is several times slower than torch's own.
"""

from __future__ import annotations

import time
import types
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from seqmodels.nn import fused
from seqmodels.nn.cells import Cell, State, check_step_result

MAX_CHUNK = 16  # steps per compiled call: compile time grows with it, call cost shrinks
INDUCTOR_OPTIONS: dict[str, str | int | bool | Callable[..., Any]] = {
    "cpp.use_decompose_tanh": True
}

# (cell class, B, H, K, dtype, device type, with lengths) -> the compiled chunk
_CHUNKS: dict[tuple, Callable] = {}
# the same keys -> seconds the first call took (compilation of forward and, lazily, backward)
compile_seconds: dict[tuple, float] = {}
_failed: dict[tuple, str] = {}  # keys whose compilation failed: they run eagerly


def run(cell: Cell, x: Tensor, state: State, lengths: Tensor | None) -> tuple[Tensor, State]:
    """x (T, B, I) time-major -> (hs (T, B, H), final state), as fused.run, chunk by chunk."""
    return fused.run(cell, x, state, lengths, steps=run_chunks)


def chunk_size(T: int) -> int:
    """K for a sequence of T steps: T itself up to MAX_CHUNK, else the largest divisor of T
    in [MAX_CHUNK/2, MAX_CHUNK] (one compiled size for the whole sequence), else MAX_CHUNK
    (and a second size for the rest)."""
    if T <= MAX_CHUNK:
        return T
    for k in range(MAX_CHUNK, MAX_CHUNK // 2 - 1, -1):
        if T % k == 0:
            return k
    return MAX_CHUNK


def run_chunks(
    cell: Cell,
    gx: Tensor,
    gh: Tensor | None,
    wt: Tensor | None,
    states: tuple[Tensor, ...],
    valid: Tensor | None,
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """The recurrence over gx (T, B, G) in chunks: hs (T, B, H) and the final states.

    gh (T, B, G): per-step tensors the hidden product is added to (cells with a
    split_step), or None; wt: W_hh^T detached, or None for a cell without hidden
    product; valid (T, B, 1): where a step is within its sequence, or None.
    """
    T, B = gx.shape[0], gx.shape[1]
    K = chunk_size(T)
    g_hs = gh.split(K) if gh is not None else None
    vs = valid.split(K) if valid is not None else None
    hs: list[Tensor] = []
    for n, g in enumerate(gx.split(K)):
        g_h = g_hs[n] if g_hs is not None else None
        v = vs[n] if vs is not None else None
        out = _chunk_function(cell, g, valid is not None)(cell, g, g_h, wt, v, *states)
        hs.append(out[0])
        states = tuple(out[1:])
        if n == 0:
            check_step_result(cell, states if len(states) > 1 else states[0], B)
    return (hs[0] if len(hs) == 1 else torch.cat(hs)), states


def chunk(
    cell: Cell,
    gx: Tensor,
    gh: Tensor | None,
    wt: Tensor | None,
    valid: Tensor | None,
    *states: Tensor,
) -> tuple[Tensor, ...]:
    """K steps of the cell: (hs (K, B, H), *final states). The function that is compiled."""
    one = len(states) == 1
    ghs = gh.unbind(0) if gh is not None else None
    vs = valid.unbind(0) if valid is not None else None
    hs = []
    for t, g in enumerate(gx.unbind(0)):
        h, old = states[0], (states[0] if one else states)
        if wt is None:
            new = cell.step(g, old)
        elif ghs is not None:
            new = cell.split_step(g, torch.addmm(ghs[t], h, wt), old)
        else:
            new = cell.step(torch.addmm(g, h, wt), old)
        new_states = new if isinstance(new, tuple) else (new,)
        if vs is not None:
            new_states = fused._keep_ended(new_states, states, vs[t])
        states = new_states
        hs.append(states[0])
    return (torch.stack(hs), *states)


def _chunk_function(cell: Cell, gx: Tensor, with_lengths: bool) -> Callable:
    """The compiled chunk for this call's key (compiled on first use), or `chunk` itself
    where compiling failed."""
    B, K = gx.shape[1], gx.shape[0]
    key = (type(cell), B, cell.hidden_size, K, gx.dtype, gx.device.type, with_lengths)
    if key in _failed:
        return chunk
    fn = _CHUNKS.get(key)
    if fn is None:
        # dynamo keeps its compiled variants (and its recompile limit) per code object:
        # a copy of the code per key keeps each key's variants (grad, no_grad) its own
        code = chunk.__code__.replace(co_name=f"chunk_{len(_CHUNKS)}")
        own = types.FunctionType(code, chunk.__globals__, code.co_name)
        compiled = torch.compile(own, dynamic=False, fullgraph=True, options=INDUCTOR_OPTIONS)
        fn = _CHUNKS[key] = _first_call_timed(key, compiled)
    return fn


def _first_call_timed(key: tuple, compiled: Callable) -> Callable:
    """`compiled`, whose first call is timed (compile_seconds) and falls back to eager
    (one warning) if compilation fails."""
    state = {"first": True}

    def call(*args: Any):
        if not state["first"]:
            return compiled(*args)
        state["first"] = False
        start = time.perf_counter()
        try:
            out = compiled(*args)
        except Exception as error:  # noqa: BLE001 - any compiler failure: run eagerly
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            _failed[key] = first_line
            _CHUNKS.pop(key, None)
            warnings.warn(
                f"engine='compiled': torch.compile failed for {key[0].__name__} ({first_line}); "
                "running its steps eagerly (the fused engine's speed)",
                RuntimeWarning,
                stacklevel=2,
            )
            return chunk(*args)
        compile_seconds[key] = time.perf_counter() - start
        return out

    return call
