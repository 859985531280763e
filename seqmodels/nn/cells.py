"""Recurrent cells in the i2h/i2o design, and `Cell`, the base class for a cell of your own.

A cell is one step of a recurrent network in two parts:

1. `i2h`, a single `nn.Linear` over `cat(x_t, h_{t-1})` whose output rows are
   the pre-activations of every gate, one block of `hidden_size` rows per name
   in `gate_names`. Its weight splits by columns into torch's two matrices:

       i2h.weight = [ W_ih | W_hh ]      shape (G*H, input_size + hidden_size)
       i2h.bias   =   b_ih + b_hh        one bias: the two torch biases always add

   so the layers' fast engines apply `W_ih` to every time step in one matrix
   product and `W_hh` once per step.
2. `step(gates, state) -> state`: the new state from the gates and the old
   state, in any torch ops (the fused engine differentiates it with autograd).

A cell of your own is a subclass that names its gates and state and writes
`step` (a peephole LSTM, Gers & Schmidhuber 2000):

    class PeepholeLSTMCell(Cell):
        gate_names = ("i", "f", "g", "o")
        state_names = ("h", "c")

        def __init__(self, input_size, hidden_size, bias=True):
            super().__init__(input_size, hidden_size, bias=bias)
            self.peephole = nn.Parameter(torch.zeros(3, hidden_size))

        def step(self, gates, state):
            h, c = state
            i, f, g, o = gates.chunk(4, -1)
            p = self.peephole
            c = torch.sigmoid(f + p[1] * c) * c + torch.sigmoid(i + p[0] * c) * torch.tanh(g)
            return torch.sigmoid(o + p[2] * c) * torch.tanh(c), c

and `Recurrent(PeepholeLSTMCell, 128, 256, num_layers=2, bidirectional=True)`
gives it everything the built-in layers have (recurrent.py). The built-in
`RNNCell`, `LSTMCell` and `GRUCell` below are written the same way.

What a cell may also set:
- `hidden_product = False`: i2h reads x_t alone (`nn.Linear(input_size, G*H)`)
  and `step` applies the recurrence itself, as IndRNN's `u * h_{t-1}`.
- `split_step(input_gates, hidden_gates, state)` instead of `step`, for a cell
  that needs the two halves of the product apart (the reset_after GRU scales
  `W_hn h + b_hn` by its reset gate).
- parameters of its own, made in `__init__` after `super().__init__()`.

`step` may use any differentiable torch ops. For torch.export with a dynamic
sequence length (torch's `scan` operator, fused.py), index a parameter
(`self.p[0]`) rather than unpacking it (`a, b = self.p`), which scan refuses.

`cell(x_t, state=None) -> (output, state)`: output is `i2o(cat(x_t, h_t))` when
the cell has `output_size=`, else h_t; state is a tensor h (B, H) when
`state_names` has one name, else a tuple (h, c, ...) of such tensors, h first,
any number of them. A one-state `step` may return h or `(h,)`; the layers check
what `step` returns on the first step of each call (`check_step_result`).

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

import functools
import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seqmodels.errors import UserError

NONLINEARITIES = ("tanh", "relu", "swish")

State = Any  # a tensor h (B, H), or a tuple (h, c, ...) of such tensors


def check_sizes(input_size: int, hidden_size: int, output_size: int | None) -> None:
    for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UserError(f"{name} must be a positive int, got {value!r}")
    if output_size is not None and (not isinstance(output_size, int) or output_size < 1):
        raise UserError(f"output_size must be a positive int or None, got {output_size!r}")


def activation(name: str):
    """The function for a nonlinearity name (checked by the caller)."""
    return {"tanh": torch.tanh, "relu": torch.relu, "swish": F.silu}[name]


class Cell(nn.Module):
    r"""Base class of every recurrent cell: one product for all gates, then a pointwise step.

    A cell computes one time step in two parts:

    .. math::
        g_t = W \, [x_t, h_{t-1}] + b \qquad s_t = \text{step}(g_t, s_{t-1})

    where ``W`` is ``i2h.weight`` (one block of ``hidden_size`` rows per name in
    ``gate_names``) and the state :math:`s_t` is ``h`` or a tuple ``(h, c, ...)``, one
    tensor per name in ``state_names``. A cell of your own subclasses ``Cell``, names
    its gates and state and writes ``step``; :class:`Recurrent` then runs it stacked,
    bidirectional, with lengths, on every engine that can (``loop``, ``fused``).

    A subclass sets these class attributes:

    - ``gate_names``: one name per block of ``hidden_size`` rows of ``i2h``
      (default ``("h",)``).
    - ``state_names``: one name per state tensor, ``"h"`` first (default ``("h",)``).
    - ``hidden_product`` (default True): False makes ``i2h`` read ``x_t`` alone, for a
      cell whose ``step`` applies the recurrence itself (IndRNN's ``u * h``).

    and defines ``step(gates, state) -> state`` (or ``split_step(input_gates,
    hidden_gates, state)`` for a cell that needs the two halves of the product apart).
    ``step`` gets the pre-activations ``(batch, num_gates * hidden_size)`` and the old
    state, and returns the new state: ``h`` (or ``(h,)``) for one state name, else a
    tuple of ``len(state_names)`` tensors, each ``(batch, hidden_size)``. A layer checks
    this on the first step of each call and says what differs in one line.

    Args:
        input_size: The number of features of the input :math:`x_t`.
        hidden_size: The number of features of each state tensor.
        bias: If False, ``i2h`` (and ``i2o``) have no bias. Default: True
        output_size: If set, the cell also has an ``i2o`` layer mapping
            :math:`[x_t, h_t]` to an output of this size (keyword only). Default: None

    Shape:
        - x: :math:`(B, \text{input\_size})`.
        - state: ``h`` :math:`(B, \text{hidden\_size})`, or a tuple of such tensors;
          None (the default) means zeros.
        - output: :math:`(B, \text{output\_size})` with ``output_size``, else ``h``
          :math:`(B, \text{hidden\_size})`.

    Returns:
        ``(output, state)``: the step's output and the new state, ``h`` for a cell with
        one state name, else a tuple ``(h, c, ...)`` in ``state_names``' order.

    Attributes:
        i2h: ``nn.Linear(input_size + hidden_size, num_gates * hidden_size)`` over
            :math:`[x_t, h_{t-1}]` (over :math:`x_t` alone when ``hidden_product`` is
            False). Initialised as torch.nn's recurrent layers: every parameter from
            :math:`\mathcal{U}(-1/\sqrt{H}, 1/\sqrt{H})`.
        i2o: ``nn.Linear(input_size + hidden_size, output_size)``, or None.

    Example:
        A minimal gated cell (Chen 2017) of one state tensor:

        >>> import torch
        >>> from seqmodels.nn import Cell, Recurrent
        >>> class MinimalRNNCell(Cell):
        ...     gate_names = ("u", "z")
        ...     def step(self, gates, h):
        ...         u, z = gates.chunk(2, -1)
        ...         u = torch.sigmoid(u)
        ...         return u * h + (1 - u) * torch.tanh(z)
        >>> cell = MinimalRNNCell(10, 20)
        >>> output, h = cell(torch.randn(3, 10))
        >>> h.shape
        torch.Size([3, 20])
        >>> layer = Recurrent(MinimalRNNCell, 10, 20, num_layers=2, bidirectional=True)
        >>> output, h_n = layer(torch.randn(3, 5, 10))
        >>> output.shape, h_n.shape
        (torch.Size([3, 5, 40]), torch.Size([4, 3, 20]))
    """

    gate_names: ClassVar[tuple[str, ...]] = ("h",)
    state_names: ClassVar[tuple[str, ...]] = ("h",)
    hidden_product: ClassVar[bool] = True
    # parameters a built-in cell has besides i2h and i2o (the GRU's bias_hn): a subclass
    # with any other is not the built-in computation (seqmodels.nn.support.is_exactly)
    extra_parameters: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        output_size: int | None = None,
    ):
        super().__init__()
        check_sizes(input_size, hidden_size, output_size)
        if not isinstance(bias, bool):  # e.g. output_size passed third, as before torch's order
            raise UserError(
                f"{type(self).__name__}: bias must be True or False, got {bias!r} (the third "
                f"argument is bias, as in torch.nn; pass output_size= by keyword)"
            )
        if not self.gate_names or not self.state_names or self.state_names[0] != "h":
            raise TypeError(
                f"{type(self).__name__}: gate_names must name at least one gate and "
                f"state_names must start with 'h' (got {self.gate_names}, {self.state_names})"
            )
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.output_size = output_size
        self.bias = bool(bias)
        reads = input_size + hidden_size if self.hidden_product else input_size
        self.i2h = nn.Linear(reads, self.num_gates * hidden_size, bias=bias)
        self.i2o = (
            nn.Linear(input_size + hidden_size, output_size) if output_size is not None else None
        )
        Cell.reset_parameters(self)  # only what this class made: a subclass inits its own

    @property
    def num_gates(self) -> int:
        return len(self.gate_names)

    @property
    def state_size(self) -> int:
        """How many (B, H) tensors the state holds (1: the state is h itself)."""
        return len(self.state_names)

    def reset_parameters(self) -> None:
        # torch.nn.RNN/LSTM/GRU's init: U(-1/sqrt(H), 1/sqrt(H)) for every recurrent
        # parameter (not nn.Linear's 1/sqrt(fan_in)), so a swapped-in layer trains alike.
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.i2h.parameters():
            nn.init.uniform_(p, -bound, bound)

    # Views into i2h, used by the fused and native engines (no copies: autograd
    # carries their gradients back into i2h.weight).
    @property
    def weight_ih(self) -> Tensor:
        return self.i2h.weight[:, : self.input_size]

    @property
    def weight_hh(self) -> Tensor | None:
        return self.i2h.weight[:, self.input_size :] if self.hidden_product else None

    def init_state(self, batch_size: int, device=None, dtype=None) -> State:
        """The zero state for a batch: ``h`` (B, H), or a tuple ``(h, c, ...)``.

        Args:
            batch_size: B.
            device: Default: the device of ``i2h.weight``.
            dtype: Default: the dtype of ``i2h.weight``.
        """
        w = self.i2h.weight
        zeros = [
            torch.zeros(
                batch_size, self.hidden_size, device=device or w.device, dtype=dtype or w.dtype
            )
            for _ in self.state_names
        ]
        return zeros[0] if len(zeros) == 1 else tuple(zeros)

    # -- the step -------------------------------------------------------------------
    def step(self, gates: Tensor, state: State) -> State:
        """The new state from the gates' pre-activations and the old state (define it).

        Args:
            gates: :math:`W [x_t, h_{t-1}] + b`, shape (B, num_gates * hidden_size),
                one block of hidden_size columns per name in ``gate_names``.
            state: the old state, ``h`` or a tuple ``(h, c, ...)``.

        Returns:
            The new state: ``h`` or ``(h,)`` for one state name, else a tuple of
            ``len(state_names)`` tensors, each (B, hidden_size).
        """
        raise NotImplementedError(f"{type(self).__name__} defines no step()")

    def split_step(self, input_gates: Tensor, hidden_gates: Tensor, state: State) -> State:
        """``step`` for a cell that needs the product's two halves apart (define it instead).

        Args:
            input_gates: :math:`W_{ih} x_t + b`, (B, num_gates * hidden_size).
            hidden_gates: :math:`W_{hh} h_{t-1}`, (B, num_gates * hidden_size).
            state: the old state.

        Returns:
            The new state, as ``step``'s. By default ``step(input_gates + hidden_gates,
            state)``.
        """
        return self.step(input_gates + hidden_gates, state)

    def forward(self, x: Tensor, state: State = None) -> tuple[Tensor, State]:
        """One step: ``(output, new_state)`` from x (B, input_size) and the state (see the
        class doc); ``state=None`` starts from zeros."""
        if state is None:
            state = self.init_state(x.shape[0], x.device, x.dtype)
        one = self.state_size == 1
        state = unwrap(state) if one else state
        h = state if one else state[0]
        if not self.hidden_product:
            state = self.step(self.i2h(x), state)
        elif overrides(self, "split_step"):
            gx = F.linear(x, self.weight_ih, self.i2h.bias)
            gh = F.linear(h, self.i2h.weight[:, self.input_size :])
            state = self.split_step(gx, gh, state)
        else:
            state = self.step(self.i2h(torch.cat((x, h), -1)), state)
        state = unwrap(state) if one else state
        return self._output(x, state if one else state[0]), state

    def _output(self, x: Tensor, h: Tensor) -> Tensor:
        return h if self.i2o is None else self.i2o(torch.cat((x, h), -1))

    # -- what the engines may use ---------------------------------------------------
    def has_step(self) -> bool:
        """Whether the cell's new state comes from `step` (or `split_step`) after the one
        product, which is what the fused engine runs; a cell with only a forward has not."""
        return overrides(self, "step") or overrides(self, "split_step")

    # -- torch's layout, for the native engine and interop -------------------------
    def torch_parameters(self) -> list[Tensor | None]:
        """[w_ih, w_hh, b_ih, b_hh] as torch.nn.RNN/LSTM/GRU keep them, views of i2h where
        they can be: the one bias goes to b_ih, b_hh is zeros (None without bias)."""
        b = self.i2h.bias
        return [self.weight_ih, self.weight_hh, b, None if b is None else torch.zeros_like(b)]

    @torch.no_grad()
    def load_torch_parameters(
        self, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None, b_hh: Tensor | None
    ) -> None:
        """Copy torch's four tensors in: i2h.weight = [w_ih | w_hh], i2h.bias = b_ih + b_hh."""
        self.i2h.weight.copy_(torch.cat((w_ih, w_hh), 1))
        if self.i2h.bias is not None and b_ih is not None and b_hh is not None:
            self.i2h.bias.copy_(b_ih + b_hh)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.output_size is not None:
            s += f", output_size={self.output_size}"
        return s + ("" if self.bias else ", bias=False")


