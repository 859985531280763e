"""Preemption: a run told to stop by its scheduler stops at a step boundary, with its
exact position saved, says so in one line, and comes back where it stopped.

What schedulers send before they kill a job: SLURM sends SIGTERM when it
preempts a job (SIGKILL follows after the partition's GraceTime) and the
`--signal` of the job before its time limit (submitit asks for USR2,
`hydra.launcher.signal_delay_s` seconds before; Lightning's SLURM environment
listens to SIGUSR1); Kubernetes and spot instances send SIGTERM.

- While training, such a signal is noted; the current optimizer step finishes,
  `checkpoints/last.ckpt` is written with the position in the epoch (the data
  loader's state, the RNG states, a language model's carried state: resuming
  from it is exact) and the run stops with one line,
  `preempted by SIGTERM at step 1234 (epoch 3, batch 17 of 32): ...`, and the
  exit status 128 + the signal's number (143 for SIGTERM, 138 for SIGUSR1),
  the status a shell shows for a process the signal ended. A signal during the
  validation at an epoch's end stops the run before the next step, from the
  last.ckpt that epoch wrote.
- Before training starts, or during the test after it, the run stops at once
  (nothing to save; a resumed run tests its best checkpoint again).
- Under DDP every process stops after the same step: at each step the processes
  agree whether any of them got a signal.
- Inside a submitit job (`hydra/launcher=slurm` or `submitit_local`), once
  last.ckpt is written, submitit's own handler takes over: it requeues the job
  (counting time limits against `hydra.launcher.max_num_timeout`), and the
  requeued job continues from last.ckpt in its own folder (see train.py).

Ctrl-C (SIGINT) while training takes the same path: the step in progress
finishes, last.ckpt is written at it, and the run stops with
`interrupted (Ctrl-C) at step 1234 (...): saved ...; continue with: ...` and
status 130, so `resume=` continues from that step, not from the last epoch's
end. A second Ctrl-C stops at once (KeyboardInterrupt, nothing saved), and
Ctrl-C outside the training loop is the plain KeyboardInterrupt it always was.
Lightning's own answer to Ctrl-C (catch the KeyboardInterrupt wherever it
lands, call the callbacks' `on_exception`, exit) saves nothing, and cannot:
the exception may land in the middle of an optimizer step.

Lightning's own SIGTERM handling (stop after the batch, or in the middle of a
validation, saving nothing) and its SLURM auto-requeue (a checkpoint written
from inside the signal handler, wherever the step was, then `scontrol
requeue`) are replaced for the run's duration: the handlers here are put back
when each of Lightning's stages starts.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L

from seqmodels.checkpoint import LastCheckpoint
from seqmodels.run_lock import global_rank

# What schedulers send before they stop a job (submitit's own signal is added in its jobs),
# and Ctrl-C.
SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


class Preempted(BaseException):
    """The run stopped for a signal. Not an Exception: nothing between the trainer and the
    command line may take it for an error. `exit_status` is 128 + the signal's number."""

    def __init__(self, message: str, signum: int, hand_over: Callable[[], None] | None = None):
        super().__init__(message)
        self.signum, self.exit_status = signum, 128 + signum
        self.hand_over = hand_over  # submitit's requeue, where it runs the job


