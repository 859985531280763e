"""What a seqmodels checkpoint carries, how it is written, and how a run comes back from one.

Besides Lightning's own content (weights, optimizer and scheduler states, loop
progress, callback states, the module's hyperparameters, the datamodule's
`state_dict()` such as a vocabulary), every checkpoint written by
`seqmodels-train` carries:

- `seqmodels_config`: the run's composed config, so eval, predict and sample
  rebuild the task module and the datamodule without the config files or the
  data folder;
- `rng_states`: torch's, numpy's and Python's generator states (CUDA's where
  present). A resumed run puts them back at the start of its first training
  epoch (or before its first training step, when it resumes in the middle of
  an epoch), so it draws the same dropout masks as the run that was stopped;
  the data order itself depends only on (seed, epoch) and the position in the
  epoch, which the data loader's state carries (seqmodels.data.batching).

Files are written whole or not at all (`AtomicCheckpointIO`: a temporary file
beside the target, then a rename), so a kill at any moment leaves the previous
`last.ckpt` loadable. `LastCheckpoint` rewrites `last.ckpt` at the end of every
epoch (and every N steps when asked), whatever the monitored metric did.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from hydra.utils import get_class, instantiate
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from seqmodels.data.files import torch_save
from seqmodels.errors import UserError

CONFIG_KEY = "seqmodels_config"
RNG_KEY = "rng_states"

# `_target_`s that an earlier release wrote into checkpoints, and where those classes are now.
# A checkpoint is read under today's names, so that eval, predict and export build it and
# resume=/ckpt_path= compare it with a run's config under the same names. (The old modules
# still re-export the classes, for a checkpoint loaded by other means and for old configs.)
MOVED_TARGETS = {
    "seqmodels.tasks.attention.AdditiveAttention": "seqmodels.nn.AdditiveAttention",
    "seqmodels.tasks.attention.MultiplicativeAttention": "seqmodels.nn.MultiplicativeAttention",
}


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save into a temporary file in the checkpoint's own folder, then a rename.

    (Lightning's own save goes through a temporary file in the system's temp
    folder; on another filesystem its final move is a copy, which a kill can cut.)
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO.save_checkpoint takes no storage_options")
        torch_save(checkpoint, path)  # a full disk: one line naming the file (CannotWrite)


class LastCheckpoint(ModelCheckpoint):
    """`last.ckpt`: the newest state, for `resume=`, after every epoch and every N steps.

    Lightning's `save_last=True` rewrites last.ckpt only when a top-k checkpoint
    is saved at the same step, so with `save_top_k: 1` it holds the last
    improving epoch, not the last epoch. This callback keeps one file,
    `last.ckpt`, rewritten at the end of every epoch, and also every
    `every_n_train_steps` steps when that is set.
    """

    def __init__(self, dirpath: str, every_n_train_steps: int | None = None) -> None:
        super().__init__(
            dirpath=dirpath,
            filename="last",
            monitor=None,
            save_top_k=1,
            every_n_train_steps=every_n_train_steps,
            enable_version_counter=False,
        )
        self._every_n_epochs = 1  # on top of the step trigger, which Lightning makes exclusive

    @property
    def state_key(self) -> str:
        return "LastCheckpoint"

    @property
    def path(self) -> Path:
        return Path(str(self.dirpath)) / "last.ckpt"

    @property
    def saved_step(self) -> int:
        """The global step last.ckpt was last written at by this run (-1: not yet)."""
        return int(getattr(self, "_last_global_step_saved", -1))


class RunState(L.Callback):
    """Writes the run's config and the RNG states into every checkpoint; on resume,
    puts the RNG states back at the start of the first training epoch."""

    def __init__(self, cfg: DictConfig) -> None:
        self.config = OmegaConf.to_container(cfg, resolve=True)
        self._rng_to_restore: dict[str, Any] | None = None

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict) -> None:
        checkpoint[CONFIG_KEY] = self.config
        checkpoint[RNG_KEY] = rng_states()

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        # A scheduler whose length comes from trainer.estimated_stepping_batches (OneCycleLR
        # with interval: step) makes Lightning build the training loader inside
        # configure_optimizers, before the checkpoint's loop state is restored; the fit loop
        # then keeps that loader and never gives it the saved position in the epoch.
        # Dropping it makes the fit loop build it again, after the restore.
        if trainer.ckpt_path and getattr(trainer.fit_loop, "_combined_loader", None) is not None:
            trainer.fit_loop._combined_loader = None

    def on_load_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict) -> None:
        # Not now: the sanity check and loader set-up between loading and the first
        # epoch draw from the generators too, which the killed run did not do here.
        self._rng_to_restore = checkpoint.get(RNG_KEY)

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._restore_rng()

    def on_train_batch_start(
        self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int
    ) -> None:
        self._restore_rng()  # resumed mid-epoch: Lightning does not start the epoch again
        super().on_train_batch_start(trainer, pl_module, batch, batch_idx)

    def _restore_rng(self) -> None:
        if self._rng_to_restore is not None:
            set_rng_states(self._rng_to_restore)
            self._rng_to_restore = None


def rng_states() -> dict[str, Any]:
    """The generators' states as tensors and plain values (what weights_only loading accepts)."""
    # numpy's global (legacy) generator: what user code calling np.random.* draws from
    state: Any = np.random.get_state(legacy=True)  # noqa: NPY002
    name, keys, pos, has_gauss, gauss = state
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": (
            name,
            torch.from_numpy(keys.astype(np.int64)),
            int(pos),
            int(has_gauss),
            float(gauss),
        ),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    name, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))  # noqa: NPY002
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def read_checkpoint(ckpt_path: str | os.PathLike | None, key: str = "ckpt_path") -> dict[str, Any]:
    """A seqmodels checkpoint's content; one-line UserErrors for every way a file can be wrong."""
    if not ckpt_path:
        raise UserError(f"no checkpoint given: pass {key}=/path/to/run/checkpoints/last.ckpt")
    if not os.path.isfile(ckpt_path):
        raise UserError(f"{key}={ckpt_path}: checkpoint not found (give a .ckpt file)")
    try:
        # Our own checkpoints hold plain config dicts next to the tensors.
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    except Exception as err:  # a truncated or foreign file: say which, not how torch failed
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(
            f"{key}={ckpt_path}: cannot read the checkpoint ({first[:120]}); "
            "the file is damaged or not a checkpoint"
        ) from None
    if not isinstance(checkpoint, dict) or CONFIG_KEY not in checkpoint:
        raise UserError(
            f"{key}={ckpt_path} is not a seqmodels checkpoint (no '{CONFIG_KEY}' in it); "
            "use a .ckpt written by seqmodels-train"
        )
    for part in (CONFIG_KEY, "hyper_parameters"):
        if part in checkpoint:
            checkpoint[part] = current_targets(checkpoint[part])
    return checkpoint


