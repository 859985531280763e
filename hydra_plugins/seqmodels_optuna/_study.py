"""A Hydra sweeper that runs an Optuna study kept in a database (the work behind
`sweeper.OptunaSweeper`, imported only when a search runs).

    seqmodels-train -m hparams_search=parity_optuna
    seqmodels-train -m hparams_search=parity_optuna hydra.sweeper.storage=postgresql://...

- The study lives in `storage`: by default a SQLite file beside the sweep
  folders (`outputs/<task>/optuna.db`), or any SQLAlchemy URL. A search
  killed at any point and started again with the same command continues the
  same study (`study_name`); trials its killed workers left running are
  marked failed (at once for workers of this machine whose process is gone,
  after `grace_period` seconds without a heartbeat for others).
- `n_trials` is the study's total, not a number to add: the command runs
  only the trials still missing, and after a complete search runs nothing
  and reports the best trial.
- Several sweep processes (on one machine or many) can share one storage:
  each asks for the next trial only while the study is short of `n_trials`,
  so together they finish the requested count, each trial number once.
- Jobs go through Hydra's launcher (`hydra/launcher=slurm` and the like),
  `n_jobs` at a time. A trial is pruned when the `optuna_pruning` callback
  (seqmodels.tasks.optuna_pruning) says so from its validation metric; a
  job that fails (a diverged run, say) is a failed trial, not a failed search.

Search spaces use the syntax of Hydra's Optuna sweeper:
`choice(32, 64)`, `interval(1e-4, 1e-2)`, `tag(log, interval(1e-4, 1e-2))`,
`int(interval(1, 4))`, `range(1, 5)`, and plain `a,b,c` (a choice).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Override, RangeSweep
from hydra.core.plugins import Plugins
from hydra.core.utils import JobStatus
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from seqmodels.tasks.optuna_pruning import STORAGE_ENV, STUDY_ENV, TRIAL_ENV

log = logging.getLogger(__name__)
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
TAKEN = (*FINISHED, optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)


class StudySweeper(Sweeper):
    def __init__(
        self,
        study_name: str,
        n_trials: int,
        params: Mapping[str, str] | None = None,
        storage: str | None = None,
        direction: str = "maximize",
        n_jobs: int = 1,
        sampler: Any = None,
        pruner: Any = None,
        heartbeat_interval: int = 60,
        grace_period: int | None = None,
        max_failures: int = 3,
    ) -> None:
        self.study_name, self.n_trials, self.n_jobs = study_name, int(n_trials), int(n_jobs)
        self.params = dict(params or {})
        self.storage_url = storage
        self.direction: Any = {"max": "maximize", "min": "minimize"}.get(direction, direction)
        self.sampler_cfg, self.pruner_cfg = sampler, pruner  # built in load_study
        self.heartbeat_interval, self.grace_period = heartbeat_interval, grace_period
        self.max_failures = max_failures  # trials in a row: then the search itself is wrong

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )
        self.sweep_dir = Path(config.hydra.sweep.dir)

    # -- the study ---------------------------------------------------------------------------
    def url(self) -> str:
        if self.storage_url:
            return self.storage_url
        folder = self.sweep_dir.parent.resolve()
        folder.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{folder / 'optuna.db'}"

    def storage(self) -> optuna.storages.RDBStorage:
        url = self.url()
        sqlite = url.startswith("sqlite")
        for attempt in range(5):
            try:
                return optuna.storages.RDBStorage(
                    url,
                    heartbeat_interval=self.heartbeat_interval,
                    grace_period=self.grace_period,
                    engine_kwargs={"connect_args": {"timeout": 60}} if sqlite else None,
                )
            except Exception as err:  # two workers creating a new database's tables at once
                if attempt == 4:
                    raise
                log.info(f"storage {url} not ready ({type(err).__name__}): trying again")
                time.sleep(1 + attempt)
        raise AssertionError  # unreachable

    def load_study(self, storage: optuna.storages.RDBStorage) -> optuna.Study:
        pruner = instantiate(self.pruner_cfg) if self.pruner_cfg else optuna.pruners.NopPruner()
        study = optuna.create_study(
            study_name=self.study_name,
            storage=storage,
            pruner=pruner,
            direction=self.direction,
            load_if_exists=True,
        )
        if self.sampler_cfg:
            # A resumed search must not draw its first trials again: offset the seed
            # by the trials the study already has (a fresh search keeps the seed).
            extra = {}
            seed = OmegaConf.select(OmegaConf.create(dict(self.sampler_cfg)), "seed")
            if seed is not None:
                extra["seed"] = int(seed) + len(study.trials)
            study.sampler = instantiate(self.sampler_cfg, **extra)
        return study

    def sweep(self, arguments: list[str]) -> None:
        with warnings.catch_warnings():
            # Heartbeats are marked experimental, and optuna expects them with
            # study.optimize only: this sweeper records them itself, around each batch.
            warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
            self.run_study(arguments)

    def run_study(self, arguments: list[str]) -> None:
        assert self.hydra_context is not None and self.launcher is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        searched = parser.parse_overrides([f"{k}={v}" for k, v in self.params.items()])
        given = parser.parse_overrides(arguments)
        fixed = [str(o.input_line) for o in given if not o.is_sweep_override()]
        distributions = {
            o.get_key_element(): distribution(o)
            for o in [*searched, *(o for o in given if o.is_sweep_override())]
        }
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, self.sweep_dir / "multirun.yaml")

        storage = self.storage()
        study = self.load_study(storage)
        fail_dead_trials(study, storage)
        job, failures = len(study.trials), 0
        while failures < self.max_failures:
            taken = len(study.get_trials(deepcopy=False, states=TAKEN))
            batch = min(self.n_jobs, self.n_trials - taken)
            if batch <= 0:
                break
            trials = [t for t in (self.ask(study, distributions) for _ in range(batch)) if t]
            if not trials:
                break
            env = [
                f"+hydra.job.env_set.{STORAGE_ENV}='{self.url()}'",
                f"+hydra.job.env_set.{STUDY_ENV}='{self.study_name}'",
            ]
            overrides = [
                [
                    *fixed,
                    *(f"{k}={v}" for k, v in t.params.items()),
                    *env,
                    f"+hydra.job.env_set.{TRIAL_ENV}={t._trial_id}",
                ]
                for t in trials
            ]
            self.validate_batch_is_legal(overrides)
            returns: Sequence[Any]
            with Heartbeat(storage, [t._trial_id for t in trials], self.heartbeat_interval):
                try:
                    returns = self.launcher.launch(overrides, initial_job_idx=job)
                except (Exception, SystemExit) as err:  # the launcher gave up on the batch
                    returns = [err] * len(trials)
            job += len(trials)
            for trial, ret in zip(trials, returns, strict=True):
                failed = tell(study, trial, ret)
                failures = failures + 1 if failed else 0
        if failures >= self.max_failures:
            log.error(f"stopped the search: {failures} trials in a row failed (see their logs)")
        report(study, self.n_trials, self.sweep_dir)

    def ask(self, study: optuna.Study, distributions: dict[str, Any]) -> optuna.Trial | None:
        """The next trial, or None when other workers have taken the last ones meanwhile."""
        trial = study.ask(distributions)
        trial.set_user_attr("sweeper", f"{socket.gethostname()}:{os.getpid()}")
        before = [
            t for t in study.get_trials(deepcopy=False, states=TAKEN) if t.number < trial.number
        ]
        if len(before) >= self.n_trials:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)  # not run: the study is full
            return None
        return trial


def distribution(override: Override) -> optuna.distributions.BaseDistribution:
    """An Optuna distribution from a Hydra sweep override."""
    value = override.value()
    key = override.get_key_element()
    choices: Any  # plain values: what Optuna stores
    if isinstance(value, ChoiceSweep):
        choices = value.list
        return optuna.distributions.CategoricalDistribution(choices)
    if isinstance(value, RangeSweep):
        assert value.start is not None and value.stop is not None
        if all(isinstance(v, int) for v in (value.start, value.stop, value.step)):
            return optuna.distributions.IntDistribution(
                int(value.start), int(value.stop) - 1, step=int(value.step)
            )
        choices = list(override.sweep_iterator())
        return optuna.distributions.CategoricalDistribution(choices)
    if isinstance(value, IntervalSweep):
        assert value.start is not None and value.end is not None
        log_scale = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return optuna.distributions.IntDistribution(value.start, value.end, log=log_scale)
        return optuna.distributions.FloatDistribution(value.start, value.end, log=log_scale)
    raise ValueError(
        f"hydra.sweeper.params.{key}={override.input_line}: not a search space "
        "(use choice(...), interval(...), tag(log, interval(...)), range(...))"
    )


def tell(study: optuna.Study, trial: optuna.Trial, ret: Any) -> bool:
    """Record a job's outcome: a value, pruned, or failed (the search goes on). True if failed."""
    try:
        value = _value(ret)
    except optuna.TrialPruned as pruned:
        log.info(f"trial {trial.number} {pruned}")
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return False
    except (Exception, SystemExit) as err:
        log.warning(f"trial {trial.number} failed: {type(err).__name__}: {err}")
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return True
    if value is None or value != value:  # no metric, or NaN
        log.warning(f"trial {trial.number} returned {value}: counted as failed")
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return True
    study.tell(trial, float(value))
    return False


