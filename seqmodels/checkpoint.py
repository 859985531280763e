"""What a seqmodels checkpoint carries, and how to get a run back from one.

Besides Lightning's own content (weights, the module's hyperparameters, the
datamodule's `state_dict()` such as a vocabulary), every checkpoint written by
`seqmodels-train` carries the run's composed config under
`checkpoint["seqmodels_config"]`. With it, eval, predict and sample rebuild the
task module and the datamodule without the config files or the data folder.
"""

from __future__ import annotations

import os
from typing import Any

import lightning as L
import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from seqmodels.errors import UserError

CONFIG_KEY = "seqmodels_config"


class SaveRunConfig(L.Callback):
    """Writes the run's composed config into every checkpoint."""

    def __init__(self, cfg: DictConfig) -> None:
        self.config = OmegaConf.to_container(cfg, resolve=True)

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict) -> None:
        checkpoint[CONFIG_KEY] = self.config


def read_checkpoint(ckpt_path: str | os.PathLike | None) -> dict[str, Any]:
    if not ckpt_path:
        raise UserError("no checkpoint given: pass ckpt_path=/path/to/run/checkpoints/last.ckpt")
    if not os.path.isfile(ckpt_path):
        raise UserError(f"checkpoint not found: {ckpt_path} (pass ckpt_path= a .ckpt file)")
    try:
        # Our own checkpoints hold plain config dicts next to the tensors.
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    except Exception as err:  # a truncated or foreign file: say which, not how torch failed
        raise UserError(f"cannot read checkpoint {ckpt_path}: {err}") from err
    if not isinstance(checkpoint, dict) or CONFIG_KEY not in checkpoint:
        raise UserError(
            f"{ckpt_path} is not a seqmodels checkpoint (no '{CONFIG_KEY}' in it); "
            "use a .ckpt written by seqmodels-train"
        )
    return checkpoint


def load_run(ckpt_path: str | os.PathLike | None) -> tuple[DictConfig, L.LightningModule, Any]:
    """(run config, task module with its weights in eval mode, datamodule with its state).

    The datamodule keeps the contract of seqmodels.data (DataModule and its task's kind).
    """
    checkpoint = read_checkpoint(ckpt_path)
    cfg = OmegaConf.create(checkpoint[CONFIG_KEY])
    datamodule = instantiate(cfg.data)
    dm_state = checkpoint.get(type(datamodule).__qualname__)
    if dm_state:
        datamodule.load_state_dict(dm_state)
    module_cls = get_class(cfg.task._target_)
    module = module_cls(**checkpoint["hyper_parameters"])
    module.load_state_dict(checkpoint["state_dict"])
    module.eval()
    return cfg, module, datamodule
