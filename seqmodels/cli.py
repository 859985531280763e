"""Command-line entry points: thin Hydra wrappers around the work they name.

Each entry point composes its config from the configs shipped with the package
(`configs/` in a checkout, `seqmodels/configs/` once installed), so the
commands work from any folder.

A user's mistake (a `UserError`, a bad value rejected while building an object,
a GPU asked for and not there) is printed as one line, `error: ...`, and the
command exits with status 1; Ctrl-C prints one line and exits with 130. A run
that fails before its first checkpoint leaves no run folder behind (a resumed
run's folder is never removed). HYDRA_FULL_ERROR=1 shows the traceback instead.

`seqmodels-train resume=<run folder> [overrides]` continues a run in place:
its own overrides (from `<run>/.hydra/overrides.yaml`), then the new ones, in
the same folder, from its `checkpoints/last.ckpt` (see seqmodels.train).

A run stopped by a scheduler's signal prints one line and exits with 128 + the
signal's number (seqmodels.preemption); inside a submitit job, submitit then
requeues it. A folder another live process trains in (its run.lock) is refused
in one line before Hydra writes anything into it (seqmodels.run_lock).

Every command resolves a `_target_` (a cell, a layer, an optimizer, a callback,
and the cell a checkpoint's hyperparameters name) in the folder it is started
from, as `python -m` does: `seqmodels-train model=custom
model.cell._target_=mycell.MyCell` trains the cell of `./mycell.py` with
nothing installed.
"""

from __future__ import annotations

import atexit
import functools
import gc
import hashlib
import os
import secrets
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, ListConfig, OmegaConf

# The commands' own modules (seqmodels.train, .predict, ...: torch, Lightning, torchmetrics,
# onnx) are imported inside the command that runs them, not here: `--help`, a mistyped
# override and the run-folder checks answer without loading them (start-up time).
from seqmodels.errors import CannotWrite, Preempted, UserError
from seqmodels.run_lock import in_use_message, live_holder

# A short random tag beside the time in every run folder's name: two runs started
# in the same second still get two folders. Cached: one value per composed config.
OmegaConf.register_new_resolver("run_id", lambda: secrets.token_hex(3), use_cache=True)

# A folder name holds at most 255 bytes on the usual filesystems. A sweep job's folder is
# named by its overrides, which can be longer: keep their start, their end and a hash of the
# whole, so the name still says what differs and two jobs never share a folder.
MAX_NAME = 200


def folder_name(name: str) -> str:
    if len(name.encode()) <= MAX_NAME:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:8]
    keep = (MAX_NAME - len(digest) - 2) // 2
    head = name.encode()[:keep].decode(errors="ignore")
    tail = name.encode()[-keep:].decode(errors="ignore")
    return f"{head}~{digest}~{tail}"


OmegaConf.register_new_resolver("folder_name", folder_name)


def config_dir() -> str:
    packaged = Path(__file__).resolve().parent / "configs"  # installed wheel
    if packaged.is_dir():
        return str(packaged)
    return str(Path(__file__).resolve().parent.parent / "configs")  # source checkout


def user_error_message(err: BaseException) -> str | None:
    """The one line to show for a user's mistake, or None for a bug (keep the traceback)."""
    # Lightning's own "you asked for what is not there" (a GPU, a strategy); looked up, not
    # imported: an error raised before Lightning was loaded cannot be one (start-up time).
    lightning = sys.modules.get("lightning.fabric.utilities.exceptions")
    mistakes = (UserError, getattr(lightning, "MisconfigurationException", UserError))
    in_instantiate = False
    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, mistakes):
            return str(cause)
        if isinstance(cause, InstantiationException):
            in_instantiate = True
        elif isinstance(cause, ValueError) and in_instantiate:
            return str(cause)  # an object's constructor rejected a config value
        elif not in_instantiate:
            return None
        cause = cause.__cause__ or cause.__context__
    return None


@contextmanager
def one_line_errors(cleanup: Callable[[], None] | None = None) -> Iterator[None]:
    """Turn a user's mistake into `error: ...` (exit 1) and Ctrl-C into one line (exit 130)."""
    full = os.environ.get("HYDRA_FULL_ERROR") == "1"
    try:
        yield
    except Preempted as stop:
        if cleanup:
            cleanup()  # only a folder without a checkpoint goes
        if str(stop):
            print(str(stop), file=sys.stderr)
        sys.stderr.flush()
        if stop.hand_over is not None:
            stop.hand_over()  # submitit requeues the job and exits
        sys.exit(stop.exit_status)
    except KeyboardInterrupt:
        if cleanup:
            cleanup()
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as err:
        message = user_error_message(err)
        if message is None or full:
            raise
        if cleanup:
            cleanup()
        print(f"error: {message}", file=sys.stderr)
        sys.exit(1)


