"""task=forecast through the commands: a run on a small synthetic series (its TensorBoard, its
report), seqmodels-predict csv= and seqmodels-eval on its checkpoint; on real vic_elec (slow),
predict from the last week of the file and one epoch of vic_elec_temp against seasonal naive."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import pandas as pd
import pytest
import torch
from support import (
    SERIES_SPLITS,
    compose_train,
    real_data,
    run_dirs,
    small_data_overrides,
    write_synthetic_series,
)
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from seqmodels.train import train

QUICK = (
    "trainer.max_epochs=2",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "model.hidden_size=8",
    "task.head_hidden=16",
    "data.stride=8",
    "data.batch_size=16",
    "data.eval_batch_size=8",
)


def train_run(root: Path, *overrides: str) -> tuple[Path, str]:
    """seqmodels-train's work in this process, for a module-scoped fixture: (run folder, stdout)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            train(compose_train(*overrides, output_dir=root))
    finally:
        torch.set_num_threads(threads)
    return root, out.getvalue()


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    return write_synthetic_series(tmp_path_factory.mktemp("series") / "series.csv")


@pytest.fixture(scope="module")
def trained(series, tmp_path_factory):
    """One short run of task=forecast (module-scoped: several tests read it)."""
    return train_run(
        tmp_path_factory.mktemp("forecast_run"),
        "task=forecast",
        "model=gru",
        f"data.path={series}",
        *SERIES_SPLITS,
        "data.known_covariates=[Temperature]",
        *QUICK,
    )


def test_a_run_reports_the_model_beside_both_baselines(trained):
    run, out = trained
    line = next(s for s in out.splitlines() if s.startswith("test metrics:"))
    for name in (
        "test/mae",
        "test/rmse",
        "test/mape",
        "test/rel_mae",
        "test/snaive_mae",
        "test/snaive_mape",
        "test/naive_mae",
        "test/naive_mape",
    ):
        assert f"{name}=" in line
    assert (run / "checkpoints" / "last.ckpt").is_file()


def test_tensorboard_draws_forecasts_and_mae_per_step_at_the_validation_step(trained):
    run, _ = trained
    events = EventAccumulator(str(run), size_guidance={"images": 0})
    events.Reload()
    val_steps = [e.step for e in events.Scalars("val/mae")]
    assert len(val_steps) == 2
    for tag in ("val/forecast_weeks", "val/mae_by_step", "grad_flow/steps"):
        assert [e.step for e in events.Images(tag)] == val_steps, tag
    weeks = events.Images("val/forecast_weeks")[-1]
    assert weeks.height == 200  # one week: the synthetic validation split holds 8 days
    baseline = {e.value for e in events.Scalars("val/snaive_mae")}
    assert len(baseline) == 1  # the same origins every epoch
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "val/loss", "val/rel_mae", "val/best_mae", "test/mae"} <= scalars


