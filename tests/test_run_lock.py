"""One writer per run folder (run_lock.py): a live holder refuses a second writer in one
line naming its pid and host; a lock left by a dead process is taken over in one line."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import time

import pytest
from support import run_dirs

from seqmodels import run_lock
from seqmodels.errors import CannotWrite, UserError
from seqmodels.run_lock import LOCK_NAME, STALE, FolderInUse, RunLock, live_holder

SMALL = (
    "data.num_train=256",
    "data.num_val=64",
    "data.num_test=64",
    "data.batch_size=32",
    "monitor.stop_at=null",
    "trainer.enable_progress_bar=false",
    "logger=none",
    "trainer.enable_model_summary=false",
)

HOLD = """
import sys, time
from seqmodels.run_lock import RunLock
RunLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(120)
"""


@pytest.fixture
def held(tmp_path):
    """A live process on this host holding the lock of a folder: (folder, its pid)."""
    procs = []

    def hold(folder):
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(folder)],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": os.getcwd()},
        )
        assert proc.stdout.readline().strip() == "held"
        procs.append(proc)
        return proc.pid

    yield hold
    for proc in procs:
        proc.kill()
        proc.wait()


def test_a_held_folder_is_refused_naming_pid_and_host(tmp_path, held):
    pid = held(tmp_path)
    with pytest.raises(FolderInUse) as err:
        RunLock(tmp_path).acquire()
    message = str(err.value)
    assert f"pid {pid} on host {socket.gethostname()}" in message and "is in use" in message
    assert live_holder(tmp_path)["pid"] == pid


def test_a_dead_holder_on_this_host_is_taken_over_in_one_line(tmp_path, held):
    pid = held(tmp_path)
    os.kill(pid, 9)  # SIGKILL: nothing released the lock
    time.sleep(0.2)
    assert (tmp_path / LOCK_NAME).is_file()
    assert live_holder(tmp_path) is None
    lock = RunLock(tmp_path)
    note = lock.acquire()
    assert note.startswith(f"took over the lock of {tmp_path}: pid {pid} on host ")
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()
    assert not (tmp_path / LOCK_NAME).exists()  # released: nothing left in the folder


def write_foreign_lock(folder, age_s, **extra):
    path = folder / LOCK_NAME
    path.write_text(json.dumps({"pid": 4242, "host": "node-17", "started": time.time(), **extra}))
    old = time.time() - age_s
    os.utime(path, (old, old))


def test_a_lock_from_another_host_is_trusted_until_its_heartbeat_stops(tmp_path):
    write_foreign_lock(tmp_path, age_s=5)  # refreshed 5 s ago: alive there
    with pytest.raises(FolderInUse, match="pid 4242 on host node-17"):
        RunLock(tmp_path).acquire()
    write_foreign_lock(tmp_path, age_s=STALE + 60)  # no heartbeat for longer than STALE
    lock = RunLock(tmp_path)
    assert "pid 4242 on host node-17" in lock.acquire()
    lock.release()


def test_a_requeued_slurm_job_takes_over_its_own_earlier_lock(tmp_path, monkeypatch):
    write_foreign_lock(tmp_path, age_s=5, slurm_job="991")
    monkeypatch.setenv("SLURM_JOB_ID", "991")
    lock = RunLock(tmp_path)
    assert "took over" in lock.acquire()
    lock.release()


def test_the_lock_is_refreshed_while_held(tmp_path, monkeypatch):
    from seqmodels import run_lock

    monkeypatch.setattr(run_lock, "HEARTBEAT", 0.05)
    lock = RunLock(tmp_path)
    lock.acquire()
    old = time.time() - 1000
    os.utime(tmp_path / LOCK_NAME, (old, old))
    time.sleep(0.3)
    assert time.time() - (tmp_path / LOCK_NAME).stat().st_mtime < 5
    lock.release()


def test_resume_of_a_folder_in_use_is_one_line_and_touches_nothing(run_cli, tmp_path, held):
    assert run_cli("train", *SMALL, "trainer.max_epochs=1").code == 0
    (run,) = run_dirs(tmp_path)
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    pid = held(run)
    for args in ([f"resume={run}"], [*SMALL, f"hydra.run.dir={run}"]):
        result = run_cli("train", *args)
        assert result.code == 1 and "Traceback" not in result.err
        (line,) = result.err.strip().splitlines()
        assert line.startswith(f"error: {run} is in use: pid {pid} on host {socket.gethostname()}")
    after = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file() and p.name != LOCK_NAME}
    assert after == {p: t for p, t in before.items()}  # not a byte written into the folder


def test_a_run_holds_the_lock_while_it_trains_and_releases_it(run_cli, tmp_path, monkeypatch):
    from seqmodels import checkpoint

    seen = []

    class Look(checkpoint.RunState):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            super().on_train_batch_start(trainer, pl_module, batch, batch_idx)
            if not seen:
                run = next(tmp_path.rglob(LOCK_NAME)).parent
                seen.append(json.loads((run / LOCK_NAME).read_text()))

    monkeypatch.setattr("seqmodels.train.RunState", Look)
    assert run_cli("train", *SMALL, "trainer.max_epochs=1").code == 0
    assert seen[0]["pid"] == os.getpid() and seen[0]["host"] == socket.gethostname()
    assert not list(tmp_path.rglob(LOCK_NAME))


def test_a_new_run_into_a_folder_with_a_checkpoint_is_refused(run_cli, tmp_path):
    assert run_cli("train", *SMALL, "trainer.max_epochs=1").code == 0
    (run,) = run_dirs(tmp_path)
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    result = run_cli("train", *SMALL, "model=gru", f"hydra.run.dir={run}")
    assert result.code == 1 and "Traceback" not in result.err
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == before
    assert f"{run} already holds a run (checkpoints/last.ckpt): continue it with " in result.err
    assert f"resume={run}" in result.err


def test_a_lock_that_cannot_be_written_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    def full(fd, data, offset):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(run_lock.os, "pwrite", full)
    lock = RunLock(tmp_path / "run")
    with pytest.raises(CannotWrite, match="cannot write .*run.lock: No space left on device"):
        lock.acquire()
    assert lock.fd is None and not (tmp_path / "run" / "run.lock").exists()


@pytest.mark.parametrize(
    "env, rank",
    [
        ({}, 0),
        ({"LOCAL_RANK": "1"}, 1),
        ({"RANK": "3", "LOCAL_RANK": "1"}, 3),
        ({"SLURM_PROCID": "0"}, 0),
    ],
)
def test_only_rank_zero_checks_the_run_folder_on_the_command_line(
    tmp_path, held, monkeypatch, env, rank
):
    """Lightning starts DDP's other ranks with rank 0's hydra.run.dir, whose lock rank 0
    holds: they must not refuse it (trainer=ddp on CPU failed so), while rank 0 still does."""
    from seqmodels.cli import launched_rank, refuse_folder_in_use

    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert launched_rank() == rank
    held(tmp_path)
    argv = ["seqmodels-train", f"hydra.run.dir={tmp_path}"]
    if rank == 0:
        with pytest.raises(UserError, match="is in use"):
            refuse_folder_in_use(argv)
    else:
        refuse_folder_in_use(argv)  # no error: rank 0 holds the folder for the run
