"""The Optuna sweeper Hydra finds: `hydra/sweeper=optuna` (configs/hydra/sweeper/optuna.yaml).

Hydra imports every module of the `hydra_plugins` namespace on every command
(`seqmodels-train --help` included) to find its plugins. This one stays light:
optuna, and seqmodels.tasks with Lightning, load only when a search starts, from
`_study.py` (Hydra's scan skips modules whose name starts with `_`), which does
the work and documents the settings.
"""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class OptunaSweeper(Sweeper):
    """An Optuna study kept in a database; the settings are `_study.StudySweeper`'s."""

    def __init__(self, **settings: Any) -> None:
        # Imported here, when a search is configured, not when Hydra scans its plugins
        # (start-up time of every command).
        from ._study import StudySweeper

        self.study = StudySweeper(**settings)

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.study.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        return self.study.sweep(arguments)