def submitit_signal() -> int | None:
    """The signal submitit requeues its job on, inside a submitit job (else None)."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return None
    return int(getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")))


def is_submitit_requeue(handler: Any) -> bool:
    owner = getattr(handler, "__self__", None)
    return getattr(handler, "__name__", "") == "checkpoint_and_try_requeue" and type(
        owner
    ).__module__.startswith("submitit")


class Preemption(L.Callback):
    """Stops the run at a step boundary on a scheduler's signal (module docstring).

    `install()` before anything is built, `uninstall()` at the end; `stop_after_fit()`
    between the fit and the test.
    """

    def __init__(self, last_ckpt: str | os.PathLike) -> None:
        self.last_ckpt = Path(last_ckpt)
        self.signum: int | None = None
        self.phase = "before training"  # "training" between on_train_start and the fit's end
        self.original: dict[int, Any] = {}
        self.requeue: Any = None  # submitit's handler, where it runs the job

    # -- signals ------------------------------------------------------------------------
    def signals(self) -> list[int]:
        extra = submitit_signal()
        return [*SIGNALS, *([extra] if extra and extra not in SIGNALS else [])]

    def install(self) -> None:
        for sig in self.signals():
            current = signal.getsignal(sig)
            self.original.setdefault(sig, current)
            if is_submitit_requeue(current):
                self.requeue = current
            signal.signal(sig, self._on_signal)

    def uninstall(self) -> None:
        for sig, handler in self.original.items():
            signal.signal(sig, handler)
        self.original = {}

    def _on_signal(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and (self.phase != "training" or self.signum is not None):
            # Ctrl-C outside the loop, or a second one: stop now, as Python's own handler does
            raise KeyboardInterrupt
        if self.signum is None or signum == submitit_signal():
            self.signum = signum  # submitit's own signal wins: it decides on the requeue
        if self.phase != "training":
            raise self.preempted(self.phase)

    # Lightning puts its own handlers in at the start of each stage: ours go back on top.
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.install()
        self.phase = "training"

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.phase = "during the test"
        self.install()

    # -- at step boundaries -------------------------------------------------------------
    def signalled(self, trainer: L.Trainer) -> bool:
        """Whether any process got a signal (the same answer on every process)."""
        mine = self.signum is not None
        if trainer.world_size == 1:
            return mine
        return bool(trainer.strategy.reduce_boolean_decision(mine, all=False))

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        # The signal came between two steps (a validation, an epoch's end): stop here
        # when last.ckpt already holds this step, else after this step.
        if self.signalled(trainer) and self.saved_now(trainer):
            raise self.preempted(self.where(trainer, batch_idx))

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if self.signalled(trainer):
            trainer.save_checkpoint(self.last_ckpt)
            raise self.preempted(self.where(trainer, batch_idx + 1))

    def stop_after_fit(self, trainer: L.Trainer) -> None:
        """A signal during the fit's last validation: stop before the test."""
        self.phase = "after the fit"
        if self.signalled(trainer):
            if not self.saved_now(trainer):
                trainer.save_checkpoint(self.last_ckpt)
            raise self.preempted(f"after the fit, at step {trainer.global_step}")

    def saved_now(self, trainer: L.Trainer) -> bool:
        """Whether last.ckpt already holds the current step (written by LastCheckpoint)."""
        return any(
            isinstance(cb, LastCheckpoint)
            and cb.path == self.last_ckpt
            and cb.saved_step == trainer.global_step
            for cb in trainer.checkpoint_callbacks
        )

    def where(self, trainer: L.Trainer, batches_done: int) -> str:
        total = trainer.num_training_batches
        of = f" of {total}" if isinstance(total, int) else ""
        return (
            f"at step {trainer.global_step} (epoch {trainer.current_epoch}, "
            f"batch {batches_done}{of})"
        )

    def preempted(self, where: str) -> Preempted:
        signum = self.signum or signal.SIGTERM
        name = signal.Signals(signum).name
        saved = self.last_ckpt.is_file()
        run = self.last_ckpt.parent.parent
        if self.requeue is not None:
            then = "submitit requeues the job, which continues from it"
        else:
            then = f"continue with: seqmodels-train resume={run}"
        what = f"saved {self.last_ckpt}; {then}" if saved else "nothing to save yet"
        if signum == signal.SIGINT:  # the user's Ctrl-C: not a scheduler's, never requeued
            if saved:
                what = f"saved {self.last_ckpt}; continue with: seqmodels-train resume={run}"
            return Preempted(
                f"interrupted (Ctrl-C) {where}: {what}" if global_rank() == 0 else "", signum
            )
        message = f"preempted by {name} {where}: {what}"
        hand_over = None
        if self.requeue is not None:
            requeue = self.requeue
            hand_over = lambda: requeue(signum, None)  # noqa: E731
        return Preempted(message if global_rank() == 0 else "", signum, hand_over)
