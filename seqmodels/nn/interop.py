"""Conversion to and from torch.nn.RNN / LSTM / GRU, with identical numbers.

torch keeps two matrices and two biases per layer and direction; a cell keeps
one i2h over cat(x, h). The map:

    i2h.weight = cat(weight_ih_l{k}, weight_hh_l{k}, dim=1)
    i2h.bias   = bias_ih_l{k} + bias_hh_l{k}      (GRU: only for r and z;
    bias_hn    = bias_hh_l{k}[2H:]                 the n part keeps b_in and b_hn apart)

to_torch() puts the summed bias in bias_ih and zeros (GRU: [0, 0, b_hn]) in
bias_hh, so outputs, states and weight gradients agree with the original. Each
cell does its own part of the map (`Cell.torch_parameters`, `load_torch_parameters`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from seqmodels.errors import UserError
from seqmodels.nn.support import layer_name

# torch.nn.RNN/LSTM/GRU's names of a cell's four tensors (Cell.torch_parameters' order)
TORCH_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


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
    with torch.no_grad():
        for cell, sfx in zip(
            layer.cells, _suffixes(module.num_layers, layer.num_directions), strict=True
        ):
            cell.load_torch_parameters(
                *(getattr(module, f"{name}_{sfx}", None) for name in TORCH_NAMES)
            )
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
    kind = layer.engine_support.kernel
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
    with torch.no_grad():
        for cell, sfx in zip(
            layer.cells, _suffixes(layer.num_layers, layer.num_directions), strict=True
        ):
            for name, value in zip(TORCH_NAMES, cell.torch_parameters(), strict=True):
                if value is not None:
                    getattr(module, f"{name}_{sfx}").copy_(value)
    module.train(layer.training)
    return module
