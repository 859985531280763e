"""Train a task module on a datamodule, as the composed config says, then test it.

This is the body of `seqmodels-train`; `seqmodels.cli` is the thin Hydra
entry point around it. Data flows one way: config -> datamodule -> task module
(built with the sizes the data decides) -> Lightning Trainer.

Before anything is built, the config is checked against the objects it builds
(config_check.py), the accelerator against the machine, and a checkpoint to
start from against the run's task and model: a mistake is one line, not a
traceback after the model was built. Every input file is read by the
datamodule's setup() before the first training step.

`resume=<run folder>` (see cli.py) continues the run in place from its
`checkpoints/last.ckpt`: same folder, same TensorBoard run (events the killed
process wrote after that checkpoint are purged from view), and the same
batches and random draws as the uninterrupted run (checkpoint.RunState), from
an epoch's end or from the middle of an epoch (seqmodels.data.batching).
`ckpt_path=` starts a new run from a checkpoint's weights and loop state.

A run holds its folder's lock while it trains (run_lock.py: one writer per
folder), stops at a step boundary with its position saved on a scheduler's
signal (preemption.py), and, when a scheduler restarts the same job in the
same folder (a requeue), continues from its last.ckpt as resume= would.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, ProgressBar
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from omegaconf import DictConfig, open_dict

from seqmodels.checkpoint import AtomicCheckpointIO, RunState, check_same_model, read_checkpoint
from seqmodels.config_check import check_config, check_optimizer
from seqmodels.errors import UNWRITABLE, CannotWrite, UserError
from seqmodels.preemption import Preemption
from seqmodels.run_lock import global_rank, holding
from seqmodels.tasks.base import Diverged
from seqmodels.tensorboard import TensorBoardLogger as SeqmodelsTensorBoardLogger
from seqmodels.tensorboard import event_file, quiet_writer_threads
from seqmodels.threads import SharedCores, choose_threads, chosen_by_user, registered

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


def set_numerics(cfg: DictConfig) -> None:
    """Process-wide numeric settings of a run (see configs/train.yaml)."""
    if cfg.get("flush_denormal") is not None:
        torch.set_flush_denormal(bool(cfg.flush_denormal))


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
    compile_module(module, cfg.get("compile"))
    return datamodule, module


def restarted_by() -> str | None:
    """The scheduler that restarted this job, when this process may be such a restart."""
    if os.environ.get("SUBMITIT_EXECUTOR"):
        return "submitit"  # a fresh submitit job never finds a last.ckpt in its new folder
    if int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0:
        return "SLURM"
    if int(os.environ.get("TORCHELASTIC_RESTART_COUNT") or 0) > 0:
        return "torchrun"
    return None


def check_new_run_folder(run: Path) -> str | None:
    """For a run that is not resume=: the scheduler that restarted it, when its folder
    already holds a last.ckpt; None for an empty folder. Any other run into a folder
    with a checkpoint is refused (it would overwrite that run)."""
    if not (run / "checkpoints" / "last.ckpt").is_file():
        return None
    scheduler = restarted_by()
    if scheduler is None:
        raise UserError(
            f"{run} already holds a run (checkpoints/last.ckpt): continue it with "
            f"seqmodels-train resume={run}, or give another hydra.run.dir"
        )
    return scheduler


def continue_restarted_job(cfg: DictConfig) -> None:
    """A run whose folder already holds a last.ckpt: a scheduler's restart of the same job
    continues from it (resume= semantics); anything else is refused, not overwritten."""
    if cfg.get("resume") or cfg.get("paths", {}).get("output_dir") is None:
        return
    run = Path(cfg.paths.output_dir).resolve()
    scheduler = check_new_run_folder(run)
    if scheduler is None:
        return
    if global_rank() == 0:
        print(f"{scheduler} restarted this job: continuing {run} from checkpoints/last.ckpt")
    with open_dict(cfg):
        cfg.resume = str(run)


def compile_module(module: L.LightningModule, setting: Any) -> None:
    """`compile=true` (or a dict of torch.compile's options, e.g. {mode: max-autotune}):
    torch.compile the task module's forward, in place, for this run.

    In place (nn.Module.compile): the parameters keep their names, so checkpoints
    are those of an eager run and load anywhere. Only the forward is compiled, the
    heavy part of every step; Lightning's hooks and the metric updates around it
    stay eager (compiling training_step too breaks the graph at every self.log).
    """
    if setting is None or setting is False:
        return
    if setting is True:
        options: dict[str, Any] = {}
    elif isinstance(setting, Mapping):
        options = dict(setting)
    else:
        raise UserError(
            f"compile={setting!r} must be true, false or a dict of torch.compile "
            "options (e.g. compile={mode:max-autotune})"
        )
    try:
        module.compile(**options)
    except (TypeError, RuntimeError) as e:  # an option or mode torch.compile does not take
        raise UserError(f"compile={setting!r}: {e}") from None


def start_checkpoint(cfg: DictConfig) -> str | None:
    """The checkpoint fit starts from: the run's last.ckpt for resume=, else ckpt_path=."""
    if cfg.get("resume"):
        path = str(Path(cfg.resume) / "checkpoints" / "last.ckpt")
        check_same_model(path, cfg, key="resume")
        return path
    if cfg.get("ckpt_path"):
        check_same_model(cfg.ckpt_path, cfg)
        return str(cfg.ckpt_path)
    return None


def make_loggers(cfg: DictConfig, resume_from: str | None) -> list[Logger]:
    loggers = []
    for c in (cfg.get("logger") or {}).values():
        if not (isinstance(c, Mapping) and "_target_" in c):
            continue
        extra = {}
        if resume_from and c["_target_"].endswith("TensorBoardLogger"):
            # Hide what the killed process logged after its last checkpoint.
            extra["purge_step"] = int(read_checkpoint(resume_from, "resume")["global_step"])
        loggers.append(instantiate(c, **extra))
    return loggers


def run_folder(cfg: DictConfig) -> Path:
    return Path(cfg.paths.output_dir)


def cluster_plugins() -> list[Any]:
    """Under SLURM, Lightning's environment without its auto-requeue: preemption.py saves
    at a step boundary instead, and submitit requeues."""
    return [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []


def train(cfg: DictConfig) -> dict[str, float]:
    check_accelerator(cfg.trainer)
    check_config(cfg)
    check_optimizer(cfg)
    # One writer per run folder: only the process of global rank 0 takes the lock.
    # Counted among this machine's training runs, which share its cores (threads.py).
    with holding(run_folder(cfg), enabled=global_rank() == 0) as took_over, registered():
        if took_over:
            print(took_over)
        preemption = Preemption(run_folder(cfg) / "checkpoints" / "last.ckpt")
        preemption.install()
        try:
            return fit_and_test(cfg, preemption)
        finally:
            preemption.uninstall()


def fit_and_test(cfg: DictConfig, preemption: Preemption) -> dict[str, float]:
    continue_restarted_job(cfg)
    start = start_checkpoint(cfg)
    set_numerics(cfg)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)

    datamodule, module = build(cfg)
    loggers = make_loggers(cfg, start if cfg.get("resume") else None)
    callbacks = [*instantiate_all(cfg.get("callbacks")), RunState(cfg), preemption]
    if not chosen_by_user(cfg.get("threads")):
        callbacks.append(SharedCores())  # the share is taken again at every epoch's start
    # A switch on the command line wins over the callbacks group: no progress bar
    # with `trainer.enable_progress_bar=false`.
    if not cfg.trainer.get("enable_progress_bar", True):
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=loggers or False,
        plugins=[AtomicCheckpointIO(), *cluster_plugins()],
    )
    _, busy = choose_threads(cfg.get("threads"))
    if busy and global_rank() == 0:
        print(busy)

    started = time.monotonic()
    if cfg.get("train", True):
        run_stage(trainer.fit, trainer, module, datamodule=datamodule, ckpt_path=start)
        preemption.stop_after_fit(trainer)
        check_early_stop(trainer)
    minutes = (time.monotonic() - started) / 60
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}

    best = best_checkpoint(trainer)
    if cfg.get("test", True):
        if not best:
            log.warning("no best checkpoint (no checkpoint callback?); testing the last weights")
        run_stage(trainer.test, trainer, module, datamodule=datamodule, ckpt_path=best or None)
        tested = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
        bad = {k: v for k, v in tested.items() if not math.isfinite(v)}
        if bad:
            raise Diverged(
                f"the test metrics are not finite ({', '.join(f'{k}={v}' for k, v in bad.items())}) "
                f"for {best or 'the last weights'}: the model diverged; see its validation curves"
            )
        metrics.update(tested)

    best_val = best_score(trainer)
    metrics.update(best_val)
    for logger in trainer.loggers:
        if isinstance(logger, SeqmodelsTensorBoardLogger) and trainer.is_global_zero:
            logger.log_run(run_row(cfg, module, trainer, minutes), best_val, trainer.global_step)

    if trainer.is_global_zero:
        report(metrics, best, trainer)
    return metrics


