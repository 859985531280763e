"""Conversion to and from torch.nn.RNN / LSTM / GRU, with identical numbers.

torch keeps two matrices and two biases per layer and direction; a cell keeps
one i2h over cat(x, h). The map:

    i2h.weight = cat(weight_ih_l{k}, weight_hh_l{k}, dim=1)
    i2h.bias   = bias_ih_l{k} + bias_hh_l{k}      (GRU: only for r and z;
    bias_hn    = bias_hh_l{k}[2H:]                 the n part keeps b_in and b_hn apart)

to_torch() puts the summed bias in bias_ih and zeros (GRU: [0, 0, b_hn]) in
bias_hh, so outputs, states and weight gradients agree with the original.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from seqmodels.errors import UserError
from seqmodels.nn.native import layer_name


def _suffixes(num_layers: int, num_directions: int):
    for layer in range(num_layers):
        for d in range(num_directions):
            yield f"l{layer}" + ("_reverse" if d else "")


def from_torch(cls, module: Any, engine: str = "auto"):
    """A `cls` layer (RNN, LSTM, GRU or a subclass) with `module`'s numbers."""
    want: Any = cls.torch_class
    if want is None:
        raise UserError(
            f"{cls.__name__}.from_torch: only RNN, LSTM and GRU (and their subclasses) convert "
            "from torch.nn; build a Recurrent from its cell instead"
        )
    name = want.__name__
    if not isinstance(module, want):
        raise UserError(
            f"{cls.__name__}.from_torch expects a torch.nn.{name}, got {type(module).__name__}"
        )
    if getattr(module, "proj_size", 0):
        raise UserError(
            f"{cls.__name__}.from_torch: proj_size={module.proj_size} has no equivalent here "
            f"(cells have no projection); use a torch.nn.LSTM with proj_size=0"
        )
    kwargs = dict(
        num_layers=module.num_layers,
        bias=module.bias,
        batch_first=module.batch_first,
        dropout=float(module.dropout),
        bidirectional=module.bidirectional,
        engine=engine,
    )
    if want is nn.RNN:
        kwargs["nonlinearity"] = module.nonlinearity
    layer = cls(module.input_size, module.hidden_size, **kwargs)
    p0 = next(module.parameters())
    layer.to(device=p0.device, dtype=p0.dtype)
    H = module.hidden_size
    with torch.no_grad():
        for cell, sfx in zip(
            layer.cells, _suffixes(module.num_layers, layer.num_directions), strict=True
        ):
            w_ih, w_hh = getattr(module, f"weight_ih_{sfx}"), getattr(module, f"weight_hh_{sfx}")
            cell.i2h.weight.copy_(torch.cat((w_ih, w_hh), 1))
            if module.bias:
                b_ih, b_hh = getattr(module, f"bias_ih_{sfx}"), getattr(module, f"bias_hh_{sfx}")
                if getattr(cell, "bias_hn", None) is not None:  # GRU: b_in and b_hn stay apart
                    cell.i2h.bias.copy_(torch.cat((b_ih[: 2 * H] + b_hh[: 2 * H], b_ih[2 * H :])))
                    cell.bias_hn.copy_(b_hh[2 * H :])
                else:
                    cell.i2h.bias.copy_(b_ih + b_hh)
    layer.train(module.training)
    return layer


# torch's kernel -> the torch.nn layer that runs it, and its options
TORCH_LAYERS: dict[str, tuple[Any, dict[str, Any]]] = {
    "lstm": (nn.LSTM, {}),
    "gru": (nn.GRU, {}),
    "rnn_tanh": (nn.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (nn.RNN, {"nonlinearity": "relu"}),
}


def to_torch(layer) -> nn.Module:
    """The torch.nn layer with `layer`'s numbers; torch has the formulations its kernels run
    (any layer whose cells are exactly torch's: RNN, LSTM, GRU, or Recurrent over such cells)."""
    kind = layer.native_kernel()
    if kind is None:
        raise UserError(
            f"{layer_name(layer)}.to_torch(): torch.nn has no such layer (it has the LSTM, the "
            "GRU with reset_after=True and the tanh/relu RNN)"
        )
    want, options = TORCH_LAYERS[kind]
    kwargs = dict(
        num_layers=layer.num_layers,
        bias=layer.bias,
        batch_first=layer.batch_first,
        dropout=layer.dropout,
        bidirectional=layer.bidirectional,
    )
    kwargs.update(options)
    w = layer.cells[0].i2h.weight
    module = want(layer.input_size, layer.hidden_size, device=w.device, dtype=w.dtype, **kwargs)
    H = layer.hidden_size
    with torch.no_grad():
        for cell, sfx in zip(
            layer.cells, _suffixes(layer.num_layers, layer.num_directions), strict=True
        ):
            getattr(module, f"weight_ih_{sfx}").copy_(cell.weight_ih)
            getattr(module, f"weight_hh_{sfx}").copy_(cell.weight_hh)
            if layer.bias:
                getattr(module, f"bias_ih_{sfx}").copy_(cell.i2h.bias)
                b_hh = getattr(module, f"bias_hh_{sfx}")
                b_hh.zero_()
                if getattr(cell, "bias_hn", None) is not None:
                    b_hh[2 * H :].copy_(cell.bias_hn)
    module.train(layer.training)
    return module
