"""One writer per run folder: a lock file in the folder while a run trains in it.

`<run>/run.lock` holds the pid, the host and the start time of the process that
trains in the folder, and that process holds a kernel lock (flock) on it. A
second process, `resume=` of the same folder or a run given the same
`hydra.run.dir`, is refused in one line naming that pid and host.

A lock whose process is gone is taken over with one line saying so, so a
SIGKILL never leaves a folder locked for ever:
- on the same host, the kernel drops a dead process's flock: the lock is free;
- from another host (a requeued job on another node), the holder refreshes the
  file's time every `HEARTBEAT` seconds: a lock not refreshed for `STALE`
  seconds, or one left by an earlier run of the same SLURM job (a requeue
  starts only after the job's previous run ended), is taken over.

Under DDP only the process of global rank 0 takes the lock (one per run); a
sweep's jobs each have their own folder, so each takes its own.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from seqmodels.errors import UNWRITABLE, CannotWrite, UserError

LOCK_NAME = "run.lock"
HEARTBEAT = 30.0  # seconds between refreshes of the lock file's time
STALE = 300.0  # a lock from another host not refreshed for this long is stale


def global_rank() -> int:
    """This process's global rank, known before the trainer exists (0 outside DDP)."""
    # Imported here: the command line checks a run folder's lock before it loads Lightning
    # (start-up time); only a run that trains asks for its rank.
    from lightning.pytorch.utilities import rank_zero_only

    return int(getattr(rank_zero_only, "rank", 0))


class FolderInUse(UserError):
    """Another live process trains in the run folder."""


def this_process() -> dict[str, Any]:
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    if os.environ.get("SLURM_JOB_ID"):
        holder["slurm_job"] = os.environ["SLURM_JOB_ID"]
    return holder


def read_holder(path: Path) -> dict[str, Any] | None:
    """The process a lock file names, or None for a missing, empty or unreadable one."""
    try:
        holder = json.loads(path.read_text() or "null")
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) and "pid" in holder else None


def describe(holder: dict[str, Any]) -> str:
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(holder.get("started", 0))))
    return f"pid {holder['pid']} on host {holder.get('host', '?')} (since {since})"


def in_use_message(run: Path, holder: dict[str, Any]) -> str:
    return (
        f"{run} is in use: {describe(holder)} trains in it; wait for it to end or stop it "
        "first (a run folder has one writer), or start a new run without resume= and "
        "hydra.run.dir="
    )


def live_holder(run: str | os.PathLike) -> dict[str, Any] | None:
    """The process that holds the folder's lock now, or None (no lock, or a stale one).

    A look without taking the lock: the command line uses it to refuse before
    Hydra writes anything into the folder."""
    path = Path(run) / LOCK_NAME
    holder = read_holder(path)
    if holder is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return holder  # a live process holds it
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None if gone(holder, path) else holder
    finally:
        os.close(fd)


def gone(holder: dict[str, Any], path: Path) -> bool:
    """Whether the process a free (not flocked) lock names is certainly gone."""
    if holder.get("host") == socket.gethostname():
        return True  # the kernel would hold the flock for a live process on this host
    if holder.get("slurm_job") and holder["slurm_job"] == os.environ.get("SLURM_JOB_ID"):
        return True  # an earlier run of this very job: SLURM requeues after it ended
    try:
        return time.time() - path.stat().st_mtime > STALE
    except OSError:
        return True


class RunLock:
    """The lock of one run folder, held from `acquire()` to `release()`."""

    def __init__(self, run: str | os.PathLike) -> None:
        self.run = Path(run)
        self.path = self.run / LOCK_NAME
        self.fd: int | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def acquire(self) -> str | None:
        """Take the lock; returns the one line to print when a stale lock was taken over.
        Raises FolderInUse when a live process holds it."""
        try:
            return self._acquire()
        except OSError as err:
            self.release()  # the lock file written so far, and its descriptor
            if err.errno in UNWRITABLE:  # a full disk, a read-only folder: one line
                raise CannotWrite(self.path, err) from None
            raise

    def _acquire(self) -> str | None:
        self.run.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                holder = read_holder(self.path) or {"pid": "?", "host": "?"}
                raise FolderInUse(in_use_message(self.run, holder)) from None
            except OSError as err:  # a filesystem without flock: the file's content decides
                if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                    os.close(fd)
                    raise
            # The holder may have released (and removed) the file between open and flock.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self.fd = fd
        previous = read_holder(self.path)
        if previous is not None and not gone(previous, self.path):
            self.fd = None
            os.close(fd)
            raise FolderInUse(in_use_message(self.run, previous))
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(this_process()).encode(), 0)
        os.fsync(fd)
        self._beat = threading.Thread(target=self._refresh, daemon=True, name="run-lock")
        self._beat.start()
        if previous is not None:
            return (
                f"took over the lock of {self.run}: {describe(previous)} is gone "
                "(killed without releasing it)"
            )
        return None

    def _refresh(self) -> None:
        while not self._stop.wait(HEARTBEAT):
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def release(self) -> None:
        if self.fd is None:
            return
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        with contextlib.suppress(OSError):
            self.path.unlink()  # still holding the flock: a waiting opener sees another inode
        os.close(self.fd)  # drops the flock
        self.fd = None


@contextlib.contextmanager
def holding(run: str | os.PathLike, enabled: bool = True) -> Iterator[str | None]:
    """Hold the run folder's lock for the `with` body (yields acquire()'s line, if any)."""
    if not enabled:
        yield None
        return
    lock = RunLock(run)
    note = lock.acquire()
    try:
        yield note
    finally:
        lock.release()
