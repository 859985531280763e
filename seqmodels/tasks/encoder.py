"""Build the recurrent encoder a task module wraps.

Task modules take the encoder either as a ready `nn.Module` (for people using
them from Python) or as the `model:` config dict (`_target_:
seqmodels.nn.LSTM`, sizes, engine). The input size is never in that config:
the task module knows it (embedding or feature size) and fills it in here.
Keeping the config form lets `save_hyperparameters` store plain data, so a
checkpoint rebuilds its module without the config files.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn


def plain_config(cfg: Any) -> Any:
    """A DictConfig as plain dicts and lists (resolved); anything else unchanged."""
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)
    return cfg


def build_encoder(
    encoder: nn.Module | Mapping[str, Any],
    input_size: int,
    init: Mapping[str, Any] | None = None,
) -> nn.Module:
    """The encoder, built from its config with `input_size` filled in (a module is kept).

    `init`: a function's config applied to the encoder once built, such as
    `{_target_: seqmodels.nn.init.chrono_, max_steps: 784}` (seqmodels.nn.init).
    """
    if isinstance(encoder, nn.Module):
        module = encoder
    else:
        cfg = dict(encoder)
        cfg.pop("input_size", None)  # ours to decide, whatever the config says
        module = instantiate(cfg, input_size=input_size)
    if init:
        instantiate(dict(init), _partial_=True)(module)
    return module


def encoder_output_size(encoder: nn.Module) -> int:
    """Features per step of the encoder's output: hidden_size × directions."""
    directions = 2 if getattr(encoder, "bidirectional", False) else 1
    hidden: Any = encoder.hidden_size  # an int attribute, which nn.Module's typing cannot see
    return int(hidden) * directions
