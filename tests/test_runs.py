"""Runs that survive: last.ckpt after every epoch, resume in place, divergence stops the run,
one folder per run, one line for every mistake, Ctrl-C (fast tests; the kill-and-resume and
DDP ones are in test_runs_slow.py)."""

from __future__ import annotations

import datetime as dt

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf
from support import run_dirs, write_tiny_imdb

SMALL = (
    "data.num_train=256",
    "data.num_val=64",
    "data.num_test=64",
    "data.batch_size=32",
    "monitor.stop_at=null",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
)


def load(path):
    return torch.load(path, map_location="cpu", weights_only=False)


def test_last_ckpt_is_the_last_epoch_and_best_is_kept_apart(run_cli, tmp_path):
    result = run_cli("train", *SMALL, "trainer.max_epochs=3", "logger=none")
    assert result.code == 0, result.err
    (run,) = run_dirs(tmp_path)
    last = load(run / "checkpoints" / "last.ckpt")
    assert last["epoch"] == 2 and last["global_step"] == 3 * 8  # the last epoch, always
    assert "rng_states" in last and "seqmodels_config" in last
    best = [p for p in (run / "checkpoints").glob("epoch_*.ckpt")]
    assert len(best) == 1 and f"best checkpoint: {best[0]}" in result.out


def test_resume_continues_the_run_in_its_own_folder(run_cli, tmp_path):
    first = run_cli("train", *SMALL, "trainer.max_epochs=2", "trainer.log_every_n_steps=4")
    assert first.code == 0, first.err
    (run,) = run_dirs(tmp_path)
    # Only the new override is given: the run's own (the SMALL ones) come from its folder.
    again = run_cli("train", f"resume={run}", "trainer.max_epochs=4")
    assert again.code == 0, again.err
    assert run_dirs(tmp_path) == [run]  # no second folder
    last = load(run / "checkpoints" / "last.ckpt")
    assert last["epoch"] == 3 and last["global_step"] == 4 * 8
    cfg = OmegaConf.load(run / ".hydra" / "config.yaml")
    assert cfg.data.num_train == 256 and cfg.trainer.max_epochs == 4
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run))
    events.Reload()
    assert [e.step for e in events.Scalars("val/acc")] == [7, 15, 23, 31]  # one run, 4 epochs


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda run: run / "missing", "not the folder of a seqmodels-train run"),
        (
            lambda run: (run / "checkpoints" / "last.ckpt").unlink() or run,
            "no checkpoints/last.ckpt",
        ),
    ],
)
def test_resume_mistakes_are_one_line(run_cli, tmp_path, make, message):
    assert run_cli("train", *SMALL, "trainer.max_epochs=1", "logger=none").code == 0
    (run,) = run_dirs(tmp_path)
    result = run_cli("train", f"resume={make(run)}")
    assert result.code == 1 and message in result.err and "Traceback" not in result.err


def test_two_runs_in_the_same_second_get_two_folders(run_cli, tmp_path, monkeypatch):
    import hydra.core.utils

    class FrozenClock(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 11, 30, 9, 0, 0)

    monkeypatch.setattr(hydra.core.utils, "datetime", FrozenClock)
    for seed in (1, 2):
        assert run_cli("train", "trainer=debug", "logger=none", f"seed={seed}").code == 0
    runs = run_dirs(tmp_path)
    assert len(runs) == 2 and all(r.name.startswith("2026-11-30_09-00-00-") for r in runs)
    seeds = {OmegaConf.load(r / ".hydra" / "config.yaml").seed for r in runs}
    assert seeds == {1, 2}


def write_damaged(tmp_path):
    path = tmp_path / "damaged.ckpt"
    path.write_bytes(b"PK\x03\x04 not all of a checkpoint")
    return path


@pytest.mark.parametrize(
    "overrides,message",
    [
        (("ckpt_path=/nope.ckpt",), "ckpt_path=/nope.ckpt: checkpoint not found"),
        (("trainer.max_epochs=x",), "trainer.max_epochs='x' must be an integer or null"),
        (("data.batch_size=abc",), "data.batch_size='abc' must be an integer"),
        (
            ("trainer.limit_train_batches=abc",),
            "trainer.limit_train_batches='abc' must be a number",
        ),
        (("task.optimizer.lr=abc",), "task.optimizer.lr='abc' must be a number"),
        (("task.optimizer.lr=-1",), "task.optimizer.lr=-1: torch.optim.Adam refuses it"),
        (
            ("+task.poolng=mean",),
            "task.poolng is not an argument of seqmodels.tasks.SequenceClassifier"
            " (did you mean task.pooling?)",
        ),
        (("model.hidden_size=0",), "hidden_size"),
        (("data.alphabet=hex",), "data.alphabet must be one of digits, bits"),
    ],
)
def test_mistakes_are_one_line_and_leave_no_run_folder(run_cli, tmp_path, overrides, message):
    result = run_cli("train", "trainer=debug", "logger=none", *overrides)
    assert result.code == 1
    assert message in result.err and "Traceback" not in result.err
    assert len([line for line in result.err.splitlines() if line.startswith("error:")]) == 1
    assert run_dirs(tmp_path) == []  # nothing half-made left behind
    assert not (tmp_path / "outputs").exists()  # nor the empty folders above it


