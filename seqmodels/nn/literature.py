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
    r"""An LSTM cell whose gates also read the cell state (Gers & Schmidhuber, 2000).

    .. math::
        \begin{array}{ll}
        i_t = \sigma(W_i [x_t, h_{t-1}] + b_i + p_i \odot c_{t-1}) \\
        f_t = \sigma(W_f [x_t, h_{t-1}] + b_f + p_f \odot c_{t-1}) \\
        c_t = f_t \odot c_{t-1} + i_t \odot \tanh(W_g [x_t, h_{t-1}] + b_g) \\
        o_t = \sigma(W_o [x_t, h_{t-1}] + b_o + p_o \odot c_t) \\
        h_t = o_t \odot \tanh(c_t)
        \end{array}

    The peephole weights :math:`p_i, p_f, p_o` are diagonal: the rows of the
    parameter ``peephole`` (3, hidden_size). "Recurrent nets that time and count".

    Args:
        input_size: The number of features of the input :math:`x_t`.
        hidden_size: The number of features of :math:`h_t` and :math:`c_t`.
        bias: If False, the cell has no bias. Default: True
        output_size: If set, an ``i2o`` layer maps :math:`[x_t, h_t]` to an output of
            this size (keyword only). Default: None

    Shape:
        - x: :math:`(B, \text{input\_size})`.
        - state: a tuple ``(h, c)``, each :math:`(B, \text{hidden\_size})`, or None for
          zeros.
        - output: :math:`(B, \text{output\_size})` with ``output_size``, else ``h``.

    Returns:
        ``(output, (h, c))``: the output and the new state.

    Example:
        >>> import torch
        >>> from seqmodels.nn import PeepholeLSTMCell, Recurrent
        >>> cell = PeepholeLSTMCell(10, 20)
        >>> output, (h, c) = cell(torch.randn(3, 10))
        >>> layer = Recurrent(PeepholeLSTMCell, 10, 20, bidirectional=True)
        >>> output, (h_n, c_n) = layer(torch.randn(3, 5, 10))
        >>> output.shape, h_n.shape
        (torch.Size([3, 5, 40]), torch.Size([2, 3, 20]))
    """

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
    r"""An independently recurrent cell (IndRNN, Li et al. 2018): each unit recurs on itself.

    .. math::
        h_t = \text{relu}(W x_t + b + u \odot h_{t-1})

    with one recurrent weight per unit, the parameter ``recurrent_weight`` (hidden_size,),
    drawn from :math:`\mathcal{U}(0, 1)` so no unit's memory grows without bound. ``i2h``
    reads :math:`x_t` alone (``hidden_product = False``). Known for long sequences.

    Args:
        input_size: The number of features of the input :math:`x_t`.
        hidden_size: The number of features of :math:`h_t`.
        bias: If False, the cell has no bias. Default: True
        output_size: If set, an ``i2o`` layer maps :math:`[x_t, h_t]` to an output of
            this size (keyword only). Default: None

    Shape:
        - x: :math:`(B, \text{input\_size})`.
        - h: :math:`(B, \text{hidden\_size})`, or None for zeros.
        - output: :math:`(B, \text{output\_size})` with ``output_size``, else ``h``.

    Returns:
        ``(output, h)``: the output and the new hidden state.

    Example:
        >>> import torch
        >>> from seqmodels.nn import IndRNNCell, Recurrent
        >>> layer = Recurrent(IndRNNCell, 10, 20, num_layers=2)
        >>> output, h_n = layer(torch.randn(3, 100, 10))
        >>> output.shape, h_n.shape
        (torch.Size([3, 100, 20]), torch.Size([2, 3, 20]))
    """

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
    r"""An LSTM cell whose input gate is one minus its forget gate (CIFG, Greff et al. 2017).

    .. math::
        \begin{array}{ll}
        f_t = \sigma(W_f [x_t, h_{t-1}] + b_f) \\
        g_t = \tanh(W_g [x_t, h_{t-1}] + b_g) \\
        o_t = \sigma(W_o [x_t, h_{t-1}] + b_o) \\
        c_t = f_t \odot c_{t-1} + (1 - f_t) \odot g_t \\
        h_t = o_t \odot \tanh(c_t)
        \end{array}

    Three gates (f, g, o) instead of four, without peepholes like most libraries'
    coupled LSTMs ("LSTM: A Search Space Odyssey").

    Args:
        input_size: The number of features of the input :math:`x_t`.
        hidden_size: The number of features of :math:`h_t` and :math:`c_t`.
        bias: If False, the cell has no bias. Default: True
        output_size: If set, an ``i2o`` layer maps :math:`[x_t, h_t]` to an output of
            this size (keyword only). Default: None

    Shape:
        - x: :math:`(B, \text{input\_size})`.
        - state: a tuple ``(h, c)``, each :math:`(B, \text{hidden\_size})`, or None for
          zeros.
        - output: :math:`(B, \text{output\_size})` with ``output_size``, else ``h``.

    Returns:
        ``(output, (h, c))``: the output and the new state.

    Example:
        >>> import torch
        >>> from seqmodels.nn import CIFGLSTMCell
        >>> cell = CIFGLSTMCell(10, 20, False)
        >>> output, (h, c) = cell(torch.randn(3, 10))
        >>> cell.i2h.weight.shape  # three gates
        torch.Size([60, 30])
    """

    gate_names = ("f", "g", "o")
    state_names = ("h", "c")

    def step(self, gates: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        _, c = state
        f, g, o = gates.chunk(3, -1)
        f, g = torch.sigmoid(f), torch.tanh(g)
        c = torch.addcmul(g, f, c - g)  # f c + (1 - f) g
        return torch.sigmoid(o) * torch.tanh(c), c