def current_targets(value: Any) -> Any:
    """`value` (a config: dicts and lists) with every moved `_target_` under its name now."""
    if isinstance(value, dict):
        return {
            k: MOVED_TARGETS.get(v, v)
            if k == "_target_" and isinstance(v, str)
            else current_targets(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [current_targets(v) for v in value]
    return value


# Settings of the model, task and data groups that a checkpoint can take a new value
# for: they change neither the parameters' shapes nor what the data is. On resume=,
# every other difference in these groups is refused (the optimizer's and scheduler's
# settings, trainer, logger and callbacks are always free to change).
APPLICABLE = {
    "model": {"engine", "dropout"},
    "task": {
        "optimizer",
        "scheduler",
        "dropout",
        "input_dropout",
        "sample_length",
        "sample_temperature",
        "encoder_init",
        "embedding_init_range",
    },
    # where files are, how they are read; evaluation batches
    "data": {
        "root",
        "path",
        "cache_dir",
        "num_workers",
        "download",
        "verify",
        "eval_batch_size",
        "val_batch_size",
    },
}
# ckpt_path= starts a new run from the weights: only what changes their shapes is refused.
SHAPE_GROUPS = ("model", "task")


def differences(saved: Any, ours: Any, prefix: str) -> list[tuple[str, Any, Any]]:
    """(key, checkpoint's value, this run's value) for every leaf that differs."""
    if isinstance(saved, dict) and isinstance(ours, dict):
        found = []
        for k in sorted(set(saved) | set(ours)):
            found += differences(saved.get(k), ours.get(k), f"{prefix}.{k}")
        return found
    return [] if saved == ours else [(prefix, saved, ours)]


def check_same_model(ckpt_path: str | os.PathLike, cfg: DictConfig, key: str = "ckpt_path") -> None:
    """Refuse, in one line, a checkpoint whose task, data or model differs from this run's,
    or (for resume=) settings it cannot take: what changes the model's shape, the task,
    or the data. Checked before anything is built."""
    saved = read_checkpoint(ckpt_path, key)[CONFIG_KEY]
    for part in ("data", "task", "model"):
        theirs = (saved.get(part) or {}).get("_target_")
        ours = cfg[part]._target_
        if theirs != ours:
            raise UserError(
                f"{key}={ckpt_path} holds a {part} of {theirs}, but this run builds {ours}: "
                f"start from a checkpoint of the same task and model (or drop {key}=)"
            )
    resume = key == "resume"
    refused = []
    for part in ("model", "task", "data") if resume else SHAPE_GROUPS:
        ours = OmegaConf.to_container(cfg[part], resolve=True)
        for name, theirs, mine in differences(saved.get(part) or {}, ours, part):
            if name.split(".")[1] not in APPLICABLE[part]:
                refused.append(f"{name}={mine!r} (the checkpoint's: {theirs!r})")
    if refused:
        what = "resume= cannot apply" if resume else "this checkpoint cannot take"
        raise UserError(
            f"{key}={ckpt_path}: {what} {', '.join(refused)}: they change the model's shape, "
            "the task or the data; start a new run for them (resume= takes trainer, logger, "
            "callbacks, task.optimizer and task.scheduler settings)"
        )


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