def run_stage(stage: Any, trainer: L.Trainer, *args: Any, **kwargs: Any) -> Any:
    """trainer.fit or trainer.test; Ctrl-C, which Lightning turns into exit(1), stays Ctrl-C;
    an event file that cannot be written (a full disk) is one line naming it."""
    try:
        with quiet_writer_threads():
            return stage(*args, **kwargs)
    except SystemExit:
        if trainer.interrupted:
            raise KeyboardInterrupt from None
        raise
    except OSError as err:
        tensorboard = [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        if err.errno in UNWRITABLE and tensorboard:
            raise CannotWrite(event_file(tensorboard[0]), err) from None
        raise


def check_early_stop(trainer: L.Trainer) -> None:
    for callback in trainer.callbacks:  # type: ignore[attr-defined]
        if isinstance(callback, EarlyStopping):
            if callback.stopping_reason == EarlyStoppingReason.NON_FINITE_METRIC:
                raise Diverged(f"training diverged: {callback.stopping_reason_message}")


def best_checkpoint(trainer: L.Trainer) -> str:
    """The path of the best checkpoint by the monitored metric, or "" when there is none."""
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.monitor:
            return callback.best_model_path
    return ""


def best_score(trainer: L.Trainer) -> dict[str, float]:
    """{"val/best_<metric>": value} of the monitored metric, for the HParams table."""
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.monitor:
            if callback.best_model_score is not None:
                name = callback.monitor.split("/", 1)[-1]
                return {f"val/best_{name}": float(callback.best_model_score)}
    return {}


def run_row(
    cfg: DictConfig, module: L.LightningModule, trainer: L.Trainer, minutes: float
) -> dict[str, Any]:
    """The run's values of the HParams table's columns (seqmodels.tensorboard.HPARAMS)."""
    if HydraConfig.initialized():
        task = HydraConfig.get().runtime.choices.get("task", "")
    else:
        task = cfg.data._target_.rsplit(".", 1)[-1].removesuffix("DataModule").lower()
    optimizer = cfg.task.get("optimizer") or {}
    row = {
        "task": task,
        "model": cfg.model._target_.rsplit(".", 1)[-1],
        "hidden_size": cfg.model.get("hidden_size"),
        "lr": optimizer.get("lr"),
        "params": sum(p.numel() for p in module.parameters() if p.requires_grad),
        "num_layers": cfg.model.get("num_layers"),
        "bidirectional": cfg.model.get("bidirectional"),
        "engine": cfg.model.get("engine"),
        "optimizer": str(optimizer.get("_target_", "")).rsplit(".", 1)[-1],
        "weight_decay": optimizer.get("weight_decay", 0.0),
        "batch_size": cfg.data.get("batch_size"),
        "max_epochs": cfg.trainer.get("max_epochs"),
        "precision": str(cfg.trainer.get("precision")),
        "seed": cfg.get("seed"),
        "epochs": trainer.current_epoch,
        "train_minutes": round(minutes, 2),
    }
    return {k: v for k, v in row.items() if v is not None}


def report(metrics: Mapping[str, float], best: str, trainer: L.Trainer) -> None:
    for callback in trainer.callbacks:  # type: ignore[attr-defined]
        if isinstance(callback, EarlyStopping) and callback.stopping_reason_message:
            print(
                f"stopped early after epoch {callback.stopped_epoch}: "
                f"{callback.stopping_reason_message.strip()}"
            )
    tests = {k: v for k, v in metrics.items() if k.startswith("test/")}
    if tests:
        print("test metrics: " + "  ".join(f"{k}={v:.4f}" for k, v in sorted(tests.items())))
    if best:
        print(f"best checkpoint: {best}")
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            print(
                f"tensorboard: tensorboard --logdir {logger.log_dir} (then open "
                "http://localhost:6006/#custom_scalars)"
            )
