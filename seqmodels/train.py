"""Train a task module on a datamodule, as the composed config says, then test it.

This is the body of `seqmodels-train`; `seqmodels.cli` is the thin Hydra
entry point around it. Data flows one way: config → datamodule → task module
(built with the sizes the data decides) → Lightning Trainer.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, ProgressBar
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from seqmodels.checkpoint import SaveRunConfig
from seqmodels.errors import UserError

log = logging.getLogger(__name__)


def check_accelerator(trainer_cfg: Mapping[str, Any]) -> None:
    """Fail in one line, before any work, when the config asks for a GPU that is not there."""
    accelerator = str(trainer_cfg.get("accelerator") or "auto").lower()
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise UserError(
            f"trainer.accelerator={accelerator} needs a CUDA GPU, but torch.cuda.is_available() "
            f"is False (torch {torch.__version__}); use trainer=cpu, or trainer=default to use "
            "whatever is there"
        )


def instantiate_all(group: Mapping[str, Any] | None) -> list[Any]:
    """Callbacks or loggers: every entry of the group that has a `_target_`."""
    if not group:
        return []
    return [instantiate(c) for c in group.values() if isinstance(c, Mapping) and "_target_" in c]


def build(cfg: DictConfig) -> tuple[L.LightningDataModule, L.LightningModule]:
    """The datamodule, set up (every input file read and checked), and the task module."""
    datamodule = instantiate(cfg.data)
    # Rank 0 downloads; DDP's other ranks start after it, inside trainer.fit.
    if int(os.environ.get("LOCAL_RANK", "0")) == 0:
        datamodule.prepare_data()
    datamodule.setup()
    module = instantiate(cfg.task, _recursive_=False, encoder=cfg.model, **datamodule.model_kwargs)
    return datamodule, module


def flat_hparams(cfg: DictConfig) -> dict[str, Any]:
    """The run's choices as flat `a/b/c: scalar` pairs for TensorBoard's HParams tab."""
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}/")
        elif isinstance(node, (bool, int, float, str)) or node is None:
            flat[prefix.rstrip("/")] = node if node is not None else "None"
        else:
            flat[prefix.rstrip("/")] = str(node)

    walk(
        {
            k: OmegaConf.to_container(cfg[k], resolve=True)
            for k in ("task", "model", "data")
            if k in cfg
        },
        "",
    )
    flat["seed"] = cfg.get("seed")
    return flat


def set_numerics(cfg: DictConfig) -> None:
    """Process-wide numeric settings of a run (see configs/train.yaml)."""
    if cfg.get("flush_denormal") is not None:
        torch.set_flush_denormal(bool(cfg.flush_denormal))


def train(cfg: DictConfig) -> dict[str, float]:
    check_accelerator(cfg.trainer)
    set_numerics(cfg)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)

    datamodule, module = build(cfg)
    loggers: list[Logger] = instantiate_all(cfg.get("logger"))
    callbacks = [*instantiate_all(cfg.get("callbacks")), SaveRunConfig(cfg)]
    # A switch on the command line wins over the callbacks group: no progress bar
    # with `trainer.enable_progress_bar=false`, no LR monitor with `logger=none`.
    if not cfg.trainer.get("enable_progress_bar", True):
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    if not loggers:
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)

    if cfg.get("train", True):
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}

    best = best_checkpoint(trainer)
    if cfg.get("test", True):
        if not best:
            log.warning("no best checkpoint (no checkpoint callback?); testing the last weights")
        trainer.test(module, datamodule=datamodule, ckpt_path=best or None)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})

    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            # Under their own names: logged at step 0, they would bend the val/ curves.
            final = {
                f"hparams/{k}": v for k, v in metrics.items() if k.startswith(("val/", "test/"))
            }
            logger.log_hyperparams(flat_hparams(cfg), metrics=final)
            logger.save()

    if trainer.is_global_zero:
        report(metrics, best, trainer)
    return metrics


def best_checkpoint(trainer: L.Trainer) -> str:
    """The path of the best checkpoint by the monitored metric, or "" when there is none."""
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.monitor:
            return callback.best_model_path
    return ""


def report(metrics: Mapping[str, float], best: str, trainer: L.Trainer) -> None:
    tests = {k: v for k, v in metrics.items() if k.startswith("test/")}
    if tests:
        print("test metrics: " + "  ".join(f"{k}={v:.4f}" for k, v in sorted(tests.items())))
    if best:
        print(f"best checkpoint: {best}")
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            print(f"tensorboard: tensorboard --logdir {logger.log_dir}")
