"""seqmodels-train / seqmodels-eval end to end on the offline parity task."""

from __future__ import annotations

import pytest
import torch
from support import run_dirs

from seqmodels.checkpoint import CONFIG_KEY, load_run
from seqmodels.cli import MAX_NAME, folder_name

FAST = ("trainer=debug", "logger=none")


@pytest.mark.parametrize(
    "model,engine",
    [(m, e) for m in ("rnn", "lstm", "gru") for e in ("loop", "fused", "native", "auto")],
)
def test_fast_dev_run_every_model_and_engine(run_cli, model, engine):
    result = run_cli(
        "train",
        *FAST,
        f"model={model}",
        f"model.engine={engine}",
        "model.bidirectional=true",
        "data.min_len=2",
        "data.max_len=7",
    )
    assert result.code == 0, result.err
    assert "test/acc=" in result.out


def test_run_folder_holds_config_checkpoints_and_events(run_cli, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = run_cli(
        "train",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=10",
        "trainer.limit_val_batches=2",
        "trainer.limit_test_batches=2",
        "trainer.log_every_n_steps=1",
        "trainer.enable_progress_bar=false",
    )
    assert result.code == 0, result.err
    (run,) = run_dirs(tmp_path)
    assert (run / ".hydra" / "config.yaml").is_file()
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert "best checkpoint:" in result.out and "tensorboard --logdir" in result.out

    events = EventAccumulator(str(run))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    for tag in (
        "train/loss_step",
        "train/loss",
        "train/acc",
        "val/loss",
        "val/acc",
        "test/acc",
        "train/grad_norm",
        "train/lr",
        "val/best_acc",
        "grad_flow/first_over_last",
    ):
        assert tag in scalars, f"{tag} missing from {sorted(scalars)}"
    assert "epoch" not in scalars and not any(t.startswith("hparams/") for t in scalars)
    steps = [e.step for e in events.Scalars("val/acc")]
    assert steps == [9, 19] == [e.step for e in events.Scalars("train/loss")]  # once per epoch
    assert [e.step for e in events.Scalars("grad_flow/first_over_last")] == steps
    # The HParams tab: the experiment (columns), and one session with the run's values.
    plugins = events.PluginTagToContent("hparams")
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(plugins)


def test_multirun_trains_each_job_in_its_own_folder(run_cli, tmp_path):
    result = run_cli("train", "-m", *FAST, "model=rnn,gru")
    assert result.code == 0, result.err
    jobs = run_dirs(tmp_path)
    assert len(jobs) == 2
    assert {(j / ".hydra" / "overrides.yaml").read_text().count("model=") for j in jobs} == {1}
    assert "model=rnn" in (jobs[0] / ".hydra" / "overrides.yaml").read_text()
    assert "model=gru" in (jobs[1] / ".hydra" / "overrides.yaml").read_text()


def test_a_sweep_job_with_long_overrides_gets_a_folder_name_that_fits(run_cli, tmp_path):
    """A job's folder is named by its overrides; past 255 bytes the filesystem refuses the
    name, so a long one keeps its start, a hash and its end."""
    long = [f"+tags.t{i}=a_rather_long_value_{i}" for i in range(12)]  # ~350 characters
    result = run_cli("train", "-m", *FAST, *long, "seed=1,2")
    assert result.code == 0, result.err
    jobs = run_dirs(tmp_path)
    assert len(jobs) == 2 and len({j.name for j in jobs}) == 2
    for job in jobs:
        number, _, name = job.name.partition("_")
        assert number.isdigit() and len(name.encode()) <= MAX_NAME, job.name
        assert name.count("~") == 2, job.name
        assert "tags.t0=a_rather_long_value_0" in job.name  # the start still says what differs


def test_folder_name_is_unchanged_when_short_and_distinct_when_cut():
    assert folder_name("model=gru,seed=1") == "model=gru,seed=1"
    a, b = ("x" * 150 + f",seed={s}," + "y" * 150 for s in (1, 2))
    assert folder_name(a) != folder_name(b)
    assert len(folder_name(a).encode()) <= MAX_NAME
    assert len(folder_name("é" * 300).encode()) <= MAX_NAME  # cut on characters, not bytes


def test_default_run_learns_parity_to_100_percent(run_cli):
    """The bare default (the seed's 5 digits in 1..10, LSTM), seeded, reaches 100% test."""
    result = run_cli("train", "trainer.enable_progress_bar=false", "logger=none")
    assert result.code == 0, result.err
    assert "test/acc=1.0000" in result.out, result.out


def test_eval_reproduces_the_checkpoint_test_metric(run_cli, tmp_path):
    result = run_cli(
        "train",
        "logger=none",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=30",
        "trainer.enable_progress_bar=false",
        "callbacks.model_checkpoint.save_last=false",
    )
    assert result.code == 0, result.err
    trained = float(result.out.split("test/acc=")[1].split()[0])
    ckpt = next(tmp_path.glob("outputs/**/checkpoints/epoch_*.ckpt"))
    assert CONFIG_KEY in torch.load(ckpt, map_location="cpu", weights_only=False)

    evaluated = run_cli("eval", f"ckpt_path={ckpt}", "trainer.enable_progress_bar=false")
    assert evaluated.code == 0, evaluated.err
    assert float(evaluated.out.split("test/acc=")[1].split()[0]) == pytest.approx(trained)

    # load_run gives the same module back, without any config files or data.
    cfg, module, datamodule = load_run(ckpt)
    assert cfg.data._target_.endswith("ParityDataModule") and not module.training


@pytest.mark.parametrize(
    "overrides,message",
    [
        (("task=nope",), "Could not find 'task/nope'"),
        (("model=transformer",), "Could not find 'model/transformer'"),
        (("model.hidden_size=0",), "hidden_size"),
        (("data.alphabet=hex",), "data.alphabet must be one of digits, bits"),
        (("task.pooling=median",), "task.pooling must be one of"),
    ],
)
def test_bad_input_is_one_clear_line(run_cli, overrides, message):
    result = run_cli("train", *FAST, *overrides)
    assert result.code == 1
    assert message in result.err
    assert "Traceback" not in result.err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message for a missing GPU")
def test_gpu_trainer_without_cuda_is_one_clear_line(run_cli):
    result = run_cli("train", "trainer=gpu")
    assert result.code == 1
    error_lines = [line for line in result.err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "needs a CUDA GPU" in error_lines[0]
    assert "use trainer=cpu" in error_lines[0]


def test_eval_of_a_missing_checkpoint_is_one_clear_line(run_cli, tmp_path):
    result = run_cli("eval", f"ckpt_path={tmp_path / 'nope.ckpt'}")
    assert result.code == 1
    assert "checkpoint not found" in result.err and "Traceback" not in result.err


USER_CELL_MODULE = """
import torch
from seqmodels.nn import Cell


class MinimalRNNCell(Cell):
    gate_names = ("u", "z")

    def step(self, gates, h):
        u, z = gates.chunk(2, -1)
        u = torch.sigmoid(u)
        return u * h + (1 - u) * torch.tanh(z)


class NotACell(torch.nn.Module):
    def __init__(self, input_size, hidden_size, bias=True):
        super().__init__()
"""


def test_a_users_cell_trains_from_the_command_line(run_cli, tmp_path, monkeypatch):
    """model=custom model.cell._target_=<module>.<class>: a cell from the user's own module
    trains, checkpoints and evaluates; the checkpoint rebuilds it."""
    (tmp_path / "my_cells.py").write_text(USER_CELL_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    result = run_cli(
        "train",
        "logger=none",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "model=custom",
        "model.cell._target_=my_cells.MinimalRNNCell",
        "model.bidirectional=true",
    )
    assert result.code == 0, result.err
    assert "test/acc=" in result.out
    (ckpt,) = tmp_path.rglob("last.ckpt")
    _, module, _ = load_run(ckpt)
    assert type(module.encoder.cells[0]).__name__ == "MinimalRNNCell"


@pytest.mark.parametrize(
    "target,message",
    [
        ("my_cells.Nope", r"model.cell._target_=my_cells.Nope: cannot import it"),
        ("no_such_package.Cell", r"cannot import it \(No module named 'no_such_package'\)"),
        ("my_cells.NotACell", r"cell=NotACell built a NotACell, not a seqmodels.nn.Cell"),
    ],
)
def test_a_bad_cell_is_one_line(run_cli, tmp_path, monkeypatch, target, message):
    import re

    (tmp_path / "my_cells.py").write_text(USER_CELL_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    result = run_cli("train", *FAST, "model=custom", f"model.cell._target_={target}")
    assert result.code == 1
    assert re.search(message, result.err), result.err
    assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err
