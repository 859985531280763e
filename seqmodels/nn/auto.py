"""engine="auto": the fastest engine that can run a call's configuration on its device.

A fixed rule from facts known without timing anything (no first-call cost, no
compilation, every dtype torch's kernels and plain ops support):

- CUDA, where torch has the formulation (LSTM, GRU reset_after=True, tanh/relu
  RNN): `native`, i.e. cuDNN, which also handles lengths (packed) fast.
- CPU, one time step (a sampler feeding (B, 1, I) with a carried state):
  `loop`, the fewest ops per call: native and fused pay a setup that only
  many steps amortise.
- CPU LSTM: `native`, oneDNN's LSTM kernel (with lengths on the padded batch,
  see native.py), which the hand-written LSTM recurrence does not beat.
- everything else on CPU (GRU, RNN, with or without lengths): `fused`, which
  runs torch's GRU/RNN formulation faster than torch's own CPU kernels do.
- `native` is never picked where its kernel cannot run here (see
  native.kernel_problem: oneDNN has no bf16 LSTM on CPUs without AVX-512):
  `fused` instead.

The measurements behind the rule are `scripts/bench_nn.py`'s; the README
keeps the table.
"""

from __future__ import annotations

from torch import Tensor

from seqmodels.nn.native import kernel_problem


def choose_engine(layer, x: Tensor, lengths: Tensor | None) -> str:
    kind = layer.native_kernel()
    if x.is_cuda:
        engine = "fused" if kind is None else "native"
    elif x.shape[1] == 1:  # x is batch-first here: (B, T, I)
        return "loop"
    else:
        engine = "native" if kind == "lstm" else "fused"
    if engine == "native" and kernel_problem(kind, x) is not None:
        return "fused"
    return engine
