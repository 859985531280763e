"""engine="auto": the fastest correct engine for a call's configuration and device.

Decided per call from facts known without timing anything (no first-call cost,
no compilation, works for every dtype torch's kernels and plain ops support):

- CUDA, and torch has the formulation (LSTM, GRU reset_after=True, tanh/relu
  RNN): `native`, i.e. cuDNN, which also handles lengths (packed) fast.
- CPU, one time step (a sampler feeding (B, 1, I) with a carried state):
  `loop`, the fewest ops per call (measured ~2x less per-step time than
  native/fused, whose setup costs more than one step).
- CPU LSTM: `native` (oneDNN's LSTM kernel; with lengths on the padded batch,
  see native.py): 1.0x torch.nn on bench_nn's case (a) against fused's
  1.1-1.2x, and 1.07-1.15x padded torch.nn with lengths (b) against fused's
  1.3-1.45x.
- everything else on CPU (GRU, RNN, with or without lengths): `fused` (one
  oneDNN product and a few pointwise ops per step, hand-written BPTT):
  0.72-0.94x torch.nn for GRU and RNN from 32 to 256 hidden units, where
  `native` measured 0.89-1.23x.

Measured with scripts/bench_nn.py and by hand on the development machine
(2 cores of an AMD EPYC); torch.compile and TorchScript of the fused
recurrence were measured too and not kept (see fused.py).
"""

from __future__ import annotations

from torch import Tensor

from seqmodels.nn.native import native_kind


def choose_engine(layer, x: Tensor, lengths: Tensor | None) -> str:
    kind = native_kind(layer)
    if x.is_cuda:
        return "fused" if kind is None else "native"
    if x.shape[1] == 1:  # x is batch-first here: (B, T, I)
        return "loop"
    return "native" if kind == "lstm" else "fused"
