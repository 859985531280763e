"""Past one machine: the SLURM launcher's config, a real sweep through submitit's local
launcher, and Optuna searches kept in a database (killed and resumed, shared, pruned)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from hydra import compose, initialize_config_dir
from support import CONFIGS, run_dirs

SCRIPT = Path(sys.executable).parent / "seqmodels-train"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
QUICK = [
    "trainer.max_epochs=2",
    "data.num_train=256",
    "data.num_val=64",
    "data.num_test=64",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
]


def hydra_config(*overrides):
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIGS)):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def test_slurm_tasks_follow_the_trainer_for_multi_node_ddp():
    cfg = hydra_config(
        "hydra/launcher=slurm",
        "trainer=ddp",
        "trainer.num_nodes=2",
        "trainer.devices=4",
        "hydra.launcher.partition=gpu",
    )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.partition == "gpu"
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (2, 4, 4)
    assert cfg.trainer.strategy == "ddp"


@pytest.mark.parametrize("search", ["parity_optuna", "imdb_optuna"])
def test_searches_keep_their_study_in_a_database(search):
    cfg = hydra_config(f"hparams_search={search}")
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_ == "hydra_plugins.seqmodels_optuna.sweeper.OptunaSweeper"
    assert sweeper.study_name and sweeper.storage is None and sweeper.direction == "max"
    assert cfg.callbacks.optuna_pruning.monitor == "val/acc"


def sweep(root, *overrides, n_trials, extra_env=None):
    return subprocess.Popen(
        [
            str(SCRIPT),
            "-m",
            "hparams_search=parity_optuna",
            f"hydra.sweeper.n_trials={n_trials}",
            "hydra.sweeper.heartbeat_interval=1",
            "hydra.sweeper.grace_period=3",
            *QUICK,
            *overrides,
            "logger=none",
            f"paths.root_dir={root}",
        ],
        cwd=root,
        env={**ENV, **(extra_env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def trials(root):
    study = optuna.load_study(
        study_name="parity", storage=f"sqlite:///{root / 'outputs' / 'parity' / 'optuna.db'}"
    )
    return study.trials


@pytest.mark.slow
def test_a_killed_search_resumes_to_the_requested_trial_count(tmp_path):
    first = sweep(tmp_path, n_trials=6)
    db = tmp_path / "outputs" / "parity" / "optuna.db"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if db.exists() and sum(t.state.is_finished() for t in trials(tmp_path)) >= 2:
            break
        time.sleep(0.5)
    first.send_signal(signal.SIGKILL)
    first.wait()
    done = [t for t in trials(tmp_path) if t.state == optuna.trial.TrialState.COMPLETE]
    assert 2 <= len(done) < 6
    again = sweep(tmp_path, n_trials=6)
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0, out[-3000:]
    finished = [
        t
        for t in trials(tmp_path)
        if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    ]
    assert len(finished) == 6
    numbers = [t.number for t in trials(tmp_path)]
    assert len(numbers) == len(set(numbers))
    # The same command once more: nothing to run, the best trial reported.
    third = sweep(tmp_path, n_trials=6)
    out, _ = third.communicate(timeout=300)
    assert third.returncode == 0 and "best trial" in out
    assert len(trials(tmp_path)) == len(numbers)


@pytest.mark.slow
def test_two_workers_share_one_study(tmp_path):
    workers = [sweep(tmp_path, n_trials=5) for _ in range(2)]
    outs = [w.communicate(timeout=600)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers), outs[0][-2000:] + outs[1][-2000:]
    states = [t.state for t in trials(tmp_path)]
    assert (
        states.count(optuna.trial.TrialState.COMPLETE)
        + states.count(optuna.trial.TrialState.PRUNED)
        == 5
    )
    numbers = [t.number for t in trials(tmp_path)]
    assert len(numbers) == len(set(numbers))
    ran = {t.user_attrs["sweeper"] for t in trials(tmp_path) if t.state.is_finished()}
    assert len(ran) == 2  # both workers took trials


@pytest.mark.slow
def test_a_hopeless_trial_is_pruned(tmp_path):
    # A threshold no accuracy can reach: every trial is stopped after its first epoch.
    prune = "hydra.sweeper.pruner={_target_:optuna.pruners.ThresholdPruner,lower:2.0}"
    run = sweep(tmp_path, prune, n_trials=2)
    out, _ = run.communicate(timeout=300)
    assert run.returncode == 0, out[-3000:]
    assert "Error executing job" not in out  # a pruned trial is not reported as a crash
    assert [t.state for t in trials(tmp_path)] == [optuna.trial.TrialState.PRUNED] * 2
    assert [t.intermediate_values for t in trials(tmp_path)] == [
        {0: pytest.approx(t.intermediate_values[0])} for t in trials(tmp_path)
    ]
    assert all(0 <= t.intermediate_values[0] <= 1 for t in trials(tmp_path))  # val/acc reported


@pytest.mark.slow
def test_submitit_local_runs_a_sweep_of_two_jobs(tmp_path):
    result = subprocess.run(
        [
            str(SCRIPT),
            "-m",
            "hydra/launcher=submitit_local",
            "model=rnn,gru",
            *QUICK,
            f"paths.root_dir={tmp_path}",
        ],
        cwd=tmp_path,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = run_dirs(tmp_path)
    assert [r.name[:2] for r in runs] == ["0_", "1_"]  # named by number and overrides
    assert "model=rnn" in runs[0].name and "model=gru" in runs[1].name
    for run in runs:
        assert (run / "checkpoints" / "last.ckpt").is_file()
        assert list(run.glob("events.out.tfevents*"))
    assert list((runs[0].parent / ".submitit").iterdir())  # submitit's job files, in the sweep


def test_the_pruning_callback_reports_each_validation_epoch(tmp_path, monkeypatch):
    from support import compose_train

    from seqmodels.tasks.optuna_pruning import STORAGE_ENV, STUDY_ENV, TRIAL_ENV
    from seqmodels.train import train

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="s", storage=url, direction="maximize")
    trial = study.ask()
    for key, value in ((STORAGE_ENV, url), (STUDY_ENV, "s"), (TRIAL_ENV, str(trial._trial_id))):
        monkeypatch.setenv(key, value)
    train(
        compose_train(
            "+callbacks.optuna_pruning._target_=seqmodels.tasks.optuna_pruning.OptunaPruning",
            "+callbacks.optuna_pruning.monitor=val/acc",
            "trainer.max_epochs=3",
            "data.num_train=256",
            "logger=none",
            "trainer.enable_progress_bar=false",
            "monitor.stop_at=null",
            output_dir=tmp_path / "run",
        )
    )
    reported = optuna.load_study(study_name="s", storage=url).trials[0].intermediate_values
    assert sorted(reported) == [0, 1, 2] and all(0 <= v <= 1 for v in reported.values())
