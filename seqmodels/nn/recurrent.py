"""Recurrent layers: any cell unrolled over time, with torch.nn's signature.

    layer = Recurrent(cell, input_size, hidden_size, num_layers=1, bias=True,
                      batch_first=True, dropout=0.0, bidirectional=False, engine="auto")
    output, h_n = layer(x, state=None, lengths=None)

`Recurrent` is Keras' `RNN(cell)` for PyTorch: `cell` is a `Cell` subclass, or
anything that builds one as `cell(input_size, hidden_size, bias=bias)` (a
`functools.partial` with the cell's options, which is what a config's
`{_target_: ..., _partial_: true}` gives). The layer builds one cell per
(layer, direction) and gives them stacking, both directions, dropout between
layers, `lengths` and PackedSequence input, every engine that can run the cell,
and state in and out. `RNN`, `LSTM` and `GRU` are Recurrent with the built-in
cells, and nothing else.

output (B, T, D*H) with batch_first (the default); the state holds, for each
of the cell's state tensors (h, or h and c, ...), one (L*D, B, H) tensor: a
tensor when the cell's state is h alone, else a tuple (h_n, c_n, ...).
`lengths` (B,) gives each sequence's valid length, padding at the end: padded
outputs are zero, the final state is each sequence's own last valid step, and
the backward direction starts at that step. A torch `PackedSequence` input
works too and gives a `PackedSequence` output.

`layer.cells` is an nn.ModuleList of cells in torch's order (layer 0 forward,
layer 0 backward, layer 1 forward, ...), so a sampler can step them one token
at a time: `out, s = layer.cells[k](x_t, s)`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from seqmodels.errors import UserError
from seqmodels.nn import engines, interop, native
from seqmodels.nn.auto import choose_engine
from seqmodels.nn.cells import Cell, GRUCell, LSTMCell, RNNCell, cell_name
from seqmodels.nn.support import engine_support

ENGINES = ("auto", "loop", "fused", "compiled", "native")


class Recurrent(nn.Module):
    r"""Any :class:`Cell` unrolled over time as a layer: stacked, bidirectional, with lengths.

    Keras' ``RNN(cell)`` for PyTorch, with torch.nn.LSTM's signature. For each layer
    and direction the layer runs its own cell over the sequence:

    .. math::
        (y_t, s_t) = \text{cell}(x_t, s_{t-1}), \qquad s_0 = 0 \text{ or the state given}

    where the state :math:`s_t` is ``h`` or a tuple ``(h, c, ...)``, one tensor per name
    in the cell's ``state_names``. With ``lengths``, padded steps change no state and
    output zeros, the final state is each sequence's own last valid step, and the
    backward direction starts at that step. ``RNN``, ``LSTM`` and ``GRU`` are this layer
    over the built-in cells.

    Args:
        cell: A :class:`Cell` subclass, or any callable building one as
            ``cell(input_size, hidden_size, bias=bias)``, such as a
            ``functools.partial`` with the cell's options (what a Hydra config's
            ``_partial_: true`` gives). One cell is built per layer and direction.
        input_size: The number of features of the input :math:`x`.
        hidden_size: The number of features of the hidden state :math:`h`.
        num_layers: The number of stacked layers; layer k > 0 reads layer k - 1's
            output. Default: 1
        bias: If False, the cells have no bias. Default: True
        batch_first: If True, input and output are (batch, seq, feature), else (seq,
            batch, feature); the state is (layers * directions, batch, hidden) either
            way. Default: True (torch.nn's default is False)
        dropout: The probability of dropout on the outputs of each layer but the
            last, while training. Default: 0
        bidirectional: If True, each layer also runs over the sequence backwards and
            concatenates the two outputs. Default: False
        engine: How the recurrence runs, with the same numbers: ``"loop"`` (the cell
            stepped in Python), ``"fused"`` (all input products in one GEMM, then
            the recurrence), ``"compiled"`` (fused, with K steps per torch.compile'd
            call; compiles on first use), ``"native"`` (torch's kernels: cuDNN,
            oneDNN), or ``"auto"``, the fastest that can run the call. Default: ``"auto"``

    Shape:
        With :math:`B` the batch size, :math:`T` the length, :math:`D` 2 if
        bidirectional else 1, :math:`L` num_layers and :math:`H` hidden_size:

        - input: :math:`(B, T, \text{input_size})` with ``batch_first`` (the
          default), :math:`(T, B, \text{input_size})` otherwise,
          :math:`(T, \text{input_size})` unbatched, or a ``PackedSequence``.
        - state: one :math:`(L \cdot D, B, H)` tensor per state tensor of the cell: a
          tensor for a cell with one state name, else a tuple; None means zeros.
        - lengths: :math:`(B,)` integers in :math:`[1, T]`, padding at the end.
        - output: :math:`(B, T, D \cdot H)` (with batch_first), the top layer's
          :math:`h_t` for each step (both directions concatenated); zero at padded
          steps.
        - final state: as the state, the state after each sequence's last valid step.

    Returns:
        ``(output, final_state)``; output is a ``PackedSequence`` for a packed input.

    Attributes:
        cells: The cells, an ``nn.ModuleList`` in torch's order (layer 0 forward, layer
            0 backward, layer 1 forward, ...): a sampler can step them one token at a
            time, ``y, s = layer.cells[k](x_t, s)``.
        engine_support: Which engines can run these cells, and why not
            (``seqmodels.nn.support.EngineSupport``).

    Example:
        >>> import torch
        >>> from seqmodels.nn import PeepholeLSTMCell, Recurrent
        >>> layer = Recurrent(PeepholeLSTMCell, 10, 20, num_layers=2, bidirectional=True)
        >>> x = torch.randn(3, 5, 10)
        >>> output, (h_n, c_n) = layer(x, lengths=torch.tensor([5, 2, 4]))
        >>> output.shape, h_n.shape, c_n.shape
        (torch.Size([3, 5, 40]), torch.Size([4, 3, 20]), torch.Size([4, 3, 20]))
        >>> bool(output[1, 2:].eq(0).all())  # padded steps are zero
        True
    """

    # The torch.nn layer with the same numbers, for from_torch (the built-in layers set it).
    torch_class: Any = None

    def __init__(
        self,
        cell: Callable[..., Cell],
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = True,
        dropout: float = 0.0,
        bidirectional: bool = False,
        engine: str = "auto",
    ):
        super().__init__()
        if not isinstance(num_layers, int) or isinstance(num_layers, bool) or num_layers < 1:
            raise UserError(f"num_layers must be a positive int, got {num_layers!r}")
        if not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
            raise UserError(f"dropout must be a float in [0, 1), got {dropout!r}")
        if not callable(cell):
            raise UserError(
                f"cell must be a seqmodels.nn.Cell subclass (or a callable building one), "
                f"got {cell!r}"
            )
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bool(bias)
        self.batch_first = bool(batch_first)
        self.dropout = float(dropout)
        self.bidirectional = bool(bidirectional)
        self.num_directions = 2 if bidirectional else 1
        self.cell = cell
        cells = []
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size * self.num_directions
            for _ in range(self.num_directions):
                cells.append(build_cell(cell, layer_input, hidden_size, self.bias))
        self.cells = nn.ModuleList(cells)
        self.state_size = self.cells[0].state_size
        # which engines can run these cells, and why not (support.py): read by auto, the
        # engines and their errors; the cells' classes and options never change
        self.engine_support = engine_support(self)
        self.engine = engine  # validated by the setter below

    def native_kernel(self) -> str | None:
        """torch's fused kernel computing this layer's cells exactly (a torch._VF name), or None."""
        return self.engine_support.kernel

    def cell_list(self) -> list[Cell]:
        """The cells, typed (nn.ModuleList's items are just Modules to a type checker)."""
        return list(self.cells)  # type: ignore[arg-type]

    @property
    def engine(self) -> str:
        return self._engine

    @engine.setter
    def engine(self, name: str) -> None:
        if name not in ENGINES:
            raise UserError(f"engine must be one of {', '.join(ENGINES)}, got {name!r}")
        if name == "native" and self.engine_support.native is not None:
            raise UserError(self.engine_support.refusal("native") or "")
        self._engine = name

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.torch_class is None:  # a built-in layer's cell goes without saying
            s = f"{cell_name(self.cell)}, {s}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.torch_class is not None and isinstance(self.cell, functools.partial):
            s += "".join(f", {k}={v!r}" for k, v in self.cell.keywords.items())
        if not self.bias:
            s += ", bias=False"
        if not self.batch_first:
            s += ", batch_first=False"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += ", bidirectional=True"
        return s + f", engine={self.engine!r}"

    # ------------------------------------------------------------ forward
    def forward(self, input: Tensor | PackedSequence, state: Any = None, lengths: Any = None):
        """Run the layer over a batch of sequences (shapes in the class doc).

        Args:
            input: The sequences, a tensor or a ``PackedSequence``.
            state: The initial state, one (layers * directions, B, H) tensor per state
                name (a tuple for more than one); None for zeros.
            lengths: Each sequence's valid length (B,), padding at the end; None when
                every step is valid. Not with a ``PackedSequence``, which has its own.

        Returns:
            ``(output, final_state)``.
        """
        packed = isinstance(input, PackedSequence)
        x: Any
        if isinstance(input, PackedSequence):
            if lengths is not None:
                raise UserError("lengths: pass either a PackedSequence or lengths, not both")
            x, lengths = pad_packed_sequence(input, batch_first=True)
            lengths = lengths.to(x.device)
            batch_first = True
        else:
            x = input
            batch_first = self.batch_first
            if not isinstance(x, Tensor):
                raise UserError(f"input must be a Tensor or PackedSequence, got {type(x).__name__}")
        unbatched = x.dim() == 2
        if unbatched:  # torch.nn accepts one unbatched sequence (T, I)
            x = x.unsqueeze(0)
            batch_first = True
            if lengths is not None:
                raise UserError("lengths: not supported for an unbatched (T, input_size) input")
        elif x.dim() != 3:
            raise UserError(
                f"input must be 3-D (batch, time, input_size) with batch_first=True or "
                f"(time, batch, input_size) otherwise, got shape {tuple(x.shape)}"
            )
        if x.shape[-1] != self.input_size:
            raise UserError(
                f"input: expected last dimension input_size={self.input_size}, "
                f"got shape {tuple(x.shape)}"
            )
        if not batch_first:
            x = x.transpose(0, 1)
        B, T = x.shape[0], x.shape[1]
        if T == 0:
            raise UserError("input: the time dimension is empty (0 steps)")
        hx = self._check_state(state, B, unbatched)
        if lengths is not None and not packed:
            lengths = self._check_lengths(lengths, B, T, x.device)

        if torch.compiler.is_compiling() and not torch.compiler.is_exporting():
            out, h_n = _outside_the_graph(self, x, hx, lengths)
        else:
            out, h_n = self._run(x, hx, lengths)

        if packed:
            out = pack_padded_sequence(out, lengths.cpu(), batch_first=True, enforce_sorted=False)
        elif unbatched:
            out = out.squeeze(0)
            h_n = tuple(s.squeeze(1) for s in h_n) if isinstance(h_n, tuple) else h_n.squeeze(1)
        elif not batch_first:
            out = out.transpose(0, 1)
        return out, h_n

    def _check_state(self, state: Any, B: int, unbatched: bool):
        """The state as a tuple of (L*D, B, H) tensors (one per state name), or None."""
        if state is None:
            return None
        LD, H = self.num_layers * self.num_directions, self.hidden_size
        want = (LD, H) if unbatched else (LD, B, H)
        names = self.cell_list()[0].state_names
        if len(names) == 1:
            if not isinstance(state, Tensor) or tuple(state.shape) != want:
                got = tuple(state.shape) if isinstance(state, Tensor) else type(state).__name__
                raise UserError(
                    f"state: expected shape (num_layers*num_directions, batch, hidden_size)="
                    f"{want}, got {got}"
                )
            parts: Any = (state,)
        else:
            parts = state
            ok = isinstance(parts, (tuple, list)) and len(parts) == len(names)
            if not (ok and all(isinstance(s, Tensor) and tuple(s.shape) == want for s in parts)):
                got2: Any = (
                    [tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__ for s in parts]
                    if isinstance(parts, (tuple, list))
                    else type(state).__name__
                )
                raise UserError(
                    f"state: expected a tuple ({', '.join(names)}) of tensors shaped "
                    f"(num_layers*num_directions, batch, hidden_size)={want}, got {got2}"
                )
        return tuple(s.unsqueeze(1) if unbatched else s for s in parts)

    @staticmethod
    def _check_lengths(lengths: Any, B: int, T: int, device) -> Tensor | None:
        lengths = torch.as_tensor(lengths)
        if lengths.dim() != 1 or lengths.shape[0] != B:
            raise UserError(f"lengths: expected shape (batch,)=({B},), got {tuple(lengths.shape)}")
        if lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
            raise UserError(f"lengths: expected an integer tensor, got dtype {lengths.dtype}")
        if torch.compiler.is_compiling():  # a traced graph takes any lengths: no values read
            return lengths.to(device=device, dtype=torch.long)
        lo, hi = torch.aminmax(lengths)
        lo_i, hi_i = int(lo), int(hi)  # one sync; packing would need the same
        if lo_i < 1 or hi_i > T:
            raise UserError(
                f"lengths: every length must be in [1, T={T}] (padding at the end), "
                f"got min {lo_i} and max {hi_i}"
            )
        if lo_i == T:  # nothing is padded: the plain path is exact and faster
            return None
        return lengths.to(device=device, dtype=torch.long)

    # ------------------------------------------------------------ engines
    def resolve_engine(self, x: Tensor, lengths: Tensor | None) -> str:
        """The engine this call runs on: self.engine, or auto's choice (see native.py/auto)."""
        if self._engine != "auto":
            return self._engine
        return choose_engine(self, x, lengths)

    def _run(self, x: Tensor, hx: tuple[Tensor, ...] | None, lengths: Tensor | None):
        if isinstance(x.shape[1], torch.SymInt):  # exported for any length: fused.py's scan
            engine = "fused"
        else:
            engine = self.resolve_engine(x, lengths)
        refusal = self.engine_support.refusal(engine)
        if refusal is not None:
            raise UserError(refusal)
        if engine == "native":
            return native.run_native(self, x, hx, lengths)
        D, one = self.num_directions, self.state_size == 1
        if hx is None:
            states: list[Any] = [None] * (self.num_layers * D)
        elif one:
            states = list(hx[0].unbind(0))
        else:
            states = list(zip(*(s.unbind(0) for s in hx), strict=True))
        finals: list[Any] = []
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout > 0.0 and self.training:
                x = F.dropout(x, self.dropout, True)
            k = layer * D
            if engine in ("fused", "compiled"):  # both directions of the layer
                cells, kinds = self.cells[k : k + D], self.engine_support.recurrences[k : k + D]
                if engine == "compiled":
                    kinds = (engines.COMPILED_STEP,) * D
                x, s = engines.run_fused(list(cells), kinds, x, states[k : k + D], lengths)
                finals += s
                continue
            out, s = engines.run_loop(self.cells[k], x, states[k], lengths)
            finals.append(s)
            if D == 2:
                x_rev = engines.reverse_within(x, lengths, 1)
                out_b, s_b = engines.run_loop(self.cells[k + 1], x_rev, states[k + 1], lengths)
                finals.append(s_b)
                out = torch.cat((out, engines.reverse_within(out_b, lengths, 1)), -1)
            x = out
        if one:
            return x, torch.stack(finals)
        return x, tuple(torch.stack(part) for part in zip(*finals, strict=True))

    def flatten_parameters(self) -> None:
        """No-op, for code written against torch.nn.RNNBase: the weights are views of i2h."""

    # ------------------------------------------------------------ interop
    @classmethod
    def from_torch(cls, module: nn.Module, engine: str = "auto"):
        """A layer with a torch.nn.RNN, LSTM or GRU's options and numbers.

        Outputs, states and gradients agree with the torch layer's: ``i2h.weight`` is
        ``[weight_ih | weight_hh]``, ``i2h.bias`` is ``bias_ih + bias_hh`` (the GRU keeps
        ``b_hn`` apart, as ``bias_hn``). The parameters are copied, not shared.

        Args:
            module: A ``torch.nn.RNN`` for ``RNN``, ``torch.nn.LSTM`` (without
                ``proj_size``) for ``LSTM``, ``torch.nn.GRU`` for ``GRU``.
            engine: The new layer's engine. Default: ``"auto"``

        Returns:
            The new layer, on the module's device and dtype, in its train/eval mode.

        Example:
            >>> import torch
            >>> from seqmodels.nn import LSTM
            >>> theirs = torch.nn.LSTM(10, 20, num_layers=2, batch_first=True)
            >>> ours = LSTM.from_torch(theirs)
            >>> x = torch.randn(3, 5, 10)
            >>> torch.allclose(ours(x)[0], theirs(x)[0], atol=1e-6)
            True
        """
        return interop.from_torch(cls, module, engine)

    def to_torch(self) -> nn.Module:
        """The torch.nn.RNN, LSTM or GRU with this layer's options and numbers.

        For a layer whose cells compute exactly what torch's do: ``LSTM``, ``GRU``
        with ``reset_after=True``, ``RNN`` with tanh or relu, or ``Recurrent`` over
        such cells. The parameters are copied: the summed bias goes to ``bias_ih``,
        zeros (the GRU: ``[0, 0, b_hn]``) to ``bias_hh``.

        Returns:
            The torch layer, on this layer's device and dtype, in its train/eval mode.

        Raises:
            UserError: for a layer torch.nn has no equivalent of.

        Example:
            >>> import torch
            >>> from seqmodels.nn import GRU
            >>> ours = GRU(10, 20, bidirectional=True)
            >>> theirs = ours.to_torch()
            >>> x = torch.randn(3, 5, 10)
            >>> torch.allclose(ours(x)[0], theirs(x)[0], atol=1e-6)
            True
        """
        return interop.to_torch(self)


# torch.compiler.disable imports torch._dynamo when it decorates, which here would be on
# `import seqmodels.nn` (most of a second, for code that never compiles); torch's own lazy
# form imports it on the first call, which happens only under torch.compile, where dynamo
# is loaded already. (A torch without it falls back to the public decorator.)
_disable_dynamo = getattr(torch, "_disable_dynamo", torch.compiler.disable)


@_disable_dynamo
def _outside_the_graph(layer: Recurrent, x: Tensor, hx: Any, lengths: Tensor | None):
    """A layer's recurrence under torch.compile: run as it runs eagerly, outside the graph.

    The rest of a compiled model compiles around it (one graph break per layer), the
    way torch.compile treats torch.nn's own RNN, LSTM and GRU. Tracing it instead
    would unroll the time loop into the graph: compile time growing with the length
    and a new compile for every length, where the engines here are already fused;
    and torch's oneDNN LSTM kernel cannot be traced for training at all.
    """
    return layer._run(x, hx, lengths)


def build_cell(cell: Callable[..., Cell], input_size: int, hidden_size: int, bias: bool) -> Cell:
    """cell(input_size, hidden_size, bias=bias), checked against the Cell contract."""
    built = cell(input_size, hidden_size, bias=bias)
    name = cell_name(cell)
    if not isinstance(built, Cell):
        raise UserError(
            f"cell={name} built a {type(built).__name__}, not a seqmodels.nn.Cell: subclass "
            "seqmodels.nn.Cell (gate_names, state_names, step), see its docstring"
        )
    if (built.input_size, built.hidden_size) != (input_size, hidden_size):
        raise UserError(
            f"cell={name}: asked for input_size={input_size}, hidden_size={hidden_size}, it "
            f"built ({built.input_size}, {built.hidden_size}); pass both on to Cell.__init__"
        )
    if built.i2o is not None:
        raise UserError(
            f"cell={name} has an i2o head (output_size={built.output_size}): a layer's cells "
            "pass h on to the next layer; put a head on the layer's output instead"
        )
    return built


class RNN(Recurrent):
    r"""An Elman RNN layer, torch.nn.RNN's interface and numbers.

    For each layer and direction, at each step:

    .. math::
        h_t = \text{act}(W [x_t, h_{t-1}] + b)

    where :math:`x_t` is the input at step t (layer k > 0: layer k - 1's output,
    dropped out with ``dropout`` while training) and :math:`[\cdot, \cdot]`
    concatenation; ``i2h.weight`` of each cell is torch's ``[weight_ih | weight_hh]``
    and ``i2h.bias`` torch's ``bias_ih + bias_hh``.

    Args:
        input_size: The number of features of the input :math:`x`.
        hidden_size: The number of features of the hidden state :math:`h`.
        num_layers: The number of stacked layers; layer k > 0 reads layer k - 1's
            output. Default: 1
        nonlinearity: act: ``"tanh"``, ``"relu"`` or ``"swish"`` (SiLU; torch
            has no kernel for it, the ``fused`` engine runs it). Default: ``"tanh"``
        bias: If False, the cells have no bias. Default: True
        batch_first: If True, input and output are (batch, seq, feature), else (seq,
            batch, feature); the state is (layers * directions, batch, hidden) either
            way. Default: True (torch.nn's default is False)
        dropout: The probability of dropout on the outputs of each layer but the
            last, while training. Default: 0
        bidirectional: If True, each layer also runs over the sequence backwards and
            concatenates the two outputs. Default: False
        engine: How the recurrence runs, with the same numbers: ``"loop"`` (the cell
            stepped in Python), ``"fused"`` (all input products in one GEMM, then
            the recurrence), ``"compiled"`` (fused, with K steps per torch.compile'd
            call; compiles on first use), ``"native"`` (torch's kernels: cuDNN,
            oneDNN), or ``"auto"``, the fastest that can run the call. Default: ``"auto"``

    Shape:
        With :math:`B` the batch size, :math:`T` the length, :math:`D` 2 if
        bidirectional else 1, :math:`L` num_layers and :math:`H` hidden_size:

        - input: :math:`(B, T, \text{input_size})` with ``batch_first`` (the
          default), :math:`(T, B, \text{input_size})` otherwise,
          :math:`(T, \text{input_size})` unbatched, or a ``PackedSequence``.
        - state: :math:`h_0` :math:`(L \cdot D, B, H)`, or None for zeros.
        - lengths: :math:`(B,)` integers in :math:`[1, T]`, padding at the end.
        - output: :math:`(B, T, D \cdot H)` (with batch_first), the top layer's
          :math:`h_t` for each step (both directions concatenated); zero at padded
          steps.
        - final state: :math:`h_n` :math:`(L \cdot D, B, H)`, each sequence's last valid step.

    Returns:
        ``(output, h_n)``; output is a ``PackedSequence`` for a packed input.

    Example:
        >>> import torch
        >>> from seqmodels.nn import RNN
        >>> rnn = RNN(10, 20, num_layers=2)
        >>> output, h_n = rnn(torch.randn(3, 5, 10))
        >>> output.shape, h_n.shape
        (torch.Size([3, 5, 20]), torch.Size([2, 3, 20]))
    """

    torch_class = nn.RNN

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = True,
        dropout: float = 0.0,
        bidirectional: bool = False,
        engine: str = "auto",
    ):
        self.nonlinearity = nonlinearity
        cell = functools.partial(RNNCell, nonlinearity=nonlinearity)
        super().__init__(
            cell,
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            engine,
        )


