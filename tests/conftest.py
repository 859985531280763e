"""Shared fixtures: run the command-line entry points in-process.

Running `seqmodels-train` as a subprocess costs seconds of imports each time;
in-process, Hydra composes and runs exactly as from the shell (same argv
parsing, same error reporting), and each run writes under `tmp_path`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@dataclass
class CliResult:
    code: int
    out: str
    err: str
    value: object = None


@pytest.fixture
def run_cli(tmp_path, capsys, monkeypatch):
    """run_cli("train", "model=gru", ...) -> CliResult, outputs under tmp_path/outputs."""
    from seqmodels import cli

    def run(entry: str, *overrides: str, outputs: Path | None = None) -> CliResult:
        root = outputs or tmp_path
        argv = [f"seqmodels-{entry}", *overrides]
        if entry == "train":
            argv.append(f"paths.root_dir={root}")
        monkeypatch.setattr(sys, "argv", argv)
        monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
        GlobalHydra.instance().clear()
        capsys.readouterr()
        code, value = 0, None
        try:
            value = getattr(cli, {"eval": "evaluate"}.get(entry, entry))()
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err, value)

    return run


@pytest.fixture(autouse=True)
def _few_threads():
    # The suite runs on 2 shared cores; tiny models gain nothing from more.
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
