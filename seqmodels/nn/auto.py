"""engine="auto": the fastest correct engine for a call's configuration and device."""

from __future__ import annotations

from torch import Tensor

from seqmodels.nn.native import native_kind


def choose_engine(layer, x: Tensor, lengths: Tensor | None) -> str:
    if native_kind(layer) is not None and (x.is_cuda or lengths is None):
        return "native"
    return "fused"
