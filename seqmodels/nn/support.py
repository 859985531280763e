"""Which engine can run a layer's cells, and why not: the one place that rule is written.

`engine_support(layer)` is computed once per layer (the facts are its cells' classes and
options, which do not change) and read by everything that picks or runs an engine:
`auto` (auto.py), the layers (recurrent.py), the engines (engines.py, native.py), interop
(interop.py) and the error messages, which quote its reasons.

- `loop` runs every cell.
- `fused` runs a cell with a `step` (or `split_step`) on the recurrence for any cell
  (fused.py); the built-in LSTM on its hand-written recurrence (fused_lstm.py), and Cho
  et al.'s GRU, which has no step, on its own (fused_gru.py). A cell with neither (only
  a `forward`) it cannot run.
- `compiled` runs what the fused engine's recurrence for any cell runs: a cell with a
  `step` (or `split_step`), the built-in ones included (compiled.py); Cho et al.'s GRU,
  which has none, it cannot.
- `native` runs torch's fused kernel for the cells that compute exactly what one of
  torch's layers computes: the built-in LSTMCell, GRUCell(reset_after=True) and tanh/relu
  RNNCell, or a subclass that changes neither their step nor their parameters. A cell
  with another step, or parameters of its own, would give torch's numbers, not its own.
  Whether the kernel also runs on a call's device and dtype is a fact of the call, not of
  the layer (`native_problem(x)`: oneDNN has no bf16 LSTM on CPUs without AVX-512).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from seqmodels.nn.cells import Cell, GRUCell, LSTMCell, RNNCell, cell_name
from seqmodels.nn.engines import ANY_STEP, HAND_CHO_GRU, HAND_LSTM
from seqmodels.nn.native import kernel_problem


@dataclass(frozen=True)
class EngineSupport:
    """Which engines can run a layer's cells: per engine None, or the reason it cannot.

    Attributes:
        layer: the layer as a user would name it, for messages (``LSTM``,
            ``Recurrent(PeepholeLSTMCell)``).
        kernel: torch's fused kernel computing every cell exactly (a ``torch._VF`` name:
            ``"lstm"``, ``"gru"``, ``"rnn_tanh"``, ``"rnn_relu"``), or None.
        recurrences: the fused engine's recurrence for each cell (``"lstm"``, ``"cho_gru"``,
            ``"step"``), None for a cell it cannot run.
        fused: why ``engine="fused"`` cannot run the cells, or None.
        compiled: why ``engine="compiled"`` cannot run the cells, or None.
        native: why ``engine="native"`` cannot run them (on any device), or None.
    """

    layer: str
    kernel: str | None
    recurrences: tuple[str | None, ...]
    fused: str | None
    native: str | None
    compiled: str | None = None

    def native_problem(self, x: Tensor) -> str | None:
        """Why torch's kernel cannot run this layer on x (its device, dtype, autocast), or None."""
        if self.native is not None or self.kernel is None:
            return self.native
        return kernel_problem(self.kernel, x)

    def refusal(self, engine: str) -> str | None:
        """The one-line message for running the cells on `engine`, or None where it can."""
        if engine == "fused" and self.fused is not None:
            return f"engine='fused' cannot run {self.fused}; use engine='loop'"
        if engine == "compiled" and self.compiled is not None:
            return f"engine='compiled' cannot run {self.compiled}; use engine='fused' or 'loop'"
        if engine == "native" and self.native is not None:
            return (
                f"engine='native' is not available for {self.layer}: {self.native}; "
                "use engine='fused' or 'auto'"
            )
        return None


def engine_support(layer) -> EngineSupport:
    """The record for a layer (anything with `cells`, e.g. Recurrent): see the module doc."""
    cells: list[Cell] = list(layer.cells)
    kernels = {torch_kernel(c) for c in cells}
    kernel = kernels.pop() if len(kernels) == 1 else None
    recurrences = tuple(fused_recurrence(c) for c in cells)
    fused = None
    for cell, recurrence in zip(cells, recurrences, strict=True):
        if recurrence is None:
            fused = (
                f"{type(cell).__name__}: it defines neither step() nor split_step() "
                "(see seqmodels.nn.Cell)"
            )
            break
    compiled = None
    for cell in cells:
        if not cell.has_step():
            compiled = (
                f"{type(cell).__name__}: it defines neither step() nor split_step() "
                "(see seqmodels.nn.Cell)"
            )
            break
    native = None if kernel is not None else "torch has no kernel for its cell"
    return EngineSupport(layer_name(layer), kernel, recurrences, fused, native, compiled)


def torch_kernel(cell: Cell) -> str | None:
    """torch's fused kernel computing this cell exactly (a torch._VF name), or None."""
    if is_exactly(cell, LSTMCell):
        return "lstm"
    if isinstance(cell, GRUCell) and is_exactly(cell, GRUCell):
        return "gru" if cell.reset_after else None
    if isinstance(cell, RNNCell) and is_exactly(cell, RNNCell):
        return {"tanh": "rnn_tanh", "relu": "rnn_relu"}.get(cell.nonlinearity)
    return None


def fused_recurrence(cell: Cell) -> str | None:
    """The fused engine's recurrence for this cell (HAND_LSTM, HAND_CHO_GRU, ANY_STEP), or None."""
    if is_exactly(cell, LSTMCell):
        return HAND_LSTM
    if isinstance(cell, GRUCell) and is_exactly(cell, GRUCell) and not cell.reset_after:
        return HAND_CHO_GRU
    return ANY_STEP if cell.has_step() else None


def is_exactly(cell: Cell, cls: type[Cell]) -> bool:
    """Whether the cell computes what `cls` computes: its class is cls, or a subclass
    that changes neither the step nor the parameters (a renamed or extended class)."""
    if not isinstance(cell, cls):
        return False
    same_step = all(
        getattr(type(cell), m) is getattr(cls, m)
        for m in ("step", "split_step", "forward", "has_step")
    )
    own = {"i2h.weight", "i2h.bias", "i2o.weight", "i2o.bias", *cls.extra_parameters}
    return same_step and all(name in own for name, _ in cell.named_parameters())


def layer_name(layer) -> str:
    """RNN(nonlinearity='swish'), GRU(reset_after=False), Recurrent(PeepholeLSTMCell)."""
    own = {"nonlinearity": "swish", "reset_after": False}
    options = [f"{k}={getattr(layer, k)!r}" for k in own if getattr(layer, k, None) == own[k]]
    if getattr(type(layer), "torch_class", None) is None:
        options = [cell_name(layer.cell)]
    return f"{type(layer).__name__}({', '.join(options)})"
