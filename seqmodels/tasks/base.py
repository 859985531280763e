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
- The inference contract that seqmodels-export, -predict and -sample ask
  each task for (TaskModule's docstring).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterator, Mapping
from typing import Any

import lightning as L
import torch
from torch import nn

from seqmodels.errors import UserError
from seqmodels.tasks.encoder import plain_config
from seqmodels.tasks.inference import PredictInputs, Prediction, Program
from seqmodels.tasks.optim import configure_optimizers


class Diverged(UserError):
    """Training produced a non-finite loss, gradient or weight."""


class TaskModule(L.LightningModule):
    """Base class of the seqmodels task modules: a LightningModule with what they share.

    A task module is a `lightning.LightningModule` that wraps a recurrent
    encoder from `seqmodels.nn` for one kind of problem. This base class
    saves the hyperparameters as plain data (a checkpoint rebuilds the module
    without the config files), builds the optimizer and LR schedule from
    config dicts, logs the gradient norm and learning rate, stops a diverging
    run with one line, and lays out the run's TensorBoard charts (`charts`).

    It also defines the **inference contract**, which the commands use and
    never look past (they do not switch on the task's type), so that a new
    task needs no change to `seqmodels-export`, `-predict` or `-sample`:

    - `inference_programs(datamodule) -> dict[str, Program]`: the same as
      several programs a caller runs together, each written to its own file
      (a seq2seq model's encoder and decoder step, with its search between
      them); by default `{"": inference_program(datamodule)}`, one file.
    - `inference_program(datamodule) -> Program`: the inference path as a
      module with named tensor inputs and outputs (seqmodels-export writes it
      to ONNX or torch.export's pt2, and checks it against the eager module).
    - `read_request(datamodule, request) -> PredictInputs`: a seqmodels-predict
      request (`text=`, `file=`, `image=`, `csv=` and the options, as a
      mapping) read and encoded into model inputs, with a display name each.
    - `predict_request(inputs, request) -> Any`: the model run on them (in
      inference mode, in batches of `request["batch_size"]` where it helps).
    - `format_prediction(datamodule, inputs, predicted) -> Prediction`: the
      lines seqmodels-predict prints and the rows it returns.
    - `sample(datamodule, prime, length, ...) -> Iterator[str]`: generated
      text, piece by piece, for seqmodels-sample.

    Each method here raises a one-line `UserError` naming the task and what it
    does not do; a task implements the ones it supports. Wrong input (a
    request the task cannot read) is a `UserError` too, saying what to pass.
    `seqmodels.tasks.inference` holds the data types and the readers of raw
    inputs (text lines, images) that tasks share.

    A subclass calls `save_plain_hyperparameters(default_optimizer)` from its
    `__init__` (the optimizer used when the config gives none), keeps its
    hyperparameters in `self.hparams`, and names its TensorBoard charts in
    `charts()`. The hooks' arguments are on each method.

    Example:
        A new task implements the parts of the contract it supports; here, a
        per-token tagger that reads text and prints one tag per word (the real one,
        `seqmodels.tasks.tagger.Tagger`, does the same with a CRF)::

            from seqmodels.tasks.base import TaskModule
            from seqmodels.tasks.inference import Prediction, PredictInputs, read_request

            class MyTagger(TaskModule):
                def read_request(self, datamodule, request):
                    x, lengths, names = read_request(datamodule, request)  # text=/file=
                    return PredictInputs((x, lengths), names)

                def predict_request(self, inputs, request):
                    x, lengths = inputs.batch
                    with torch.inference_mode():
                        return self(x, lengths).argmax(-1)

                def format_prediction(self, datamodule, inputs, predicted):
                    rows = [(name, datamodule.decode_tags(tags))
                            for name, tags in zip(inputs.names, predicted)]
                    return Prediction([f"{tags}  {name}" for name, tags in rows], rows)
    """

    def save_plain_hyperparameters(self, default_optimizer: Mapping[str, Any]) -> None:
        """Save the calling __init__'s arguments as plain data (call it from __init__).

        Args:
            default_optimizer: the optimizer's config when the arguments give none,
                e.g. ``{"_target_": "torch.optim.Adam", "lr": 1e-3}``.

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

    # -- the inference contract (the class docstring) -----------------------------------
    def task_name(self) -> str:
        return type(self).__name__

    def inference_program(self, datamodule: Any) -> Program:
        """The inference path as a `Program` (module, example inputs, names, dynamic sizes).

        Args:
            datamodule: the checkpoint's datamodule, with its state (vocabulary, scaling).

        Returns:
            Program: its `module` runs on `inputs`' tensors in order; `dynamic` marks the
            batch (and time) dimensions that stay free; `metadata` is plain data for the
            file (class names, vocabulary).
        """
        raise UserError(
            f"seqmodels-export cannot export a {self.task_name()} checkpoint: the task does "
            "not define an inference program (TaskModule.inference_program)"
        )

    def inference_programs(self, datamodule: Any) -> dict[str, Program]:
        """The inference path as named programs, each exported to a file of its own
        (`<out>.<name>.onnx`; the name "" is `out` itself).

        An input of a later program that an earlier one outputs (the same name) takes that
        output when seqmodels-export checks the files (a decoder step reads the encoder's
        states). The default is one program, `inference_program`.

        Args:
            datamodule: the checkpoint's datamodule, with its state (vocabulary, scaling).

        Returns:
            dict[str, Program]: by name, in the order they run.
        """
        return {"": self.inference_program(datamodule)}

    def read_request(self, datamodule: Any, request: Mapping[str, Any]) -> PredictInputs:
        """A seqmodels-predict request read into model inputs.

        Args:
            datamodule: the checkpoint's datamodule, whose hooks encode raw inputs.
            request: the command's keys: `text`, `file`, `image`, `csv` (None where not
                given) and the options (`batch_size`, `beam`, `nbest`, ...).

        Returns:
            PredictInputs: the batch `predict_request` runs on, and a name per input.
        """
        raise UserError(
            f"seqmodels-predict cannot use a {self.task_name()} checkpoint: the task does not "
            "classify inputs, forecast or transduce (it defines no TaskModule.read_request)"
            + ("; to generate text from it use seqmodels-sample" if self.can_sample() else "")
        )

    def predict_request(self, inputs: PredictInputs, request: Mapping[str, Any]) -> Any:
        """Run the model on `inputs` (from `read_request`); whatever `format_prediction`
        reads."""
        raise UserError(f"seqmodels-predict does not predict with a {self.task_name()} checkpoint")

    def format_prediction(
        self, datamodule: Any, inputs: PredictInputs, predicted: Any
    ) -> Prediction:
        """The lines seqmodels-predict prints for `predicted`, and the rows it returns."""
        raise UserError(f"seqmodels-predict does not predict with a {self.task_name()} checkpoint")

    def can_sample(self) -> bool:
        """Whether `sample` generates (seqmodels-sample asks before loading anything else)."""
        return type(self).sample is not TaskModule.sample

    def sample(
        self,
        datamodule: Any,
        prime: str | None = None,
        length: int = 1000,
        temperature: float = 1.0,
        top_k: int = 0,
        seed: int | None = None,
    ) -> Iterator[str]:
        """Generated text for seqmodels-sample, piece by piece as it is made: the prime
        first (the task's default when None), then `length` generated pieces.

        Args:
            datamodule: the checkpoint's datamodule (the vocabulary).
            prime: text to start from; None: the task's default.
            length: how many pieces (characters) to generate after the prime.
            temperature: softmax temperature (> 0); top_k: sample among the k most
                likely (0: all); seed: a seed for reproducible samples.
        """
        raise UserError(
            f"seqmodels-sample needs a language model checkpoint (task=chargen); this is a "
            f"{self.task_name()} checkpoint, which does not generate text"
        )

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


def as_task(module: Any, ckpt_path: Any) -> TaskModule:
    """The task module a checkpoint rebuilt, for the commands that ask it for its
    inference contract; a one-line UserError for a LightningModule of another kind."""
    if not isinstance(module, TaskModule):
        raise UserError(
            f"{ckpt_path} holds a {type(module).__name__}, not a seqmodels task module "
            "(a subclass of seqmodels.tasks.base.TaskModule): the commands ask the task module "
            "how to export, predict and sample"
        )
    return module


def grad_norm(parameters: Any) -> torch.Tensor | None:
    """The total L2 norm of the parameters' gradients (None when none has one)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return None
    return torch.nn.utils.get_total_norm(grads)
