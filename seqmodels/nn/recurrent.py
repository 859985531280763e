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

ENGINES = ("auto", "loop", "fused", "native")


class Recurrent(nn.Module):
    """Any `Cell` as a recurrent layer: stacked, bidirectional, with lengths (see the module doc).

    Args:
        cell: a Cell subclass, or a callable building one as
            `cell(input_size, hidden_size, bias=bias)`.
        input_size, hidden_size, num_layers, bias, batch_first, dropout,
        bidirectional: as torch.nn.LSTM (batch_first is True by default).
        engine: "auto", "loop", "fused" or "native" (engines.py).
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
            if engine == "fused":  # both directions of the layer
                cells, kinds = self.cells[k : k + D], self.engine_support.recurrences[k : k + D]
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
        """Build from a torch.nn.RNN/LSTM/GRU with identical numbers (see interop.py)."""
        return interop.from_torch(cls, module, engine)

    def to_torch(self) -> nn.Module:
        """The equivalent torch.nn.RNN/LSTM/GRU, parameters copied (see interop.py)."""
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
    """Elman RNN layer; `nonlinearity` is tanh, relu or swish (swish has no native kernel)."""

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
    """LSTM layer (gates i, f, g, o as torch); state is a tuple (h, c)."""

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
    """GRU layer; reset_after=True is torch's/cuDNN's form, False Cho et al.'s (no native kernel)."""

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