def unwrap(state: State) -> State:
    """A one-state cell's state as the tensor h: `step` may return h or `(h,)` (Keras' form)."""
    return state[0] if isinstance(state, tuple) and len(state) == 1 else state


def check_step_result(cell: Cell, new: Any, batch_size: int) -> None:
    """One UserError line when the state a cell's step made breaks the contract: one (B, H)
    tensor per name in `state_names` (a bare tensor, or a 1-tuple, for h alone).

    The engines call it on the first step of each call only: a step's result has the
    same count, type and shape at every step, and checking each would cost every step.
    """
    if torch.compiler.is_compiling():  # a traced graph's shapes may be symbolic: no guards
        return
    names, H = cell.state_names, cell.hidden_size
    want_shape = (batch_size, H)
    n = len(names)
    parts: tuple[Any, ...] | None
    if n == 1:
        parts = new if isinstance(new, tuple) and len(new) == 1 else (new,)
    else:
        parts = new if isinstance(new, tuple) else None
    if parts is not None and len(parts) == n:
        if all(isinstance(t, Tensor) and tuple(t.shape) == want_shape for t in parts):
            return
    method = next((m for m in ("split_step", "step") if overrides(cell, m)), "forward")
    want = (
        f"want h, one tensor (or a 1-tuple (h,)) shaped (batch, hidden_size)={want_shape}"
        if n == 1
        else f"want a tuple of {n} tensors, each (batch, hidden_size)={want_shape}"
    )
    raise UserError(
        f"{type(cell).__name__}.{method} returned {_described(new)}; its state_names {names} {want}"
    )


