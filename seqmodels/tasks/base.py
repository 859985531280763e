"""TaskModule: what every seqmodels LightningModule shares.

- Hyperparameters as plain data (dicts, lists, numbers), so a checkpoint
  rebuilds its module without the config files.
- The optimizer and LR schedule from config dicts (optim.py).
- The total gradient norm, computed before clipping at every step, and logged
  as `train/grad_norm` on the steps whose logs Lightning writes, with the
  learning rate as `train/lr` (the same tag whatever the optimizer).
- The run's TensorBoard dashboard (Custom Scalars): each task names its charts
  (`charts()`), train and validation of one metric together.
- Divergence stops the run: a non-finite gradient norm stops it before the
  optimizer applies it, a non-finite loss right after its step, and weights
  that are not finite are never written to a checkpoint. The error names the
  step, the epoch, the last checkpoint and what to try.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from torch import nn

from seqmodels.errors import UserError
from seqmodels.tasks.encoder import plain_config
from seqmodels.tasks.optim import configure_optimizers


class Diverged(UserError):
    """Training produced a non-finite loss, gradient or weight."""


class TaskModule(L.LightningModule):
    def save_plain_hyperparameters(self, default_optimizer: Mapping[str, Any]) -> None:
        """Save the calling __init__'s arguments as plain data (call it from __init__).

        An `encoder` given as a ready nn.Module is not saved: such a module is for
        use from Python, and a checkpoint of it needs its class to load anyway.
        """
        frame = inspect.currentframe()
        assert frame is not None and frame.f_back is not None
        caller = frame.f_back
        ignore = [k for k, v in caller.f_locals.items() if isinstance(v, nn.Module)]
        self.save_hyperparameters(ignore=ignore, frame=caller, logger=False)
        for key, value in list(self.hparams.items()):
            self.hparams[key] = plain_config(value)
        if not self.hparams.get("optimizer"):
            self.hparams["optimizer"] = dict(default_optimizer)

    def configure_optimizers(self) -> Any:
        return configure_optimizers(self, self.hparams["optimizer"], self.hparams.get("scheduler"))

    @property
    def datamodule(self) -> Any:
        """The trainer's datamodule (seqmodels.data's contract), None outside trainer.fit/test."""
        return getattr(self._trainer, "datamodule", None) if self._trainer is not None else None

    def media_step(self) -> int:
        """The step at which Lightning writes this validation epoch's scalars (images and
        text of the epoch go at the same step)."""
        return max(self.global_step - 1, 0)

    def charts(self) -> dict[str, dict[str, list[str]]]:
        """Custom Scalars: category -> chart title -> the tags drawn together.

        Tasks put "train vs validation" first: "loss" and their main metric, under
        the same titles in every task, so runs of several tasks share charts.
        """
        return {
            "optimisation": {
                "learning rate": ["train/lr"],
                "gradient norm (before clipping)": ["train/grad_norm"],
                "gradient through time: log10 first step / last step": [
                    "grad_flow/first_over_last"
                ],
            }
        }

    def gradient_flow(self, batch: Any) -> torch.Tensor:
        """(directions, T): ||dL/dh_t|| of the encoder's top layer on `batch` (gradflow.py)."""
        raise NotImplementedError

    def on_fit_start(self) -> None:
        if self.trainer.is_global_zero:
            for logger in self.loggers:
                if hasattr(logger, "log_layout"):  # seqmodels.tensorboard.TensorBoardLogger
                    logger.log_layout(self.charts())

    def writes_logs(self) -> bool:
        """True on the optimizer steps whose step-level logs Lightning writes to the logger.

        Lightning writes them at global steps n-1, 2n-1, ... (n = log_every_n_steps);
        during a training step, and in the hooks around its optimizer step,
        `global_step` is still that step's number.
        """
        if self._trainer is None:  # stepped by hand, outside a Trainer: nothing is written
            return False
        every = self.trainer.log_every_n_steps  # type: ignore[attr-defined]  # set in Trainer()
        return (self.global_step + 1) % max(1, every) == 0

    # -- divergence -------------------------------------------------------------------
    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Total L2 norm of the gradients, before clipping changes them.
        norm = grad_norm(self.parameters())
        if norm is None:
            return
        if not torch.isfinite(norm):
            raise Diverged(self.divergence_message(f"the gradient norm is {float(norm)}"))
        if self.writes_logs():
            self.log("train/grad_norm", norm, on_step=True, on_epoch=False)
            self.log(
                "train/lr", float(optimizer.param_groups[0]["lr"]), on_step=True, on_epoch=False
            )

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, Mapping) else outputs
        if isinstance(loss, torch.Tensor) and not torch.isfinite(loss.detach()).all():
            raise Diverged(self.divergence_message(f"the training loss is {float(loss)}"))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        bad = [n for n, p in self.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            raise Diverged(self.divergence_message(f"{bad[0]} holds non-finite values"))

    def divergence_message(self, what: str) -> str:
        trainer = self.trainer
        written = [
            getattr(cb, attr, "")
            for cb in trainer.checkpoint_callbacks
            for attr in ("best_model_path", "last_model_path")
        ]
        written = [p for p in written if p and os.path.isfile(p)]
        last = max(written, key=os.path.getmtime) if written else ""  # the newest: all are finite
        where = f"the last checkpoint is {last}" if last else "no checkpoint was written before it"
        lr = self.hparams["optimizer"].get("lr")
        clip = trainer.gradient_clip_val
        tips = [
            f"a lower task.optimizer.lr (now {lr})"
            if lr is not None
            else "a lower task.optimizer.lr"
        ]
        tips.append(
            f"a lower trainer.gradient_clip_val (now {clip})"
            if clip
            else "trainer.gradient_clip_val=1.0"
        )
        return (
            f"training diverged at step {self.global_step} (epoch {self.current_epoch}): {what}; "
            f"{where}; try {' or '.join(tips)}"
        )


def grad_norm(parameters: Any) -> torch.Tensor | None:
    """The total L2 norm of the parameters' gradients (None when none has one)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return None
    return torch.nn.utils.get_total_norm(grads)
