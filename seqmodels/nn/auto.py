"""engine="auto": the fastest correct engine for a call's configuration and device.

Decided per call from facts known without timing anything (no first-call cost,
no compilation, works for every dtype torch's kernels and plain ops support):

- CUDA, and torch has the formulation (LSTM, GRU reset_after=True, tanh/relu
  RNN): `native`, i.e. cuDNN, which also handles lengths (packed) fast.
- CPU, one time step (a sampler feeding (B, 1, I) with a carried state):
  `loop`, the fewest ops per call (measured ~2x less per-step time than
  native/fused, whose setup costs more than one step).
- CPU, LSTM without lengths: `native` (oneDNN's fused LSTM fwd+bwd).
- everything else: `fused` (one input GEMM + hand-written BPTT). On CPU torch's
  GRU/RNN kernels are aten loops that `fused` matches or beats, and torch's
  packed path for lengths is several times slower than padded, while `fused`
  handles lengths for the price of a mask and a gather.

Measured with scripts/bench_nn.py; torch.compile and TorchScript of the fused
recurrence were measured too and not kept (see the report in the README).
"""

from __future__ import annotations

from torch import Tensor

from seqmodels.nn.native import native_kind


def choose_engine(layer, x: Tensor, lengths: Tensor | None) -> str:
    kind = native_kind(layer)
    if kind is None:
        return "loop" if x.shape[1] == 1 and not x.is_cuda else "fused"
    if x.is_cuda:
        return "native"
    if x.shape[1] == 1:  # x is batch-first here: (B, T, I)
        return "loop"
    if kind == "lstm" and lengths is None:
        return "native"
    return "fused"
