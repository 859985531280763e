"""Recurrent cells in the i2h/i2o design: one step of an RNN, LSTM or GRU.

Every cell owns `i2h`, a single `nn.Linear` over `cat(x_t, h_{t-1})` whose
output rows are the pre-activations of all gates, stacked in torch's order.
Its weight therefore splits by columns into torch's two matrices:

    i2h.weight = [ W_ih | W_hh ]      shape (G*H, input_size + hidden_size)
    i2h.bias   =   b_ih + b_hh        one bias: the two torch biases always add

so `i2h.weight[:, :input_size]` is the input-to-hidden matrix (the engines
apply it to every time step in one GEMM) and `i2h.weight[:, input_size:]` the
hidden-to-hidden one. With `output_size=...` a cell also owns `i2o`, an
`nn.Linear` over `cat(x_t, h_t)` giving a per-step output.

`cell(x_t, state=None) -> (output, state)`: output is `i2o`'s when present,
else `h_t`; state is `h` (B, H), or `(h, c)` for the LSTM.

The i2h/i2o design comes from the RNN tutorials this project grew from
(`combined = cat(input, hidden); hidden = i2h(combined); output = i2o(combined)`),
whose code has bugs that these cells fix:
- that RNN applies no nonlinearity (`hidden = i2h(combined)`); here h_t is
  `tanh`, `relu` or `swish` of the pre-activation;
- that LSTM overwrites `input` with the input gate and then feeds that gate
  (not x_t) to its output layer; here gates never shadow x_t and `i2o` sees
  `cat(x_t, h_t)`;
- that GRU multiplies the reset gate into x (its formula) or into h only
  for the candidate but with separate Linear layers; here the candidate uses
  r * h_{t-1} (Cho et al., `reset_after=False`) or r * (W_hn h + b_hn)
  (cuDNN/torch/Keras, `reset_after=True`), and all gates come from one i2h.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqmodels.errors import UserError

NONLINEARITIES = ("tanh", "relu", "swish")


def check_sizes(input_size: int, hidden_size: int, output_size: int | None) -> None:
    for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UserError(f"{name} must be a positive int, got {value!r}")
    if output_size is not None and (not isinstance(output_size, int) or output_size < 1):
        raise UserError(f"output_size must be a positive int or None, got {output_size!r}")


def activation(name: str):
    """The function for a nonlinearity name (checked by the caller)."""
    return {"tanh": torch.tanh, "relu": torch.relu, "swish": F.silu}[name]


class _Cell(nn.Module):
    """Shared plumbing: i2h/i2o construction, init, state creation, output head."""

    num_gates = 1
    has_cell_state = False

    def __init__(self, input_size: int, hidden_size: int, output_size: int | None, bias: bool):
        super().__init__()
        check_sizes(input_size, hidden_size, output_size)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.output_size = output_size
        self.bias = bool(bias)
        self.i2h = nn.Linear(input_size + hidden_size, self.num_gates * hidden_size, bias=bias)
        self.i2o = (
            nn.Linear(input_size + hidden_size, output_size) if output_size is not None else None
        )
        self.bias_hn: nn.Parameter | None = None  # only the reset_after GRU has one
        self._extra_parameters()
        self.reset_parameters()

    def _extra_parameters(self) -> None:
        pass

    def reset_parameters(self) -> None:
        # torch.nn.RNN/LSTM/GRU's init: U(-1/sqrt(H), 1/sqrt(H)) for every recurrent
        # parameter (not nn.Linear's 1/sqrt(fan_in)), so a swapped-in layer trains alike.
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.i2h.parameters():
            nn.init.uniform_(p, -bound, bound)
        if self.bias_hn is not None:
            nn.init.uniform_(self.bias_hn, -bound, bound)

    # Views into i2h, used by the fused and native engines (no copies: autograd
    # carries their gradients back into i2h.weight).
    @property
    def weight_ih(self) -> Tensor:
        return self.i2h.weight[:, : self.input_size]

    @property
    def weight_hh(self) -> Tensor:
        return self.i2h.weight[:, self.input_size :]

    def init_state(self, batch_size: int, device=None, dtype=None):
        """Zero state for a batch: `h` (B, H), or `(h, c)` for the LSTM."""
        w = self.i2h.weight
        h = torch.zeros(
            batch_size, self.hidden_size, device=device or w.device, dtype=dtype or w.dtype
        )
        return (h, torch.zeros_like(h)) if self.has_cell_state else h

    def _output(self, x: Tensor, h: Tensor) -> Tensor:
        return h if self.i2o is None else self.i2o(torch.cat((x, h), -1))

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.output_size is not None:
            s += f", output_size={self.output_size}"
        return s + ("" if self.bias else ", bias=False")


class RNNCell(_Cell):
    """Elman cell: h_t = act(W [x_t, h_{t-1}] + b), act in tanh | relu | swish."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int | None = None,
        nonlinearity: str = "tanh",
        bias: bool = True,
    ):
        if nonlinearity not in NONLINEARITIES:
            raise UserError(
                f"nonlinearity must be one of {', '.join(NONLINEARITIES)}, got {nonlinearity!r}"
            )
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, output_size, bias)
        self._act = activation(nonlinearity)

    def forward(self, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h = self.init_state(x.shape[0], x.device, x.dtype) if state is None else state
        h = self._act(self.i2h(torch.cat((x, h), -1)))
        return self._output(x, h), h

    def extra_repr(self) -> str:
        return super().extra_repr() + f", nonlinearity={self.nonlinearity!r}"


class LSTMCell(_Cell):
    """LSTM cell; i2h rows are the gates i, f, g, o (torch's order)."""

    num_gates = 4
    has_cell_state = True

    def __init__(
        self, input_size: int, hidden_size: int, output_size: int | None = None, bias: bool = True
    ):
        super().__init__(input_size, hidden_size, output_size, bias)

    def forward(
        self, x: Tensor, state: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        h, c = self.init_state(x.shape[0], x.device, x.dtype) if state is None else state
        i, f, g, o = self.i2h(torch.cat((x, h), -1)).chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return self._output(x, h), (h, c)


class GRUCell(_Cell):
    """GRU cell; i2h rows are the gates r, z, n (torch's order).

    reset_after=True (cuDNN/torch/Keras): n = tanh(W_in x + b_n + r * (W_hn h + b_hn)).
    The reset gate scales the hidden product, so that product is kept apart:
    the n-rows of i2h hold [W_in | W_hn] and b_n, and the extra parameter
    `bias_hn` (H,) is b_hn. The r/z rows are applied to cat(x, h) as usual.

    reset_after=False (Cho et al. 2014): n = tanh(W_n [x, r * h] + b_n);
    the n-rows of i2h are applied to cat(x, r * h). No extra parameter.

    Both: h_t = (1 - z) * n + z * h_{t-1} (torch's convention: z keeps the old state).
    """

    num_gates = 3

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int | None = None,
        bias: bool = True,
        reset_after: bool = True,
    ):
        self.reset_after = bool(reset_after)
        super().__init__(input_size, hidden_size, output_size, bias)

    def _extra_parameters(self) -> None:
        if self.bias and self.reset_after:
            self.bias_hn = nn.Parameter(torch.empty(self.hidden_size))

    def forward(self, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h = self.init_state(x.shape[0], x.device, x.dtype) if state is None else state
        H = self.hidden_size
        w, b = self.i2h.weight, self.i2h.bias
        xh = torch.cat((x, h), -1)
        rz = F.linear(xh, w[: 2 * H], None if b is None else b[: 2 * H])
        r, z = torch.sigmoid(rz).chunk(2, -1)
        w_n, b_n = w[2 * H :], None if b is None else b[2 * H :]
        if self.reset_after:
            hn = F.linear(h, w_n[:, self.input_size :], self.bias_hn)
            n = torch.tanh(F.linear(x, w_n[:, : self.input_size], b_n) + r * hn)
        else:
            n = torch.tanh(F.linear(torch.cat((x, r * h), -1), w_n, b_n))
        h = n + z * (h - n)
        return self._output(x, h), h

    def extra_repr(self) -> str:
        return super().extra_repr() + f", reset_after={self.reset_after}"