def test_a_run_folder_that_cannot_be_made_is_one_line_naming_it(run_cli, tmp_path):
    blocker = tmp_path / "a_file"  # a file in the way stops root too (chmod does not)
    blocker.write_text("")
    cases = [
        (("hydra.run.dir=" + str(blocker / "run"),), blocker / "run"),
        (("-m", "hydra.sweep.dir=" + str(blocker / "sweep")), blocker / "sweep"),
    ]
    for overrides, folder in cases:  # -m goes first, as on a command line
        result = run_cli("train", *overrides, "trainer=debug", "logger=none")
        assert result.code == 1
        assert result.err.strip() == (
            f"error: cannot write {folder}: {blocker} is a file, not a folder (no file was "
            "written); give the runs a folder you can write: paths.root_dir=... (or "
            f"hydra.{'sweep' if '-m' in overrides else 'run'}.dir=...)"
        )
    # the root of every run folder (paths.root_dir): the folder Hydra would make is named
    result = run_cli("train", "trainer=debug", "logger=none", outputs=blocker / "runs")
    assert result.code == 1 and "Traceback" not in result.err
    (line,) = result.err.strip().splitlines()
    assert line.startswith(f"error: cannot write {blocker / 'runs' / 'outputs' / 'parity'}/")
    assert f"{blocker} is a file, not a folder" in line


def test_damaged_or_foreign_checkpoints_are_one_line(run_cli, tmp_path):
    result = run_cli("train", "trainer=debug", f"ckpt_path={write_damaged(tmp_path)}")
    assert result.code == 1 and "cannot read the checkpoint" in result.err
    assert "Traceback" not in result.err
    other = run_cli(
        "train",
        "trainer.max_epochs=1",
        "logger=none",
        *SMALL[:4],
        "model=gru",
        outputs=tmp_path / "gru",
    )
    assert other.code == 0, other.err
    gru = next((tmp_path / "gru").rglob("last.ckpt"))
    result = run_cli("train", "trainer=debug", f"ckpt_path={gru}")  # this run is an LSTM
    assert result.code == 1 and "holds a model of seqmodels.nn.GRU" in result.err
    assert "builds seqmodels.nn.LSTM" in result.err


def test_eval_without_a_checkpoint_is_one_line(run_cli):
    result = run_cli("eval")
    assert result.code == 1 and "no checkpoint given: pass ckpt_path=" in result.err
    assert "Traceback" not in result.err


def test_ctrl_c_while_tokenising_is_one_line_and_exit_130(run_cli, tmp_path, monkeypatch):
    from seqmodels.data import aclimdb

    write_tiny_imdb(tmp_path / "imdb" / "aclImdb")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(aclimdb, "build_cache", interrupted)
    result = run_cli("train", "task=imdb", f"data.root={tmp_path / 'imdb'}", "trainer=debug")
    assert result.code == 130 and result.err.strip() == "interrupted"
    assert run_dirs(tmp_path) == [] and not (tmp_path / "imdb" / "cache").exists()


def test_ctrl_c_during_fit_keeps_the_finished_epochs(run_cli, tmp_path, monkeypatch):
    from seqmodels import checkpoint

    class CtrlCAtStep(checkpoint.RunState):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == 12:  # in the second epoch (8 steps each)
                raise KeyboardInterrupt

    monkeypatch.setattr("seqmodels.train.RunState", CtrlCAtStep)
    result = run_cli("train", *SMALL, "trainer.max_epochs=3", "logger=none")
    assert result.code == 130 and result.err.strip().endswith("interrupted")
    (run,) = run_dirs(tmp_path)
    assert load(run / "checkpoints" / "last.ckpt")["epoch"] == 0  # epoch 0 is kept


# -- divergence -----------------------------------------------------------------------


def test_infinite_learning_rate_stops_at_once_with_one_line(run_cli, tmp_path):
    result = run_cli("train", *SMALL, "task.optimizer.lr=inf", "trainer.max_epochs=4")
    assert result.code == 1 and "Traceback" not in result.err
    (line,) = [x for x in result.err.splitlines() if x.startswith("error:")]
    assert "training diverged at step 1 (epoch 0)" in line
    assert "no checkpoint was written before it" in line
    assert "try a lower task.optimizer.lr (now inf) or trainer.gradient_clip_val=1.0" in line
    assert run_dirs(tmp_path) == []  # nothing worth keeping


class NaNAtStep(L.Callback):
    """Makes the model's output NaN from training step `step` on (a test-only fault)."""

    def __init__(self, step):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            pl_module.head.register_forward_hook(lambda module, args, out: out * float("nan"))


def test_a_nan_in_the_middle_stops_there_and_keeps_finite_checkpoints(
    run_cli, tmp_path, monkeypatch
):
    from seqmodels import checkpoint

    class Faulty(checkpoint.RunState, NaNAtStep):
        def __init__(self, cfg):
            checkpoint.RunState.__init__(self, cfg)
            NaNAtStep.__init__(self, 21)  # in the third epoch

    monkeypatch.setattr("seqmodels.train.RunState", Faulty)
    result = run_cli("train", *SMALL, "trainer.max_epochs=5", "logger=none")
    assert result.code == 1 and "Traceback" not in result.err
    assert "training diverged at step 21 (epoch 2): the gradient norm is nan" in result.err
    (run,) = run_dirs(tmp_path)
    assert f"the last checkpoint is {run / 'checkpoints' / 'last.ckpt'}" in result.err
    for path in (run / "checkpoints").glob("*.ckpt"):
        saved = load(path)
        assert saved["epoch"] <= 1
        assert all(torch.isfinite(t).all() for t in saved["state_dict"].values())
