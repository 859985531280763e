"""Evaluate a checkpoint on its task's test split: the body of `seqmodels-eval`.

The checkpoint carries the run's config and the datamodule's state, so the
same data options (and vocabulary, permutation, ...) are used as in training.
`trainer.test` runs the datamodule's `prepare_data`/`setup("test")`, which
fetch only what the test split needs.
`+data.KEY=VALUE` overrides a data option, e.g. `+data.root=/elsewhere`, and
`+task.decode.KEY=VALUE` a decoding setting of a task that has them (task=seq2seq:
`+task.decode.beam_size=1`, `'+task.decode.attention_window=[1,4]'`), so one
checkpoint is tested with another search without retraining.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from seqmodels.checkpoint import load_run
from seqmodels.errors import UserError
from seqmodels.train import check_accelerator, run_stage


def with_decode(module: L.LightningModule, overrides: Any) -> L.LightningModule:
    """The module built again with its `decode` hyperparameters updated by `overrides` (its
    own checks run on them), holding the same weights."""
    hparams = dict(module.hparams)
    if not isinstance(hparams.get("decode"), dict):
        raise UserError(
            f"+task.decode: {type(module).__name__} has no decoding settings to override"
        )
    if not isinstance(overrides, DictConfig):
        raise UserError(f"+task.decode={overrides}: give its settings, +task.decode.KEY=VALUE")
    changes = OmegaConf.to_container(overrides, resolve=True)
    assert isinstance(changes, dict)  # a DictConfig's container
    hparams["decode"] = {**hparams["decode"], **changes}
    rebuilt = type(module)(**hparams)
    rebuilt.load_state_dict(module.state_dict())
    return rebuilt.eval()


def evaluate(cfg: DictConfig) -> dict[str, float]:
    check_accelerator(cfg.trainer)
    run_cfg, module, datamodule = load_run(cfg.ckpt_path)
    task = cfg.get("task") or {}
    if not isinstance(task, DictConfig | dict) or set(task) - {"decode"}:
        raise UserError(
            f"+task={task}: seqmodels-eval overrides only "
            "task.decode settings (the rest is the checkpoint's model)"
        )
    if task.get("decode") is not None:
        module = with_decode(module, task["decode"])
    if cfg.get("data"):
        state = datamodule.state_dict()
        data_cfg = OmegaConf.merge(run_cfg.data, cfg.data)
        datamodule = instantiate(data_cfg)
        if state:
            datamodule.load_state_dict(state)
    trainer: L.Trainer = instantiate(cfg.trainer, logger=False, callbacks=[])
    results = run_stage(trainer.test, trainer, module, datamodule=datamodule, verbose=False)
    metrics = {k: float(v) for k, v in results[0].items()}
    if trainer.is_global_zero:  # once, not once per DDP process
        print("test metrics: " + "  ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())))
    return metrics
