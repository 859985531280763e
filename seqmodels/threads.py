"""Cores shared fairly between the training runs of one machine.

torch starts as many threads as the machine has cores in every process. Two
runs side by side (a local sweep with jobs in parallel, `submitit_local`,
Optuna's `n_jobs`, a user with two terminals) then run twice as many threads
as cores, and they wait on each other far more than their share explains.

Every seqmodels-train process registers itself, for as long as it runs, in a
folder of this host (`runs_folder()`: a file per process, held with a kernel
lock, so a killed process drops out by itself). A run gives torch its share of
the cores it may use: `cores // runs` threads, at least 1, counting the runs
registered when it starts (those started after it take their share of what is
left). The user's own setting wins: `threads=N` in the config, or
`OMP_NUM_THREADS` in the environment. A run that starts beside others, or on a
machine whose load is already past its cores, says so in one line, with the
override to use. While it trains, each epoch starts by taking its share again
(`SharedCores`): a run gives threads up when others start beside it and takes
them back when they end.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import torch

from seqmodels.errors import UserError


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. a SLURM allocation)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def runs_folder() -> Path:
    return Path(tempfile.gettempdir()) / f"seqmodels-runs-{os.getuid()}"


def live_runs(folder: Path) -> list[int]:
    """The pids of the registered runs that are alive (their file is still locked)."""
    pids = []
    for path in folder.glob("*.run"):
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            if path.stem.isdigit():
                pids.append(int(path.stem))
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            with contextlib.suppress(OSError):
                path.unlink()  # left by a process that is gone
        finally:
            os.close(fd)
    return sorted(pids)


@contextlib.contextmanager
def registered(folder: Path | None = None) -> Iterator[Path]:
    """This process counted among the host's training runs for the `with` body."""
    folder = folder or runs_folder()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{os.getpid()}.run"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # held while the process lives
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)


def chosen_by_user(configured: int | None) -> bool:
    return configured is not None or bool(os.environ.get("OMP_NUM_THREADS"))


def share(folder: Path | None = None) -> tuple[int, list[int]]:
    """(this run's share of the cores' threads, the pids of the other live runs)."""
    others = [p for p in live_runs(folder or runs_folder()) if p != os.getpid()]
    return max(1, usable_cores() // (len(others) + 1)), others


def choose_threads(configured: int | None, folder: Path | None = None) -> tuple[int, str | None]:
    """(torch threads for this run, the one line to print or None), and set them."""
    if configured is not None:
        if isinstance(configured, bool) or not isinstance(configured, int) or configured < 1:
            raise UserError(f"threads={configured!r} must be a number of threads >= 1, or null")
        torch.set_num_threads(configured)
        return configured, None
    if chosen_by_user(configured):
        return torch.get_num_threads(), None  # OMP_NUM_THREADS: torch already follows it
    cores = usable_cores()
    threads, others = share(folder)
    torch.set_num_threads(threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if others:
        shown = ", ".join(map(str, others[:5])) + (" ..." if len(others) > 5 else "")
        return threads, (
            f"{len(others)} other training run(s) on this machine (pid {shown}): this run "
            f"takes {threads} of its {cores} cores' threads (set threads=N or "
            "OMP_NUM_THREADS=N to choose)"
        )
    if load >= cores:
        return threads, (
            f"this machine is busy (load {load:.1f} on {cores} cores): this run starts "
            f"{threads} threads, which will share the cores with what runs there (set threads=N "
            "or OMP_NUM_THREADS=N to choose fewer)"
        )
    return threads, None


class SharedCores(L.Callback):
    """Takes this run's share of the cores again at the start of every training epoch,
    counting the runs alive then (a neighbour that ended gives its threads back; one
    that started takes its share). Only for runs whose threads were not set by the user."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        threads, _ = share(self.folder)
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
