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

With a narrow input (input_size <= INLINE_MAX_INPUT, as pixel MNIST's one pixel per
step) the whole-sequence input product is the wrong trade: its (T, B, G) output and
gradient dwarf x itself and are written and read once more for nothing. There each
step of a chunk does its own input product from the cell's weights (chunk_inline), and
the chunk's backward gives the weights' gradients, step by step as fused_lstm.py does
(on pixel MNIST it beat both one product for the sequence and one per chunk:
docs/speed.md).

Compilation happens on a layer's first call for each (cell class, hidden size, K,
dtype, device, lengths or not), again for inference (no_grad), and once more when
a second batch size comes, for any batch size (dynamo's automatic dynamic shapes;
measured as fast as the first): tens of seconds each on a small CPU, a few with
inductor's on-disk cache warm (`compile_seconds` keeps what each first call took). Each
such key gets its own copy of the chunk function, so one key's recompilations
never exhaust another's share of dynamo's recompile limit. Where compilation
fails (no C++ compiler, a step torch.compile cannot trace), one warning says why
and the same chunks run eagerly, with the same numbers.

tanh is compiled as 2 sigmoid(2x) - 1 (inductor's `cpp.use_decompose_tanh`): on
the CPU measured (an AVX-512 Xeon) its vectorised tanh was several times slower than
torch's own (docs/speed.md).
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
from seqmodels.nn.cells import Cell, State, check_step_result, overrides

MAX_CHUNK = 16  # steps per compiled call: compile time grows with it, call cost shrinks
INLINE_MAX_INPUT = 16  # input_size up to which each chunk does its own input product
INDUCTOR_OPTIONS: dict[str, str | int | bool | Callable[..., Any]] = {
    "cpp.use_decompose_tanh": True
}

# (cell class, H, K, dtype, device type, with lengths, chunk or chunk_inline) -> the compiled chunk
_CHUNKS: dict[tuple, Callable] = {}
# the same keys -> seconds the first call took (compilation of forward and, lazily, backward)
compile_seconds: dict[tuple, float] = {}
_failed: dict[tuple, str] = {}  # keys whose compilation failed: they run eagerly


def run(cell: Cell, x: Tensor, state: State, lengths: Tensor | None) -> tuple[Tensor, State]:
    """x (T, B, I) time-major -> (hs (T, B, H), final state), as fused.run, chunk by chunk."""
    if cell.input_size > INLINE_MAX_INPUT:
        return fused.run(cell, x, state, lengths, steps=run_chunks)
    if state is None:
        state = cell.init_state(x.shape[1], x.device, x.dtype)
    if torch.is_autocast_enabled(x.device.type):  # in fp32, as fused.run
        with torch.autocast(x.device.type, enabled=False):
            return run(cell, x.float(), fused._map(state, lambda s: s.float()), lengths)
    states = (state,) if cell.state_size == 1 else tuple(state)
    valid = None
    if lengths is not None:
        valid = torch.arange(x.shape[0], device=x.device).view(-1, 1, 1) < lengths.view(1, -1, 1)
    hs, states = run_chunks(cell, x, None, None, states, valid, inline=True)
    return hs, (states[0] if cell.state_size == 1 else states)


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
    inline: bool = False,
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """The recurrence over gx (T, B, G) in chunks: hs (T, B, H) and the final states.

    gh (T, B, G): per-step tensors the hidden product is added to (cells with a
    split_step), or None; wt: W_hh^T detached, or None for a cell without hidden
    product; valid (T, B, 1): where a step is within its sequence, or None.
    inline: gx is x (T, B, I) and each chunk does the products itself (chunk_inline).
    """
    T, B = gx.shape[0], gx.shape[1]
    K = chunk_size(T)
    g_hs = gh.split(K) if gh is not None else None
    vs = valid.split(K) if valid is not None else None
    if torch.is_grad_enabled():
        # every chunk after the first gets states that require grad: so does the first
        # (else it compiles a graph of its own); a gradient no one reads, one (B, H) each
        states = tuple(s if s.requires_grad else s.detach().requires_grad_() for s in states)
    hs: list[Tensor] = []
    for n, g in enumerate(gx.split(K)):
        g_h = g_hs[n] if g_hs is not None else None
        v = vs[n] if vs is not None else None
        if inline:
            fn = _chunk_function(cell, g, valid is not None, chunk_inline)
            out = fn(cell, g, v, *states)
        else:
            out = _chunk_function(cell, g, valid is not None, chunk)(cell, g, g_h, wt, v, *states)
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
        elif overrides(cell, "split_step"):  # (chunk_inline: the hidden product's gradient here)
            new = cell.split_step(g, h @ wt, old)
        else:
            new = cell.step(torch.addmm(g, h, wt), old)
        new_states = new if isinstance(new, tuple) else (new,)
        if vs is not None:
            new_states = fused._keep_ended(new_states, states, vs[t])
        states = new_states
        hs.append(states[0])
    return (torch.stack(hs), *states)


def chunk_inline(
    cell: Cell, x: Tensor, valid: Tensor | None, *states: Tensor
) -> tuple[Tensor, ...]:
    """`chunk` for a narrow input: x (K, B, I) and the cell's own weights, every product
    here, per step (the chunk's backward gives the weights' gradients)."""
    one = len(states) == 1
    w_ih, b, w_hh = cell.weight_ih.t(), cell.i2h.bias, cell.weight_hh
    split = overrides(cell, "split_step")
    vs = valid.unbind(0) if valid is not None else None
    hs = []
    for t, x_t in enumerate(x.unbind(0)):
        h, old = states[0], (states[0] if one else states)
        g = x_t @ w_ih if b is None else torch.addmm(b, x_t, w_ih)
        if w_hh is None:
            new = cell.step(g, old)
        elif split:
            new = cell.split_step(g, h @ w_hh.t(), old)
        else:
            new = cell.step(g + h @ w_hh.t(), old)
        new_states = new if isinstance(new, tuple) else (new,)
        if vs is not None:
            new_states = fused._keep_ended(new_states, states, vs[t])
        states = new_states
        hs.append(states[0])
    return (torch.stack(hs), *states)


def _chunk_function(cell: Cell, x: Tensor, with_lengths: bool, body: Callable) -> Callable:
    """The compiled `body` (chunk or chunk_inline) for this call's key (compiled on first
    use), or `body` itself where compiling failed."""
    K = x.shape[0]
    key = (type(cell), cell.hidden_size, K, x.dtype, x.device.type, with_lengths, body.__name__)
    if key in _failed:
        return body
    fn = _CHUNKS.get(key)
    if fn is None:
        # dynamo keeps its compiled variants (and its recompile limit) per code object:
        # a copy of the code per key keeps each key's variants (grad, no_grad) its own
        code = body.__code__.replace(co_name=f"{body.__name__}_{len(_CHUNKS)}")
        own = types.FunctionType(code, body.__globals__, code.co_name)
        compiled = torch.compile(own, dynamic=None, fullgraph=True, options=INDUCTOR_OPTIONS)
        fn = _CHUNKS[key] = _first_call_timed(key, compiled, body)
    return fn


def _first_call_timed(key: tuple, compiled: Callable, body: Callable) -> Callable:
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
            return body(*args)
        compile_seconds[key] = time.perf_counter() - start
        return out

    return call