class LSTM(Recurrent):
    r"""A long short-term memory layer, torch.nn.LSTM's interface and numbers.

    For each layer and direction, at each step:

    .. math::
        \begin{array}{ll}
        i_t = \sigma(W_i [x_t, h_{t-1}] + b_i) \\
        f_t = \sigma(W_f [x_t, h_{t-1}] + b_f) \\
        g_t = \tanh(W_g [x_t, h_{t-1}] + b_g) \\
        o_t = \sigma(W_o [x_t, h_{t-1}] + b_o) \\
        c_t = f_t \odot c_{t-1} + i_t \odot g_t \\
        h_t = o_t \odot \tanh(c_t)
        \end{array}

    where :math:`x_t` is the input at step t (layer k > 0: layer k - 1's output,
    dropped out with ``dropout`` while training) and :math:`[\cdot, \cdot]`
    concatenation; ``i2h.weight`` of each cell is torch's ``[weight_ih | weight_hh]``
    and ``i2h.bias`` torch's ``bias_ih + bias_hh``.
    The gates are :math:`\sigma` (sigmoid) and :math:`\odot` is the elementwise product.

    Args:
        input_size: The number of features of the input :math:`x`.
        hidden_size: The number of features of the hidden state :math:`h`.
        num_layers: The number of stacked layers; layer k > 0 reads layer k - 1's
            output. Default: 1
        bias: If False, the cells have no bias. Default: True
        batch_first: If True, input and output are (batch, seq, feature), else (seq,
            batch, feature); the state is (layers * directions, batch, hidden) either
            way. Default: True (torch.nn's default is False)
        dropout: The probability of dropout on the outputs of each layer but the
            last, while training. Default: 0
        bidirectional: If True, each layer also runs over the sequence backwards and
            concatenates the two outputs. Default: False
        engine: How the recurrence runs, with the same numbers: ``"loop"`` (the cell
            stepped in Python), ``"fused"`` (all input products in one GEMM, then
            the recurrence), ``"compiled"`` (fused, with K steps per torch.compile'd
            call; compiles on first use), ``"native"`` (torch's kernels: cuDNN,
            oneDNN), or ``"auto"``, the fastest that can run the call. Default: ``"auto"``

    Shape:
        With :math:`B` the batch size, :math:`T` the length, :math:`D` 2 if
        bidirectional else 1, :math:`L` num_layers and :math:`H` hidden_size:

        - input: :math:`(B, T, \text{input_size})` with ``batch_first`` (the
          default), :math:`(T, B, \text{input_size})` otherwise,
          :math:`(T, \text{input_size})` unbatched, or a ``PackedSequence``.
        - state: a tuple ``(h_0, c_0)``, each :math:`(L \cdot D, B, H)`, or None for zeros.
        - lengths: :math:`(B,)` integers in :math:`[1, T]`, padding at the end.
        - output: :math:`(B, T, D \cdot H)` (with batch_first), the top layer's
          :math:`h_t` for each step (both directions concatenated); zero at padded
          steps.
        - final state: a tuple ``(h_n, c_n)``, each :math:`(L \cdot D, B, H)`, each sequence's last
          valid step.

    Returns:
        ``(output, (h_n, c_n))``; output is a ``PackedSequence`` for a packed input.

    Example:
        >>> import torch
        >>> from seqmodels.nn import LSTM
        >>> lstm = LSTM(10, 20, num_layers=2, bidirectional=True)
        >>> x = torch.randn(3, 5, 10)
        >>> output, (h_n, c_n) = lstm(x, lengths=torch.tensor([5, 3, 1]))
        >>> output.shape, h_n.shape, c_n.shape
        (torch.Size([3, 5, 40]), torch.Size([4, 3, 20]), torch.Size([4, 3, 20]))
    """

    torch_class = nn.LSTM

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = True,
        dropout: float = 0.0,
        bidirectional: bool = False,
        engine: str = "auto",
    ):
        super().__init__(
            LSTMCell,
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            engine,
        )


