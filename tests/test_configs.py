"""Every config group option composes, and every object in it instantiates."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import open_dict

from seqmodels.cli import config_dir

CONFIGS = Path(config_dir())


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def compose_train(*overrides: str, tmp_path: Path):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIGS)):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=False)
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path)
        cfg.paths.data_dir = str(tmp_path / "data")
    return cfg


def test_every_group_has_options():
    for group in ("task", "model", "trainer", "logger", "callbacks", "experiment",
                  "hparams_search"):
        assert options(group), f"configs/{group}/ is empty"


@pytest.mark.parametrize("model", options("model"))
@pytest.mark.parametrize("task", options("task"))
def test_task_and_model_compose(task, model, tmp_path):
    cfg = compose_train(f"task={task}", f"model={model}", tmp_path=tmp_path)
    assert cfg.data._target_.startswith("seqmodels.data.")
    assert cfg.task._target_.startswith("seqmodels.tasks.")
    assert cfg.model._target_ == f"seqmodels.nn.{model.upper()}"
    assert cfg.monitor.metric and cfg.monitor.mode in ("min", "max")


@pytest.mark.parametrize("trainer", options("trainer"))
def test_trainer_options_instantiate_or_explain(trainer, tmp_path):
    import torch

    cfg = compose_train(f"trainer={trainer}", tmp_path=tmp_path)
    if cfg.trainer.accelerator == "gpu" and not torch.cuda.is_available():
        from seqmodels.train import check_accelerator

        with pytest.raises(ValueError, match="needs a CUDA GPU"):
            check_accelerator(cfg.trainer)
        return
    if cfg.trainer.strategy == "ddp":
        assert cfg.trainer.devices == 2  # launching DDP processes is not a unit test
        return
    trainer_obj = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    assert trainer_obj.max_epochs == cfg.trainer.max_epochs or cfg.trainer.fast_dev_run


@pytest.mark.parametrize("group", ["logger", "callbacks"])
def test_logger_and_callback_options_instantiate(group, tmp_path):
    from seqmodels.train import instantiate_all

    for option in options(group):
        cfg = compose_train(f"{group}={option}", tmp_path=tmp_path)
        objects = instantiate_all(cfg.get(group))
        expected = {k for k, v in (cfg.get(group) or {}).items() if v and "_target_" in v}
        assert len(objects) == len(expected)


@pytest.mark.parametrize("experiment", options("experiment"))
def test_experiments_compose(experiment, tmp_path):
    cfg = compose_train(f"experiment={experiment}", tmp_path=tmp_path)
    assert cfg.data._target_ and cfg.task._target_ and cfg.model._target_


@pytest.mark.parametrize("search", options("hparams_search"))
def test_hparams_search_composes(search, tmp_path):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIGS)):
        cfg = compose("train", overrides=[f"hparams_search={search}"], return_hydra_config=True)
    assert cfg.hydra.sweeper.params, "a search with nothing to search"
    assert cfg.optimized_metric


def test_trainer_exposes_common_overrides(tmp_path):
    # Overridable without `+`: each key must exist in the trainer config.
    cfg = compose_train(
        "trainer.max_time=00:00:05:00", "trainer.max_steps=10", "trainer.precision=bf16-mixed",
        "trainer.gradient_clip_val=1.0", "trainer.accumulate_grad_batches=2",
        "trainer.limit_train_batches=5", "trainer.limit_val_batches=2",
        "trainer.val_check_interval=0.5", "trainer.deterministic=true",
        "trainer.log_every_n_steps=1", "trainer.devices=1", tmp_path=tmp_path,
    )
    assert cfg.trainer.max_time == "00:00:05:00"
