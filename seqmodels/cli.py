"""Command-line entry points: thin Hydra wrappers around the work they name.

Each entry point composes its config from the configs shipped with the package
(`configs/` in a checkout, `seqmodels/configs/` once installed), so the
commands work from any folder. A user's mistake (`UserError`, a bad config
value rejected while building an object, a GPU asked for and not there) is
printed as one line, `error: ...`, and the command exits with status 1; set
HYDRA_FULL_ERROR=1 to see the traceback instead.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.errors import InstantiationException
from lightning.fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig

from seqmodels.errors import UserError


def config_dir() -> str:
    packaged = Path(__file__).resolve().parent / "configs"  # installed wheel
    if packaged.is_dir():
        return str(packaged)
    return str(Path(__file__).resolve().parent.parent / "configs")  # source checkout


def user_error_message(err: BaseException) -> str | None:
    """The one line to show for a user's mistake, or None for a bug (keep the traceback)."""
    in_instantiate = False
    while err is not None:
        if isinstance(err, (UserError, MisconfigurationException)):
            return str(err)
        if isinstance(err, InstantiationException):
            in_instantiate = True
        elif isinstance(err, ValueError) and in_instantiate:
            return str(err)  # an object's constructor rejected a config value
        elif not in_instantiate:
            return None
        err = err.__cause__ or err.__context__  # type: ignore[assignment]
    return None


def entry_point(config_name: str) -> Callable[[Callable[[DictConfig], Any]], Callable[[], Any]]:
    def wrap(work: Callable[[DictConfig], Any]) -> Callable[[], Any]:
        @functools.wraps(work)
        def task(cfg: DictConfig) -> Any:
            try:
                return work(cfg)
            except Exception as err:
                message = user_error_message(err)
                if message is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
                    raise
                print(f"error: {message}", file=sys.stderr)
                sys.exit(1)

        return hydra.main(version_base="1.3", config_path=config_dir(), config_name=config_name)(
            task
        )

    return wrap


@entry_point("train")
def train(cfg: DictConfig) -> float | None:
    """seqmodels-train: fit, then test the best checkpoint. Returns the swept metric."""
    from seqmodels.train import train as run

    metrics = run(cfg)
    metric = cfg.get("optimized_metric")
    return metrics.get(metric) if metric else None


@entry_point("eval")
def evaluate(cfg: DictConfig) -> None:
    """seqmodels-eval ckpt_path=...: the test metrics of a checkpoint."""
    from seqmodels.evaluate import evaluate as run

    run(cfg)


@entry_point("predict")
def predict(cfg: DictConfig) -> None:
    """seqmodels-predict ckpt_path=... text="..." | file=reviews.txt | file=- | image=...: labels."""
    from seqmodels.predict import predict as run

    run(cfg)


@entry_point("sample")
def sample(cfg: DictConfig) -> None:
    """seqmodels-sample ckpt_path=... prime="ROMEO:" length=1000 temperature=0.8: stream text."""
    from seqmodels.sample import sample_checkpoint

    sample_checkpoint(
        cfg.ckpt_path, prime=cfg.prime, length=cfg.length, temperature=cfg.temperature,
        top_k=cfg.top_k, seed=cfg.seed,
    )  # fmt: skip