def _described(value: Any) -> str:
    """What a step returned, in words: 'a tuple of 2 tensors shaped (3, 6), (3, 12)'."""
    if isinstance(value, Tensor):
        return f"a tensor shaped {tuple(value.shape)}"
    if isinstance(value, (tuple, list)):
        if value and all(isinstance(v, Tensor) for v in value):
            shapes = ", ".join(str(tuple(v.shape)) for v in value)
            return f"a {type(value).__name__} of {len(value)} tensors shaped {shapes}"
        items = ", ".join(type(v).__name__ for v in value)
        return f"a {type(value).__name__} of {len(value)} ({items})"
    return f"a {type(value).__name__}"


def overrides(cell: Cell, method: str) -> bool:
    """Whether the cell's class defines `method` itself rather than taking Cell's."""
    return getattr(type(cell), method) is not getattr(Cell, method)


def cell_name(cell: Any) -> str:
    """A cell factory as a user wrote it: LSTMCell, or GRUCell(reset_after=False) for a partial."""
    if isinstance(cell, functools.partial) and not cell.args:
        if not cell.keywords:
            return cell_name(cell.func)
        options = ", ".join(f"{k}={v!r}" for k, v in cell.keywords.items())
        return f"{cell_name(cell.func)}({options})"
    return getattr(cell, "__name__", type(cell).__name__)


