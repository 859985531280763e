"""Optuna's pruner, fed from the validation metric each epoch, inside a seqmodels run.

Under the seqmodels Optuna sweeper (hydra_plugins/seqmodels_optuna) each job
learns its study and trial through the environment (`SEQMODELS_OPTUNA_STORAGE`,
`SEQMODELS_OPTUNA_STUDY`, `SEQMODELS_OPTUNA_TRIAL`, set by the sweeper with
`hydra.job.env_set`, so they reach jobs on other machines too). After every
validation epoch the callback
reports the monitored metric to the trial and, when Optuna's pruner says the
trial is clearly worse than the others at that epoch, stops it
(`optuna.TrialPruned`, which the sweeper records as a pruned trial). Outside a
sweep it does nothing.
"""

from __future__ import annotations

import os
from typing import Any

import lightning as L

STORAGE_ENV = "SEQMODELS_OPTUNA_STORAGE"  # the storage's URL
STUDY_ENV = "SEQMODELS_OPTUNA_STUDY"  # the study's name
TRIAL_ENV = "SEQMODELS_OPTUNA_TRIAL"  # the trial's id in the storage


class OptunaPruning(L.Callback):
    def __init__(self, monitor: str) -> None:
        self.monitor = monitor
        self.trial: Any = None

    def setup(self, trainer: L.Trainer, pl_module: Any, stage: str) -> None:
        url, name, trial_id = (os.environ.get(k) for k in (STORAGE_ENV, STUDY_ENV, TRIAL_ENV))
        if stage != "fit" or not (url and name and trial_id):
            return
        import optuna  # an Optuna sweep is running: optuna is there
        from hydra.core.hydra_config import HydraConfig
        from hydra.utils import instantiate

        # The storage keeps trials, not the pruner: build the sweep's own (none: never prune).
        settings = HydraConfig.get().sweeper if HydraConfig.initialized() else {}
        pruner = instantiate(settings["pruner"]) if settings.get("pruner") else None
        pruner = pruner or optuna.pruners.NopPruner()
        study = optuna.load_study(study_name=name, storage=url, pruner=pruner)
        self.trial = optuna.trial.Trial(study, int(trial_id))

    def on_validation_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        if self.trial is None or trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return
        epoch = trainer.current_epoch
        self.trial.report(float(value), step=epoch)
        if self.trial.should_prune():
            import optuna

            raise optuna.TrialPruned(
                f"pruned after epoch {epoch}: {self.monitor}={float(value):.4g}"
            )
