"""Evaluate a checkpoint on its task's test split: the body of `seqmodels-eval`.

The checkpoint carries the run's config and the datamodule's state, so the
same data options (and vocabulary, permutation, ...) are used as in training.
`trainer.test` runs the datamodule's `prepare_data`/`setup("test")`, which
fetch only what the test split needs.
`+data.KEY=VALUE` overrides a data option, e.g. `+data.root=/elsewhere`.
"""

from __future__ import annotations

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from seqmodels.checkpoint import load_run
from seqmodels.train import check_accelerator, run_stage


def evaluate(cfg: DictConfig) -> dict[str, float]:
    check_accelerator(cfg.trainer)
    run_cfg, module, datamodule = load_run(cfg.ckpt_path)
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
