"""engine="auto": the fastest correct engine for a call's configuration and device.

Decided per call from facts known without timing anything (no first-call cost,
no compilation, works for every dtype torch's kernels and plain ops support):

- CUDA, and torch has the formulation (LSTM, GRU reset_after=True, tanh/relu
  RNN): `native`, i.e. cuDNN, which also handles lengths (packed) fast.
- CPU, one time step (a sampler feeding (B, 1, I) with a carried state):
  `loop`, the fewest ops per call (measured ~2x less per-step time than
  native/fused, whose setup costs more than one step).
- CPU without lengths: `native` (torch's C++ loops; oneDNN for the LSTM),
  measured 1.0x torch.nn against 1.25-1.55x for `fused` on case (a).
- CPU LSTM with lengths: `loop` (1.37x padded torch.nn against fused's 1.53x
  in the same run: our LSTM BPTT loses to autograd over the cell here).
- everything else (lengths on CPU, GRU reset_after=False, swish RNN): `fused`
  (one input GEMM + hand-written BPTT, both directions in one loop). torch's
  packed path for lengths is ~5x slower than padded on CPU, while `fused`
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
    if lengths is None:
        return "native"
    return "loop" if kind == "lstm" else "fused"