def test_predict_prints_the_next_horizon_as_csv(trained, series, tmp_path, run_cli, monkeypatch):
    from seqmodels.data.forecast import ForecastDataModule

    def no_data_folder(self, stage=None):
        raise AssertionError("predict read the training data")

    monkeypatch.setattr(ForecastDataModule, "setup", no_data_folder)  # the checkpoint suffices
    run, _ = trained
    frame = pd.read_csv(series, dtype=str, keep_default_na=False)
    recent = frame.iloc[-336 - 48 :].copy()  # the last week, then a day whose demand is unknown
    recent.loc[recent.index[-48:], "Demand"] = ""
    recent.to_csv(tmp_path / "recent.csv", index=False)
    ckpt = run / "checkpoints" / "last.ckpt"
    result = run_cli("predict", f"ckpt_path={ckpt}", f"csv={tmp_path / 'recent.csv'}")
    assert result.code == 0, result.err
    lines = result.out.strip().splitlines()
    assert lines[0] == "timestamp,forecast" and len(lines) == 1 + 48
    times = [row.split(",")[0] for row in lines[1:]]
    assert times == frame["Time"].iloc[-48:].tolist()
    values = [float(row.split(",")[1]) for row in lines[1:]]
    actual = frame["Demand"].iloc[-48:].astype(float)
    assert abs(sum(values) / 48 - actual.mean()) < 0.5 * actual.mean()  # demand-sized numbers


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (['text="more demand"'], "this model forecasts a series, not text: pass csv=recent.csv"),
        (["csv=/no/such/recent.csv"], "/no/such/recent.csv: no such file"),
    ],
)
def test_predict_mistakes_are_one_line(trained, run_cli, request_, message):
    run, _ = trained
    result = run_cli("predict", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", *request_)
    assert result.code == 1 and message in result.err and "Traceback" not in result.err


def test_eval_tests_the_checkpoint_again(trained, run_cli):
    run, out = trained
    ckpt = next((run / "checkpoints").glob("epoch_*.ckpt"))
    again = run_cli("eval", f"ckpt_path={ckpt}")
    assert again.code == 0, again.err
    first = next(s for s in out.splitlines() if s.startswith("test metrics:"))
    assert next(s for s in again.out.splitlines() if s.startswith("test metrics:")) == first


def test_a_classifier_refuses_csv_in_one_line(run_cli, small_data, tmp_path):
    result = run_cli(
        "train",
        "task=mnist",
        *small_data_overrides("mnist", small_data),
        "trainer.max_epochs=1",
        "logger=none",
        "trainer.enable_progress_bar=false",
    )
    assert result.code == 0, result.err
    (run,) = run_dirs(tmp_path)
    result = run_cli("predict", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", "csv=x.csv")
    assert result.code == 1 and "this model reads 28x28 images, not csv: pass image=" in result.err


@pytest.mark.slow
def test_ddp_counts_every_origin_once(series, tmp_path):
    """Two processes: 7 test origins shard 4/3; the metrics equal one process's."""
    import subprocess
    import sys

    from omegaconf import OmegaConf

    from seqmodels.evaluate import evaluate

    command = [
        str(Path(sys.executable).parent / "seqmodels-train"),
        "task=forecast",
        "model=gru",
        f"data.path={series}",
        *SERIES_SPLITS,
        *QUICK,
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "data.batch_size=8",
        f"paths.root_dir={tmp_path}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("test metrics:") == 1
    (run,) = run_dirs(tmp_path)
    events = EventAccumulator(str(run))
    events.Reload()
    best = next((run / "checkpoints").glob("epoch_*.ckpt"))
    single = evaluate(
        OmegaConf.create(
            {
                "ckpt_path": str(best),
                "trainer": {
                    "_target_": "lightning.pytorch.Trainer",
                    "accelerator": "cpu",
                    "devices": 1,
                    "logger": False,
                    "enable_progress_bar": False,
                },
            }
        )
    )
    for name in ("test/mae", "test/rmse", "test/mape", "test/snaive_mae", "test/rel_mae"):
        assert single[name] == pytest.approx(events.Scalars(name)[-1].value, rel=1e-5), name


# -- real data -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vic_elec_run(tmp_path_factory):
    """One epoch of experiment=vic_elec_temp on the real series (validation only: the test
    split is read by the recipes' final runs alone)."""
    path = real_data("vic_elec", "vic_elec.csv")
    run, _ = train_run(
        tmp_path_factory.mktemp("vic_elec"),
        "experiment=vic_elec_temp",
        f"data.path={path}",
        "trainer.max_epochs=1",
        "test=false",
        "trainer.enable_progress_bar=false",
    )
    return run, path


@pytest.mark.slow
def test_one_epoch_of_vic_elec_temp_beats_seasonal_naive_on_validation(vic_elec_run):
    run, _ = vic_elec_run
    events = EventAccumulator(str(run))
    events.Reload()
    mae, snaive = (events.Scalars(t)[-1].value for t in ("val/mae", "val/snaive_mae"))
    assert snaive == pytest.approx(435.5, abs=0.1)  # the research's validation baseline
    assert mae < snaive


@pytest.mark.slow
def test_predict_on_a_vic_elec_checkpoint_returns_the_horizon(vic_elec_run, tmp_path, run_cli):
    run, path = vic_elec_run
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    recent = frame.iloc[-336 - 48 :].copy()
    recent.loc[recent.index[-48:], "Demand"] = ""  # 2014-12-31: forecast it
    recent.to_csv(tmp_path / "recent.csv", index=False)
    result = run_cli(
        "predict",
        f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
        f"csv={tmp_path / 'recent.csv'}",
    )
    assert result.code == 0, result.err
    rows = result.out.strip().splitlines()[1:]
    assert len(rows) == 48 and rows[0].startswith("2014-12-30T13:00:00Z,")
    forecast = [float(r.split(",")[1]) for r in rows]
    actual = frame["Demand"].iloc[-48:].astype(float).tolist()
    mape = 100 * sum(abs(f - a) / a for f, a in zip(forecast, actual, strict=True)) / 48
    assert mape < 15