def _value(ret: Any) -> Any:
    """The job's return value, or raise what it raised (a launcher may hand back the error).

    JobReturn.return_value would print "Error executing job with overrides" before
    raising, which reads as a crash for every pruned trial; the status tells first.
    """
    if isinstance(ret, BaseException):
        raise ret
    if ret.status == JobStatus.COMPLETED:
        return ret.return_value
    raise ret._return_value  # the job's own exception: JobReturn has no public accessor


def fail_dead_trials(study: optuna.Study, storage: optuna.storages.RDBStorage) -> None:
    """Trials left running by a worker that is gone count as failed, so they are run again."""
    here = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        host, _, pid = str(trial.user_attrs.get("sweeper", "")).rpartition(":")
        if host == here and pid.isdigit() and not _alive(int(pid)):
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
            log.info(f"trial {trial.number} was left running by a killed sweep: marked failed")
    optuna.storages.fail_stale_trials(study)  # others: by heartbeat


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Heartbeat:
    """Records the trials' heartbeats while their jobs run (a killed sweep stops beating)."""

    def __init__(
        self, storage: optuna.storages.RDBStorage, trial_ids: Sequence[int], interval: int
    ) -> None:
        self.storage, self.trial_ids, self.interval = storage, list(trial_ids), interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.beat, daemon=True)

    def beat(self) -> None:
        while True:
            for trial_id in self.trial_ids:
                self.storage.record_heartbeat(trial_id)
            if self.stop.wait(self.interval):
                return

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join()


def report(study: optuna.Study, n_trials: int, sweep_dir: Path) -> None:
    states = [t.state.name.lower() for t in study.trials]
    counts = ", ".join(f"{states.count(s)} {s}" for s in dict.fromkeys(states))
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        log.warning(f"study {study.study_name}: no complete trial ({counts})")
        return
    best = study.best_trial
    results = {
        "name": study.study_name,
        "n_trials": n_trials,
        "trials": counts,
        "best_trial": best.number,
        "best_value": best.value,
        "best_params": best.params,
    }
    OmegaConf.save(OmegaConf.create(results), sweep_dir / "optimization_results.yaml")
    log.info(
        f"study {study.study_name}: {counts}; best trial {best.number}: "
        f"value {best.value:.6g}, {best.params}"
    )
    print(
        f"best trial {best.number} of study {study.study_name} ({counts}): value "
        f"{best.value:.6g}, params {best.params}"
    )