# What a seqmodels-train run folder holds before its first checkpoint (and Hydra's <job>.log).
RUN_FOLDER_NAMES = {".hydra", "checkpoints", "tensorboard", "csv", "hparams.yaml"}


def remove_unfinished_run() -> None:
    """Delete this command's run folder when it holds nothing but what the run wrote
    before its first checkpoint (a folder with anything else in it is left alone)."""
    if not HydraConfig.initialized():
        return
    hc = HydraConfig.get()
    if hc.mode != RunMode.RUN or hc.job.config_name != "train":
        return
    if any(o.startswith("resume=") for o in hc.overrides.task):
        return  # a resumed run's folder holds its history
    run = Path(hc.runtime.output_dir)
    names = {p.name for p in run.iterdir()} if run.is_dir() else set()
    ours = all(
        n in RUN_FOLDER_NAMES or n.endswith(".log") or n.startswith("events.out.tfevents")
        for n in names
    )
    if ours and not any(run.rglob("*.ckpt")):
        shutil.rmtree(run, ignore_errors=True)
        for parent in (run.parent, run.parent.parent):  # outputs/<run_name>/, outputs/
            try:
                parent.rmdir()  # only when empty: another run's folder stays
            except OSError:
                break


class RunFolderCheck(Callback):
    """Hydra callback (configs/hydra/default.yaml): a run or sweep folder that cannot be
    made or written is one line naming it, before Hydra's own mkdir would end in a
    traceback (Hydra reports exceptions from its setup with a traceback, so this one
    prints its line and exits itself)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.check(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.check(config, "hydra.sweep.dir")

    def check(self, config: DictConfig, key: str) -> None:
        HydraConfig.instance().set_config(config)  # for ${hydra:...} in the folder's name
        from seqmodels.data.files import writable_folder  # start-up time: it loads torch

        folder = Path(str(OmegaConf.select(config, key))).expanduser()
        try:
            writable_folder(folder)
        except CannotWrite as err:
            print(
                f"error: {err}; give the runs a folder you can write: paths.root_dir=... "
                f"(or {key}=...)",
                file=sys.stderr,
            )
            sys.exit(1)


def import_from_working_folder() -> None:
    """Let `_target_`s name modules of the folder the command was started from.

    A console script's sys.path[0] is the folder of the script (.venv/bin), not
    the working folder, so `model.cell._target_=mycell.MyCell` would not find
    `./mycell.py`. `python -m` puts the working folder first, and so does this:
    the rule Python users already know from `python -m` and `python train.py`
    run beside their own modules, so a name on the command line means the file
    the user sees. Its risk is the same too, and expected for the same reason: a
    `./torch.py` or `./numpy.py` in that folder shadows the library of that name
    (for the modules not imported yet), as it would under `python -m`; its
    opt-out too (`python -P`, PYTHONSAFEPATH=1). The absolute path is kept, so a
    later change of folder changes nothing.
    """
    if getattr(sys.flags, "safe_path", False):  # Python 3.11+
        return
    here = os.getcwd()
    if here not in sys.path:
        sys.path.insert(0, here)


def entry_point(config_name: str) -> Callable[[Callable[[DictConfig], Any]], Callable[[], Any]]:
    def wrap(work: Callable[[DictConfig], Any]) -> Callable[[], Any]:
        @functools.wraps(work)
        def task(cfg: DictConfig) -> Any:
            # The process ends after the command: at exit Python's last garbage collections
            # would walk every object torch, Lightning and sympy made (a good part of a
            # second); frozen, they are left to the operating system. Only unreachable
            # cycles go unfinalized, which Python never promises to finalize at exit.
            atexit.unregister(gc.freeze)  # once, however many commands ran in this process
            atexit.register(gc.freeze)
            with one_line_errors(cleanup=remove_unfinished_run):
                return work(cfg)

        main = hydra.main(version_base="1.3", config_path=config_dir(), config_name=config_name)(
            task
        )

        @functools.wraps(work)
        def command() -> Any:
            import_from_working_folder()
            try:
                return main()
            except BrokenPipeError:
                # The reader closed the pipe (`seqmodels-train --help | head`): stop quietly,
                # as a Unix tool killed by SIGPIPE does; Python would print a traceback, and
                # again when it flushes stdout at exit (hence stdout goes to /dev/null).
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                sys.exit(128 + 13)

        return command

    return wrap


# -- resume ------------------------------------------------------------------------------


def resume_argv(argv: list[str]) -> list[str]:
    """seqmodels-train resume=<run> [overrides] -> the run's own overrides, then these.

    The run goes on in its own folder (hydra.run.dir) from checkpoints/last.ckpt.
    A search's sweeper settings are left out: a resumed trial is a single run.
    """
    given = [a for a in argv[1:] if a.startswith("resume=")]
    if not given:
        return argv
    run = Path(given[-1].split("=", 1)[1]).expanduser().resolve()
    saved = run / ".hydra" / "overrides.yaml"
    if not saved.is_file():
        raise UserError(
            f"resume={run}: not the folder of a seqmodels-train run (no .hydra/overrides.yaml "
            "in it); give the run folder that holds checkpoints/ and .hydra/"
        )
    if not (run / "checkpoints" / "last.ckpt").is_file():
        raise UserError(
            f"resume={run}: there is no checkpoints/last.ckpt to resume from (the run stopped "
            "before its first epoch ended); start it again without resume="
        )
    original = OmegaConf.load(saved)
    assert isinstance(original, ListConfig)
    keep = [
        str(o)
        for o in original
        if not str(o).startswith(("resume=", "hparams_search=", "hydra/sweeper", "hydra."))
    ]
    rest = [a for a in argv[1:] if not a.startswith("resume=")]
    folder = "'" + str(run).replace("'", "\\'") + "'"  # quoted for Hydra's override grammar
    return [argv[0], *keep, *rest, f"resume={folder}", f"hydra.run.dir={folder}"]


# -- the commands ------------------------------------------------------------------------


@entry_point("train")
def _train(cfg: DictConfig) -> float | None:
    from seqmodels import train as train_command  # start-up time: see the imports at the top

    metrics = train_command.train(cfg)
    # A sweep's value: optimized_metric, or the best validation value of the
    # monitored metric (that of the checkpoint the run tested).
    metric = cfg.get("optimized_metric") or "val/best_" + cfg.monitor.metric.split("/", 1)[-1]
    return metrics.get(metric)


def launched_rank() -> int:
    """This process's global rank as its launcher set it (Lightning's DDP workers, torchrun,
    SLURM), read from the environment as Lightning reads it, without importing Lightning."""
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    return 0


def refuse_folder_in_use(argv: list[str]) -> None:
    """A run folder named on the command line (resume=, hydra.run.dir=) that a live
    process trains in, or that holds another run: one line before Hydra writes its
    config into that folder."""
    if launched_rank() != 0:
        return  # a DDP worker that Lightning started in rank 0's folder: rank 0 holds it
    resuming = any(a.startswith("resume=") for a in argv[1:])
    for arg in argv[1:]:
        key, _, value = arg.partition("=")
        if key in ("resume", "hydra.run.dir") and value:
            run = Path(value.strip("'\"")).expanduser().resolve()
            holder = live_holder(run)
            if holder is not None:
                raise UserError(in_use_message(run, holder))
            if key == "hydra.run.dir" and not resuming:
                from seqmodels.train import check_new_run_folder  # start-up time (the top)

                check_new_run_folder(run)


def train() -> float | None:
    """seqmodels-train: fit, then test the best checkpoint. Returns the swept metric."""
    with one_line_errors():
        refuse_folder_in_use(sys.argv)
        sys.argv = resume_argv(sys.argv)
    return _train()


@entry_point("eval")
def evaluate(cfg: DictConfig) -> None:
    """seqmodels-eval ckpt_path=...: the test metrics of a checkpoint."""
    from seqmodels import evaluate as evaluate_command  # start-up time: see the imports at the top

    evaluate_command.evaluate(cfg)


@entry_point("predict")
def predict(cfg: DictConfig) -> None:
    """seqmodels-predict ckpt_path=... text="..." | file=reviews.txt | file=- | image=...: labels."""
    from seqmodels import predict as predict_command  # start-up time: see the imports at the top

    predict_command.predict(cfg)


@entry_point("sample")
def sample(cfg: DictConfig) -> None:
    """seqmodels-sample ckpt_path=... prime="ROMEO:" length=1000 temperature=0.8: stream text."""
    from seqmodels import sample as sample_command  # start-up time: see the imports at the top

    sample_command.sample_checkpoint(
        cfg.ckpt_path,
        prime=cfg.prime,
        length=cfg.length,
        temperature=cfg.temperature,
        top_k=cfg.top_k,
        seed=cfg.seed,
    )


@entry_point("export")
def export(cfg: DictConfig) -> None:
    """seqmodels-export ckpt_path=... format=onnx|pt2 [out=...]: the inference path as a file."""
    from seqmodels import export as export_command  # start-up time: see the imports at the top

    export_command.export(cfg)
