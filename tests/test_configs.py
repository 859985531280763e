"""Every config composes and every object in it is built, so a misspelled key fails here.

For each task x model pair and for each experiment: the datamodule (set up on
a small dataset in the real layout), the task module with its encoder, the
trainer, callbacks and loggers, exactly as `seqmodels-train` builds them.
"""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf
from support import CONFIGS, compose_train, options, small_data_overrides

from seqmodels.data import (
    CharacterText,
    Classification,
    DataModule,
    Forecasting,
    Transduction,
    missing,
)
from seqmodels.train import build, instantiate_all


def build_everything(cfg, tmp_path):
    """What train() builds, short of fitting: (datamodule, module, trainer)."""
    datamodule, module = build(cfg)
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    if trainer_cfg["accelerator"] in ("gpu", "cuda") and not torch.cuda.is_available():
        trainer_cfg["accelerator"] = "cpu"  # the GPU recipes' other keys are still checked
        if trainer_cfg["precision"] == "16-mixed":
            trainer_cfg["precision"] = "bf16-mixed"  # what CPU autocast has
    callbacks = instantiate_all(cfg.get("callbacks"))
    loggers = instantiate_all(cfg.get("logger"))
    trainer = instantiate(trainer_cfg, callbacks=callbacks, logger=loggers or False)
    return datamodule, module, trainer


def test_every_group_has_options():
    for group in (
        "task",
        "model",
        "trainer",
        "logger",
        "callbacks",
        "experiment",
        "hparams_search",
    ):
        assert options(group), f"configs/{group}/ is empty"


@pytest.mark.parametrize("model", options("model"))
@pytest.mark.parametrize("task", options("task"))
def test_every_task_and_model_builds(task, model, small_data, tmp_path):
    cfg = compose_train(
        f"task={task}",
        f"model={model}",
        *small_data_overrides(task, small_data),
        output_dir=tmp_path,
    )
    datamodule, module, trainer = build_everything(cfg, tmp_path)
    expected = {"custom": "Recurrent"}.get(model, model.upper())
    assert type(module.encoder).__name__ == expected
    assert cfg.monitor.metric and cfg.monitor.mode in ("min", "max")
    # The datamodule keeps the written contract (seqmodels.data).
    assert missing(datamodule, DataModule) == []
    kinds = {"chargen": CharacterText, "forecast": Forecasting, "seq2seq": Transduction}
    kind = kinds.get(task, Classification)
    assert missing(datamodule, kind) == []
    assert trainer.max_epochs == cfg.trainer.max_epochs


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_builds(experiment, small_data, tmp_path):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIGS)):
        task = compose("train", overrides=[f"experiment={experiment}"]).data._target_
    task = {
        "ParityDataModule": "parity",
        "IMDBDataModule": "imdb",
        "MNISTDataModule": "mnist",
        "CharTextDataModule": "chargen",
        "ForecastDataModule": "forecast",
        "Seq2SeqDataModule": "seq2seq",
        "TaggingDataModule": "tagging",
    }[task.rsplit(".", 1)[1]]
    cfg = compose_train(
        f"experiment={experiment}", *small_data_overrides(task, small_data), output_dir=tmp_path
    )
    datamodule, module, trainer = build_everything(cfg, tmp_path)
    assert module.hparams.optimizer["_target_"].startswith("torch.optim.")


def test_a_misspelled_key_fails_the_build(small_data, tmp_path):
    cfg = compose_train(
        "task=imdb",
        "+task.poolng=mean",
        *small_data_overrides("imdb", small_data),
        output_dir=tmp_path,
    )
    with pytest.raises(Exception, match="poolng"):
        build_everything(cfg, tmp_path)


@pytest.mark.parametrize("trainer", options("trainer"))
def test_trainer_options(trainer, tmp_path):
    cfg = compose_train(f"trainer={trainer}", output_dir=tmp_path)
    if cfg.trainer.accelerator == "gpu" and not torch.cuda.is_available():
        from seqmodels.train import check_accelerator

        with pytest.raises(ValueError, match="needs a CUDA GPU"):
            check_accelerator(cfg.trainer)
        return
    trainer_obj = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    assert trainer_obj.num_devices == cfg.trainer.devices  # DDP: processes start only in fit
    assert trainer_obj.max_epochs == (1 if cfg.trainer.fast_dev_run else cfg.trainer.max_epochs)


@pytest.mark.parametrize("group", ["logger", "callbacks"])
def test_logger_and_callback_options_instantiate(group, tmp_path):
    for option in options(group):
        cfg = compose_train(f"{group}={option}", output_dir=tmp_path)
        objects = instantiate_all(cfg.get(group))
        expected = {k for k, v in (cfg.get(group) or {}).items() if v and "_target_" in v}
        assert len(objects) == len(expected)


@pytest.mark.parametrize("search", options("hparams_search"))
def test_hparams_search_composes(search, tmp_path):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIGS)):
        cfg = compose("train", overrides=[f"hparams_search={search}"], return_hydra_config=True)
    assert cfg.hydra.sweeper.params, "a search with nothing to search"
    assert cfg.hydra.sweeper.study_name and cfg.hydra.sweeper.n_trials > 0


def test_trainer_exposes_common_overrides(tmp_path):
    # Overridable without `+`: each key must exist in the trainer config.
    cfg = compose_train(
        "trainer.max_time=00:00:05:00",
        "trainer.max_steps=10",
        "trainer.precision=bf16-mixed",
        "trainer.gradient_clip_val=1.0",
        "trainer.accumulate_grad_batches=2",
        "trainer.limit_train_batches=5",
        "trainer.limit_val_batches=2",
        "trainer.val_check_interval=0.5",
        "trainer.deterministic=true",
        "trainer.log_every_n_steps=1",
        "trainer.devices=1",
        output_dir=tmp_path,
    )
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    assert (trainer.max_steps, trainer.accumulate_grad_batches, trainer.gradient_clip_val) == (
        10,
        2,
        1.0,
    )
