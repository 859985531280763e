"""Preemption (preemption.py) in-process: a scheduler's signal ends the run after the step
in progress with last.ckpt at that step, one line and 128 + the signal; before training it
ends at once; a scheduler's restart of the job continues from the checkpoint; submitit's
requeue handler takes over inside submitit jobs. The kill-and-compare runs are slow tests
(test_runs_slow.py)."""

from __future__ import annotations

import os
import signal

import pytest
import torch
from support import run_dirs, signal_at

SMALL = (
    "data.num_train=256",
    "data.num_val=64",
    "data.num_test=64",
    "data.batch_size=32",
    "monitor.stop_at=null",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "logger=none",
)


def load(path):
    return torch.load(path, map_location="cpu", weights_only=False)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_a_signal_mid_epoch_saves_that_step_and_exits_128_plus_signal(
    run_cli, tmp_path, monkeypatch, signum
):
    signal_at(monkeypatch, 12, signum)  # in the second epoch (8 steps each)
    result = run_cli("train", *SMALL, "trainer.max_epochs=3")
    assert result.code == 128 + signum
    (run,) = run_dirs(tmp_path)
    last = run / "checkpoints" / "last.ckpt"
    name = signal.Signals(signum).name
    assert result.err.strip().splitlines()[-1] == (
        f"preempted by {name} at step 13 (epoch 1, batch 5 of 8): saved {last}; "
        f"continue with: seqmodels-train resume={run}"
    )
    saved = load(last)
    assert saved["global_step"] == 13 and saved["epoch"] == 1
    (loader_state,) = saved["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert loader_state["_sampler_iter_state"]["sampler_state"] == {"epoch": 1, "served": 5 * 32}
    # the handlers are back as they were before the run
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    resumed = run_cli("train", f"resume={run}")
    assert resumed.code == 0, resumed.err
    assert load(last)["global_step"] == 24


def test_ctrl_c_mid_epoch_saves_that_step_exits_130_and_resumes_exactly(
    run_cli, tmp_path, monkeypatch
):
    signal_at(monkeypatch, 12, signal.SIGINT)  # Ctrl-C in the second epoch (8 steps each)
    result = run_cli("train", *SMALL, "trainer.max_epochs=3")
    assert result.code == 130
    (run,) = run_dirs(tmp_path)
    last = run / "checkpoints" / "last.ckpt"
    assert result.err.strip().splitlines()[-1] == (
        f"interrupted (Ctrl-C) at step 13 (epoch 1, batch 5 of 8): saved {last}; "
        f"continue with: seqmodels-train resume={run}"
    )
    saved = load(last)
    assert saved["global_step"] == 13 and saved["epoch"] == 1
    (loader_state,) = saved["loops"]["fit_loop"]["state_dict"]["combined_loader"]
    assert loader_state["_sampler_iter_state"]["sampler_state"] == {"epoch": 1, "served": 5 * 32}
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    resumed = run_cli("train", f"resume={run}")
    assert resumed.code == 0, resumed.err
    assert load(last)["global_step"] == 24

    # the same three epochs without a stop end with the same weights
    straight_root = tmp_path / "straight"
    straight = run_cli("train", *SMALL, "trainer.max_epochs=3", outputs=straight_root)
    assert straight.code == 0, straight.err
    (other,) = run_dirs(straight_root)
    a, b = load(last)["state_dict"], load(other / "checkpoints" / "last.ckpt")["state_dict"]
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_a_second_ctrl_c_stops_at_once(run_cli, tmp_path, monkeypatch):
    from seqmodels import checkpoint

    class TwoCtrlC(checkpoint.RunState):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            super().on_train_batch_start(trainer, pl_module, batch, batch_idx)
            if trainer.global_step == 3:
                os.kill(os.getpid(), signal.SIGINT)  # noted: the step goes on
                os.kill(os.getpid(), signal.SIGINT)  # the second one stops it here

    monkeypatch.setattr("seqmodels.train.RunState", TwoCtrlC)
    result = run_cli("train", *SMALL, "trainer.max_epochs=1")
    assert result.code == 130
    assert result.err.strip().splitlines()[-1] == "interrupted"
    assert not list(tmp_path.rglob("*.ckpt"))  # nothing saved before the first epoch's end


def test_a_signal_before_training_stops_at_once(run_cli, tmp_path, monkeypatch):
    from seqmodels.data import parity

    setup = parity.ParityDataModule.setup

    def setup_then_signal(self, stage=None):
        setup(self, stage)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(parity.ParityDataModule, "setup", setup_then_signal)
    result = run_cli("train", *SMALL, "trainer.max_epochs=3")
    assert result.code == 143
    assert result.err.strip() == "preempted by SIGTERM before training: nothing to save yet"
    assert run_dirs(tmp_path) == []  # nothing worth keeping


def test_a_signal_during_the_epochs_validation_stops_before_the_next_step(
    run_cli, tmp_path, monkeypatch
):
    signal_at(monkeypatch, 8, hook="on_validation_start")  # the end of epoch 0
    result = run_cli("train", *SMALL, "trainer.max_epochs=3")
    assert result.code == 143
    (run,) = run_dirs(tmp_path)
    assert "preempted by SIGTERM at step 8 (epoch 1, batch 0 of 8)" in result.err
    assert load(run / "checkpoints" / "last.ckpt")["global_step"] == 8  # the epoch's own


def test_a_restarted_scheduler_job_continues_from_its_checkpoint(run_cli, tmp_path, monkeypatch):
    signal_at(monkeypatch, 12)
    assert run_cli("train", *SMALL, "trainer.max_epochs=3").code == 143
    (run,) = run_dirs(tmp_path)
    monkeypatch.setattr(
        "seqmodels.train.RunState", __import__("seqmodels.checkpoint").checkpoint.RunState
    )
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")  # what a requeued submitit job has
    again = run_cli("train", *SMALL, "trainer.max_epochs=3", f"hydra.run.dir={run}")
    assert again.code == 0, again.err
    assert f"submitit restarted this job: continuing {run} from checkpoints/last.ckpt" in again.out
    assert run_dirs(tmp_path) == [run]
    assert load(run / "checkpoints" / "last.ckpt")["global_step"] == 24


def test_inside_submitit_its_requeue_handler_takes_over(run_cli, tmp_path, monkeypatch):
    """submitit's handler on its signal (USR2) is called after last.ckpt is written."""
    calls = []

    class SignalHandler:  # the shape of submitit.core.job_environment.SignalHandler
        def checkpoint_and_try_requeue(self, signum, frame=None):
            calls.append((signum, (run_dirs(tmp_path)[0] / "checkpoints" / "last.ckpt").exists()))
            raise SystemExit(-1)  # as submitit's _exit()

    SignalHandler.__module__ = "submitit.core.job_environment"
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")
    previous = signal.signal(signal.SIGUSR2, SignalHandler().checkpoint_and_try_requeue)
    try:
        signal_at(monkeypatch, 12, signal.SIGUSR2)
        result = run_cli("train", *SMALL, "trainer.max_epochs=3")
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert calls == [(int(signal.SIGUSR2), True)]  # after last.ckpt was written
    assert result.code == -1  # submitit's exit, not ours
    assert "preempted by SIGUSR2 at step 13" in result.err
    assert "submitit requeues the job, which continues from it" in result.err
