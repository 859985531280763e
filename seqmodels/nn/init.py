"""Initialisations for the LSTM's gates, in the style of torch.nn.init (in place, `_` suffix).

torch.nn.LSTM's init draws every bias from U(-1/sqrt(H), 1/sqrt(H)), so the forget
gate starts near sigmoid(0) = 0.5: the cell state halves at every step, and the
gradient from the last step to one k steps back shrinks like 0.5^k. Over 784
steps (pixel MNIST) that is nothing at all, and training sits at chance until
the forget gates happen to open. Both functions below open them from the start:

- `forget_gate_bias_(lstm, 1.0)`: the forget bias of Gers et al. (2000) and
  Jozefowicz et al. (2015), Keras' `unit_forget_bias=True`. sigmoid(1) = 0.73
  carries the state for tens of steps.
- `chrono_(lstm, max_steps)`: the chrono initialisation of Tallec & Ollivier
  (2018): forget bias log(u), input bias -log(u), u ~ U(1, max_steps - 1) per
  unit, so the units' memory spans are spread over 1..max_steps steps, the
  range of dependencies the task has.

    from seqmodels.nn import LSTM
    from seqmodels.nn.init import chrono_

    lstm = chrono_(LSTM(1, 128), max_steps=784)

Either works on any module holding LSTM-like cells (a layer, a model around
one): every cell inside with a gate named "f" (and "i") in its `gate_names`
gets it, the built-in LSTMCell and a cell of one's own alike. The cells keep
one bias, b_ih + b_hh (cells.py); `to_torch()` puts it in bias_ih and zeros
in bias_hh.
"""

from __future__ import annotations

import torch
from torch import nn

from seqmodels.errors import UserError
from seqmodels.nn.cells import Cell


def _gated_cells(module: nn.Module) -> list[Cell]:
    """Every cell in the module with a forget gate ("f" in its gate_names)."""
    cells = [m for m in module.modules() if isinstance(m, Cell) and "f" in m.gate_names]
    if not cells:
        raise UserError(
            f"{type(module).__name__} holds no cell with a forget gate: these inits set the "
            "gates named 'f' (and 'i') of LSTM-like cells"
        )
    for cell in cells:
        if cell.i2h.bias is None:
            raise UserError(f"a {type(cell).__name__} with bias=False has no gate bias to set")
    return cells


def _gate(cell: Cell, name: str) -> slice:
    """The rows of i2h (and of its bias) that hold the gate `name`."""
    k, H = cell.gate_names.index(name), cell.hidden_size
    return slice(k * H, (k + 1) * H)


def forget_gate_bias_(module: nn.Module, value: float = 1.0) -> nn.Module:
    """Set the forget-gate bias of every LSTM-like cell in a module (in place).

    The forget bias of Gers et al. (2000) and Jozefowicz et al. (2015), Keras'
    ``unit_forget_bias=True``: with torch's init the forget gate starts near 0.5 and
    the cell state halves every step; a bias of 1 (sigmoid 0.73) carries it for tens
    of steps. Every cell inside the module with a gate named ``"f"`` gets it (the
    built-in LSTMCell, the literature cells, a cell of your own); other biases are
    kept.

    Args:
        module: A layer, a cell, or a model holding them.
        value: The forget gates' bias. Default: 1.0

    Returns:
        The module, for chaining.

    Raises:
        UserError: if the module holds no cell with an ``"f"`` gate, or one without bias.

    Example:
        >>> from seqmodels.nn import LSTM
        >>> from seqmodels.nn.init import forget_gate_bias_
        >>> lstm = forget_gate_bias_(LSTM(10, 20), 1.0)
        >>> lstm.cells[0].i2h.bias[20:40].eq(1.0).all().item()  # rows i, f, g, o
        True
    """
    for cell in _gated_cells(module):
        with torch.no_grad():
            cell.i2h.bias[_gate(cell, "f")].fill_(value)  # type: ignore[index]
    return module


def chrono_(
    module: nn.Module, max_steps: int, generator: torch.Generator | None = None
) -> nn.Module:
    r"""The chrono initialisation (Tallec & Ollivier, 2018) of every LSTM-like cell (in place).

    .. math::
        b_f = \log(u), \qquad b_i = -\log(u), \qquad u \sim \mathcal{U}(1, T_{max} - 1)

    one :math:`u` per unit, so the units' memory spans are spread over 1 to
    ``max_steps`` steps, the range of dependencies the task has. Every cell inside the
    module with a gate named ``"f"`` gets it; cells without an ``"i"`` gate (the coupled
    LSTM) get the forget bias only.

    Args:
        module: A layer, a cell, or a model holding them.
        max_steps: :math:`T_{max}`, the longest dependency (e.g. the sequence length);
            at least 3.
        generator: The random generator for :math:`u`. Default: torch's global one

    Returns:
        The module, for chaining.

    Raises:
        UserError: if the module holds no cell with an ``"f"`` gate, or one without bias.

    Example:
        >>> from seqmodels.nn import LSTM
        >>> from seqmodels.nn.init import chrono_
        >>> lstm = chrono_(LSTM(1, 128), max_steps=784)  # pixel MNIST's 784 steps
        >>> b = lstm.cells[0].i2h.bias
        >>> bool((b[128:256] >= 0).all() and (b[:128] == -b[128:256]).all())
        True
    """
    if not isinstance(max_steps, int) or max_steps < 3:
        raise UserError(f"max_steps must be an int >= 3 (the longest dependency), got {max_steps}")
    for cell in _gated_cells(module):
        H = cell.hidden_size
        bias = cell.i2h.bias
        assert bias is not None  # checked by _gated_cells
        u = torch.rand(H, generator=generator, dtype=torch.float64) * (max_steps - 2) + 1
        log_u = u.log().to(bias.dtype)
        with torch.no_grad():
            bias[_gate(cell, "f")].copy_(log_u)
            if "i" in cell.gate_names:
                bias[_gate(cell, "i")].copy_(-log_u)
    return module
