"""Optimizer and LR scheduler from config dicts, for any LightningModule.

    optimizer: {_target_: torch.optim.AdamW, lr: 3e-3, weight_decay: 0.01}
    scheduler: {_target_: torch.optim.lr_scheduler.OneCycleLR, max_lr: 3e-3,
                interval: step}

`interval`, `frequency` and `monitor` in the scheduler dict are Lightning's
scheduler settings, not the scheduler's arguments. A length argument left out
or null (`total_steps` of OneCycleLR, `T_max` of CosineAnnealingLR) is filled
in from the trainer: the number of optimizer steps for `interval: step`, of
epochs for `interval: epoch`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any

import lightning as L
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from seqmodels.errors import UserError

_LIGHTNING_KEYS = ("interval", "frequency", "monitor")
_LENGTH_ARGS = ("total_steps", "T_max")


def _as_dict(cfg: Mapping[str, Any] | DictConfig) -> dict[str, Any]:
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return dict(cfg)


def configure_optimizers(
    module: L.LightningModule,
    optimizer: Mapping[str, Any] | DictConfig,
    scheduler: Mapping[str, Any] | DictConfig | None = None,
) -> Any:
    params = [p for p in module.parameters() if p.requires_grad]
    opt = instantiate(_as_dict(optimizer), params=params)
    if not scheduler:
        return opt

    sched_cfg = _as_dict(scheduler)
    lightning_cfg = {k: sched_cfg.pop(k) for k in _LIGHTNING_KEYS if k in sched_cfg}
    lightning_cfg.setdefault("interval", "epoch")
    accepted = inspect.signature(get_class(sched_cfg["_target_"])).parameters
    for name in _LENGTH_ARGS:
        if name in accepted and sched_cfg.get(name) is None:
            trainer = module.trainer
            if lightning_cfg["interval"] == "step":
                sched_cfg[name] = int(trainer.estimated_stepping_batches)
            elif trainer.max_epochs is not None and trainer.max_epochs > 0:
                sched_cfg[name] = int(trainer.max_epochs)
            else:
                raise UserError(
                    f"task.scheduler.{name} is left to the trainer, but trainer.max_epochs is "
                    f"{trainer.max_epochs}: set task.scheduler.{name}, or trainer.max_epochs"
                )
    if sched_cfg.get("total_steps") is not None and "pct_start" in accepted:
        # OneCycleLR divides by its warm-up's length, pct_start * total_steps - 1, and
        # fails for a run of a few steps (fast_dev_run, a benchmark): stretch the cycle
        # past the run instead, so the run is the start of the schedule it asked for.
        pct_start = sched_cfg.get("pct_start", accepted["pct_start"].default)
        sched_cfg["total_steps"] = max(sched_cfg["total_steps"], math.ceil(2 / pct_start) + 2)
    lr_scheduler = instantiate(sched_cfg, optimizer=opt)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": lr_scheduler, **lightning_cfg}}
