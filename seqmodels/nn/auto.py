"""engine="auto": the fastest engine that can run a call's configuration on its device.

A fixed rule from facts known without timing anything (no first-call cost, no
compilation, every dtype torch's kernels and plain ops support):

- CUDA, for the cells torch has (LSTM, GRU reset_after=True, tanh/relu RNN):
  `native`, i.e. cuDNN, which also handles lengths (packed) fast.
- CPU, one time step (a sampler feeding (B, 1, I) with a carried state):
  `loop`, the fewest ops per call: native and fused pay a setup that only
  many steps amortise.
- CPU LSTM over long sequences (T >= 256, B*H >= 8192, in fp32; pixel MNIST):
  `fused`, whose LSTM recurrence keeps its buffers between calls
  (fused_lstm.py), where native's oneDNN kernel allocates its workspace afresh
  on every call and pays for it again in page faults. Below these sizes the
  ranking of the two depends on the CPU (fused ahead on an AMD EPYC, native on
  an Intel Xeon: README, Speed), and native is never far behind.
- the other CPU calls of the cells torch has, and any under autocast (oneDNN's
  bf16 kernels beat fused, which computes in fp32): `native`, with lengths on
  the padded batch (see native.py).
- every other cell (one's own, Cho et al.'s GRU, the swish RNN): `fused`, on
  CUDA too, or `loop` for a cell that defines no `step` for it to run.
- `native` is never picked where its kernel cannot run here (see
  native.kernel_problem: oneDNN has no bf16 LSTM on CPUs without AVX-512):
  `fused` instead.

What each engine can run is the layer's `engine_support` record (support.py);
this rule only ranks the engines that can.

The measurements behind the rule are `scripts/bench_nn.py`'s and
`scripts/bench_lstm.py`'s; the README keeps the tables.
"""

from __future__ import annotations

import torch
from torch import Tensor

FUSED_LSTM_MIN_STEPS = 256  # T
FUSED_LSTM_MIN_STEP_SIZE = 8192  # B * H: one step's work


def choose_engine(layer, x: Tensor, lengths: Tensor | None) -> str:
    """The engine for this call of `layer` on x (B, T, I) batch-first (see the module doc)."""
    support = layer.engine_support
    kind = support.kernel
    B, T = x.shape[0], x.shape[1]  # x is batch-first here: (B, T, I)
    if x.is_cuda:
        engine = "fused" if kind is None else "native"
    elif T == 1:
        return "loop"
    elif kind == "lstm":
        long = T >= FUSED_LSTM_MIN_STEPS and B * layer.hidden_size >= FUSED_LSTM_MIN_STEP_SIZE
        engine = "fused" if long and not torch.is_autocast_enabled("cpu") else "native"
    else:
        engine = "fused" if kind is None else "native"
    if engine == "native" and support.native_problem(x) is not None:
        engine = "fused"
    if engine == "fused" and support.fused is not None:
        return "loop"
    return engine