class RNNCell(Cell):
    r"""An Elman RNN cell, torch.nn.RNNCell's computation in one ``i2h``.

    .. math::
        h_t = \text{act}(W [x_t, h_{t-1}] + b)

    where act is tanh, ReLU or swish (SiLU). ``i2h.weight`` is torch's
    ``[weight_ih | weight_hh]`` and ``i2h.bias`` is ``bias_ih + bias_hh``.

    Args:
        input_size: The number of features of the input :math:`x_t`.
        hidden_size: The number of features of :math:`h_t`.
        bias: If False, the cell has no bias. Default: True
        nonlinearity: ``"tanh"``, ``"relu"`` or ``"swish"`` (torch's kernels have the
            first two). Default: ``"tanh"``
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
        >>> from seqmodels.nn import RNNCell
        >>> cell = RNNCell(10, 20, True, "relu")  # torch.nn.RNNCell's positional order
        >>> h = None
        >>> for x_t in torch.randn(6, 3, 10):
        ...     output, h = cell(x_t, h)
        >>> h.shape
        torch.Size([3, 20])
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        *,
        output_size: int | None = None,
    ):
        if nonlinearity not in NONLINEARITIES:
            raise UserError(
                f"nonlinearity must be one of {', '.join(NONLINEARITIES)}, got {nonlinearity!r}"
            )
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, bias, output_size=output_size)
        self._act = activation(nonlinearity)

    def step(self, gates: Tensor, state: Tensor) -> Tensor:
        return self._act(gates)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", nonlinearity={self.nonlinearity!r}"


class LSTMCell(Cell):
    r"""A long short-term memory cell, torch.nn.LSTMCell's computation in one ``i2h``.

    .. math::
        \begin{array}{ll}
        i_t = \sigma(W_i [x_t, h_{t-1}] + b_i) \\
        f_t = \sigma(W_f [x_t, h_{t-1}] + b_f) \\
        g_t = \tanh(W_g [x_t, h_{t-1}] + b_g) \\
        o_t = \sigma(W_o [x_t, h_{t-1}] + b_o) \\
        c_t = f_t \odot c_{t-1} + i_t \odot g_t \\
        h_t = o_t \odot \tanh(c_t)
        \end{array}

    The rows of ``i2h`` are the gates i, f, g, o (torch's order); ``i2h.weight`` is
    torch's ``[weight_ih | weight_hh]`` and ``i2h.bias`` is ``bias_ih + bias_hh``.

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
        >>> from seqmodels.nn import LSTMCell
        >>> cell = LSTMCell(10, 20, True)  # torch.nn.LSTMCell's positional order
        >>> state = None
        >>> for x_t in torch.randn(6, 3, 10):
        ...     output, state = cell(x_t, state)
        >>> h, c = state
        >>> h.shape, c.shape
        (torch.Size([3, 20]), torch.Size([3, 20]))
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

    def step(self, gates: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        _, c = state
        i, f, g, o = gates.chunk(4, -1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class GRUCell(Cell):
    r"""A gated recurrent unit cell; ``reset_after=True`` is torch.nn.GRUCell's computation.

    .. math::
        \begin{array}{ll}
        r_t = \sigma(W_r [x_t, h_{t-1}] + b_r) \\
        z_t = \sigma(W_z [x_t, h_{t-1}] + b_z) \\
        n_t = \tanh(W_{in} x_t + b_{in} + r_t \odot (W_{hn} h_{t-1} + b_{hn}))
            & \text{reset\_after=True (cuDNN, torch, Keras)} \\
        n_t = \tanh(W_n [x_t, r_t \odot h_{t-1}] + b_n)
            & \text{reset\_after=False (Cho et al. 2014)} \\
        h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1}
        \end{array}

    The rows of ``i2h`` are the gates r, z, n (torch's order). With
    ``reset_after=True`` the reset gate scales the hidden product, so the step takes
    the product's halves apart (``split_step``) and :math:`b_{hn}` is a parameter of
    its own, ``bias_hn`` (hidden_size,). ``reset_after=False`` needs :math:`r_t` before
    the candidate's product, so it is no ``step`` after one product: it runs on the
    ``loop`` engine and on a hand-written recurrence of the ``fused`` one; torch has
    no kernel for it.

    Args:
        input_size: The number of features of the input :math:`x_t`.
        hidden_size: The number of features of :math:`h_t`.
        bias: If False, the cell has no bias. Default: True
        reset_after: Where the reset gate applies (above; keyword only). Default: True
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
        >>> from seqmodels.nn import GRUCell
        >>> cell = GRUCell(10, 20, True)  # torch.nn.GRUCell's positional order
        >>> h = None
        >>> for x_t in torch.randn(6, 3, 10):
        ...     output, h = cell(x_t, h)
        >>> h.shape
        torch.Size([3, 20])
    """

    gate_names = ("r", "z", "n")
    extra_parameters = ("bias_hn",)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        reset_after: bool = True,
        output_size: int | None = None,
    ):
        self.reset_after = bool(reset_after)
        super().__init__(input_size, hidden_size, bias, output_size=output_size)
        self.bias_hn: nn.Parameter | None = None
        if self.bias and self.reset_after:
            bound = 1.0 / math.sqrt(hidden_size)
            self.bias_hn = nn.Parameter(torch.empty(hidden_size).uniform_(-bound, bound))

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.bias_hn is not None:
            bound = 1.0 / math.sqrt(self.hidden_size)
            nn.init.uniform_(self.bias_hn, -bound, bound)

    def split_step(self, input_gates: Tensor, hidden_gates: Tensor, state: Tensor) -> Tensor:
        h, H = state, self.hidden_size
        rz = torch.sigmoid(input_gates[..., : 2 * H] + hidden_gates[..., : 2 * H])
        r, z = rz[..., :H], rz[..., H:]
        hn = hidden_gates[..., 2 * H :]
        if self.bias_hn is not None:
            hn = hn + self.bias_hn
        n = torch.tanh(torch.addcmul(input_gates[..., 2 * H :], r, hn))
        return n + z * (h - n)

    def forward(self, x: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.reset_after:
            return super().forward(x, state)
        h = self.init_state(x.shape[0], x.device, x.dtype) if state is None else state
        H = self.hidden_size
        w, b = self.i2h.weight, self.i2h.bias
        rz = F.linear(torch.cat((x, h), -1), w[: 2 * H], None if b is None else b[: 2 * H])
        r, z = torch.sigmoid(rz).chunk(2, -1)
        n = torch.tanh(
            F.linear(torch.cat((x, r * h), -1), w[2 * H :], None if b is None else b[2 * H :])
        )
        h = n + z * (h - n)
        return self._output(x, h), h

    def has_step(self) -> bool:
        return self.reset_after  # Cho et al.'s needs r before its second product: forward only

    def torch_parameters(self) -> list[Tensor | None]:
        # torch keeps b_hn in b_hh, because its reset gate scales W_hn h + b_hn
        w_ih, w_hh, b_ih, b_hh = super().torch_parameters()
        if b_hh is not None and self.bias_hn is not None:
            b_hh = torch.cat((b_hh[: 2 * self.hidden_size], self.bias_hn))
        return [w_ih, w_hh, b_ih, b_hh]

    @torch.no_grad()
    def load_torch_parameters(
        self, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None, b_hh: Tensor | None
    ) -> None:
        super().load_torch_parameters(w_ih, w_hh, b_ih, b_hh)
        if self.bias_hn is not None and b_ih is not None and b_hh is not None:
            H = self.hidden_size  # b_in and b_hn stay apart: only r and z take the sum
            self.i2h.bias[2 * H :].copy_(b_ih[2 * H :])  # type: ignore[index]
            self.bias_hn.copy_(b_hh[2 * H :])

    def extra_repr(self) -> str:
        return super().extra_repr() + f", reset_after={self.reset_after}"
