"""Cores shared fairly (threads.py): each training run on a machine takes its share of
the cores' threads, counting the live runs registered there; the user's setting wins; a
run beside others says so in one line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from seqmodels import threads
from seqmodels.errors import UserError

REGISTER = """
import sys, time
from pathlib import Path
from seqmodels.threads import registered
with registered(Path(sys.argv[1])):
    print("registered", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def others(tmp_path):
    """Start n other registered runs (real processes) in tmp_path: their Popens."""
    procs = []

    def start(n):
        for _ in range(n):
            p = subprocess.Popen(
                [sys.executable, "-c", REGISTER, str(tmp_path)],
                stdout=subprocess.PIPE,
                text=True,
                env={**os.environ, "PYTHONPATH": os.getcwd()},
            )
            assert p.stdout.readline().strip() == "registered"
            procs.append(p)
        return procs

    yield start
    for p in procs:
        p.kill()
        p.wait()


@pytest.fixture
def eight_cores(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: 8)


def test_each_run_takes_its_share_of_the_cores(tmp_path, others, eight_cores):
    with threads.registered(tmp_path):
        assert threads.choose_threads(None, tmp_path) == (8, None)  # alone: every core
        procs = others(3)
        n, line = threads.choose_threads(None, tmp_path)
        assert n == 2 and torch.get_num_threads() == 2  # 4 runs on 8 cores
        assert line.startswith("3 other training run(s) on this machine (pid ")
        assert all(str(p.pid) in line for p in procs)
        assert "set threads=N or OMP_NUM_THREADS=N" in line


def test_a_killed_run_drops_out_by_itself(tmp_path, others, eight_cores):
    (proc,) = others(1)
    assert threads.live_runs(tmp_path) == [proc.pid]
    proc.kill()  # SIGKILL: it never unregisters
    proc.wait()
    assert threads.live_runs(tmp_path) == []
    assert list(tmp_path.iterdir()) == []  # its file is cleaned away


def test_the_users_setting_wins(tmp_path, others, eight_cores, monkeypatch):
    others(3)
    assert threads.choose_threads(5, tmp_path) == (5, None)
    assert torch.get_num_threads() == 5
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    torch.set_num_threads(3)
    assert threads.choose_threads(None, tmp_path) == (3, None)
    with pytest.raises(UserError, match="threads='x' must be a number of threads >= 1"):
        threads.choose_threads("x", tmp_path)  # type: ignore[arg-type]


def test_a_busy_machine_is_one_line(tmp_path, eight_cores, monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (9.5, 9.0, 8.0))
    n, line = threads.choose_threads(None, tmp_path)
    assert n == 8
    assert line.startswith("this machine is busy (load 9.5 on 8 cores)")


def test_a_run_takes_its_share_again_at_each_epoch(tmp_path, others, eight_cores):
    callback = threads.SharedCores(tmp_path)
    with threads.registered(tmp_path):
        assert threads.choose_threads(None, tmp_path) == (8, None)
        procs = others(3)  # three runs start beside it
        callback.on_train_epoch_start(None, None)  # type: ignore[arg-type]
        assert torch.get_num_threads() == 2
        for p in procs[1:]:  # two of them end
            p.kill()
            p.wait()
        callback.on_train_epoch_start(None, None)  # type: ignore[arg-type]
        assert torch.get_num_threads() == 4


def test_only_a_run_whose_threads_were_not_set_shares_again(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert not threads.chosen_by_user(None)
    assert threads.chosen_by_user(3)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert threads.chosen_by_user(None)
