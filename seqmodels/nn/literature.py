"""Three cells from the literature, written on the public `Cell` API as worked examples.

Each is a subclass that names its gates and state and writes `step` (a dozen
lines); `Recurrent(cell, ...)` runs it stacked, bidirectional, with lengths,
on every engine that can (the fused engine included), and a config picks it
with `model=custom model.cell._target_=seqmodels.nn.PeepholeLSTMCell`.

- `PeepholeLSTMCell`: Gers & Schmidhuber (2000), "Recurrent nets that time and
  count": the gates also read the cell state (i and f the old one, o the new).
- `IndRNNCell`: Li et al. (2018), "Independently recurrent neural network":
  h_t = relu(W x_t + u * h_{t-1} + b), one recurrent weight per unit, so i2h
  reads x_t alone (`hidden_product = False`); known for long sequences.
- `CIFGLSTMCell`: the coupled input-forget gate LSTM of Greff et al. (2017),
  "LSTM: A Search Space Odyssey": i = 1 - f, three gates instead of four
  (written here without peepholes, like most libraries' coupled LSTMs).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from seqmodels.nn.cells import Cell


class PeepholeLSTMCell(Cell):
    """LSTM whose gates see the cell state: i, f from c_{t-1}, o from c_t (diagonal weights)."""

    gate_names = ("i", "f", "g", "o")
    state_names = ("h", "c")

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        output_size: int | None = None,
    ):
        super().__init__(input_size, hidden_size, bias, output_size=output_size)
        self.peephole = nn.Parameter(torch.empty(3, hidden_size))  # rows: i, f, o
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        bound = 1.0 / math.sqrt(self.hidden_size)
        nn.init.uniform_(self.peephole, -bound, bound)

    def step(self, gates: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        _, c = state
        i, f, g, o = gates.chunk(4, -1)
        p = self.peephole  # indexed, not unpacked: see Cell's note on torch.export
        i = torch.sigmoid(torch.addcmul(i, p[0], c))
        f = torch.sigmoid(torch.addcmul(f, p[1], c))
        c = torch.addcmul(f * c, i, torch.tanh(g))
        o = torch.sigmoid(torch.addcmul(o, p[2], c))
        return o * torch.tanh(c), c


class IndRNNCell(Cell):
    """h_t = relu(W x_t + u * h_{t-1} + b): each unit recurs only on itself."""

    hidden_product = False  # i2h reads x_t alone; the recurrence is u * h, in step

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        output_size: int | None = None,
    ):
        super().__init__(input_size, hidden_size, bias, output_size=output_size)
        self.recurrent_weight = nn.Parameter(torch.empty(hidden_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        # |u| <= 1 keeps a unit's memory from growing without bound (Li et al. use
        # U(0, 1), and cap |u| near 1 for sequences of thousands of steps)
        nn.init.uniform_(self.recurrent_weight, 0.0, 1.0)

    def step(self, gates: Tensor, state: Tensor) -> Tensor:
        return torch.relu(torch.addcmul(gates, self.recurrent_weight, state))


class CIFGLSTMCell(Cell):
    """LSTM with the input gate coupled to the forget gate: c_t = f c_{t-1} + (1 - f) g."""

    gate_names = ("f", "g", "o")
    state_names = ("h", "c")

    def step(self, gates: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        _, c = state
        f, g, o = gates.chunk(3, -1)
        f, g = torch.sigmoid(f), torch.tanh(g)
        c = torch.addcmul(g, f, c - g)  # f c + (1 - f) g
        return torch.sigmoid(o) * torch.tanh(c), c