class GRU(Recurrent):
    r"""A gated recurrent unit layer; ``reset_after=True`` is torch.nn.GRU's interface and numbers.

    For each layer and direction, at each step:

    .. math::
        \begin{array}{ll}
        r_t = \sigma(W_r [x_t, h_{t-1}] + b_r) \\
        z_t = \sigma(W_z [x_t, h_{t-1}] + b_z) \\
        n_t = \tanh(W_{in} x_t + b_{in} + r_t \odot (W_{hn} h_{t-1} + b_{hn}))
            & \text{reset_after=True} \\
        n_t = \tanh(W_n [x_t, r_t \odot h_{t-1}] + b_n)
            & \text{reset_after=False} \\
        h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1}
        \end{array}

    where :math:`x_t` is the input at step t (layer k > 0: layer k - 1's output,
    dropped out with ``dropout`` while training) and :math:`[\cdot, \cdot]`
    concatenation; ``i2h.weight`` of each cell is torch's ``[weight_ih | weight_hh]``
    and ``i2h.bias`` torch's ``bias_ih + bias_hh``.

    Args:
        input_size: The number of features of the input :math:`x`.
        hidden_size: The number of features of the hidden state :math:`h`.
        num_layers: The number of stacked layers; layer k > 0 reads layer k - 1's
            output. Default: 1
        bias: If False, the cells have no bias. Default: True
        batch_first: If True, input and output are (batch, seq, feature), else (seq,
            batch, feature); the state is (layers * directions, batch, hidden) either
            way. Default: True (torch.nn's default is False)
        dropout: The probability of dropout on the outputs of each layer but the
            last, while training. Default: 0
        bidirectional: If True, each layer also runs over the sequence backwards and
            concatenates the two outputs. Default: False
        engine: How the recurrence runs, with the same numbers: ``"loop"`` (the cell
            stepped in Python), ``"fused"`` (all input products in one GEMM, then
            the recurrence), ``"compiled"`` (fused, with K steps per torch.compile'd
            call; compiles on first use), ``"native"`` (torch's kernels: cuDNN,
            oneDNN), or ``"auto"``, the fastest that can run the call. Default: ``"auto"``
        reset_after: True: the reset gate scales the hidden product (cuDNN, torch,
            Keras); False: it scales h before the product (Cho et al. 2014; no
            torch kernel, the ``fused`` engine runs it). Default: True

    Shape:
        With :math:`B` the batch size, :math:`T` the length, :math:`D` 2 if
        bidirectional else 1, :math:`L` num_layers and :math:`H` hidden_size:

        - input: :math:`(B, T, \text{input_size})` with ``batch_first`` (the
          default), :math:`(T, B, \text{input_size})` otherwise,
          :math:`(T, \text{input_size})` unbatched, or a ``PackedSequence``.
        - state: :math:`h_0` :math:`(L \cdot D, B, H)`, or None for zeros.
        - lengths: :math:`(B,)` integers in :math:`[1, T]`, padding at the end.
        - output: :math:`(B, T, D \cdot H)` (with batch_first), the top layer's
          :math:`h_t` for each step (both directions concatenated); zero at padded
          steps.
        - final state: :math:`h_n` :math:`(L \cdot D, B, H)`, each sequence's last valid step.

    Returns:
        ``(output, h_n)``; output is a ``PackedSequence`` for a packed input.

    Example:
        >>> import torch
        >>> from seqmodels.nn import GRU
        >>> gru = GRU(10, 20, batch_first=False)
        >>> output, h_n = gru(torch.randn(5, 3, 10))  # (T, B, input_size)
        >>> output.shape, h_n.shape
        (torch.Size([5, 3, 20]), torch.Size([1, 3, 20]))
    """

    torch_class = nn.GRU

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = True,
        dropout: float = 0.0,
        bidirectional: bool = False,
        engine: str = "auto",
        reset_after: bool = True,
    ):
        self.reset_after = bool(reset_after)
        cell = functools.partial(GRUCell, reset_after=self.reset_after)
        super().__init__(
            cell,
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            engine,
        )
