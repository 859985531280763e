"""Fixtures: the command-line entry points run in-process, and small datasets.

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
from support import (
    TEXT,
    write_synthetic_mnist,
    write_synthetic_series,
    write_tiny_cmudict,
    write_tiny_conll,
    write_tiny_imdb,
)


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


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> Path:
    """A folder with small datasets in the real layouts: imdb/, mnist/, text.txt, series.csv,
    cmudict.dict, ner.conll."""
    root = tmp_path_factory.mktemp("small_data")
    write_tiny_imdb(root / "imdb" / "aclImdb")
    write_synthetic_mnist(root / "mnist")
    (root / "text.txt").write_text(TEXT, encoding="utf-8")
    write_synthetic_series(root / "series.csv")
    write_tiny_cmudict(root / "cmudict.dict")
    write_tiny_conll(root / "ner.conll")
    return root


@pytest.fixture
def tiny_imdb(tmp_path) -> Path:
    """A folder holding aclImdb/ (what data.root points at), fresh for each test."""
    root = tmp_path / "imdb"
    write_tiny_imdb(root / "aclImdb")
    return root


@pytest.fixture
def mnist_root(tmp_path) -> Path:
    write_synthetic_mnist(tmp_path)
    return tmp_path


@pytest.fixture(autouse=True)
def _few_threads(monkeypatch):
    # The suite runs on 2 shared cores; tiny models gain nothing from more. The runs it
    # starts keep the user's setting (seqmodels.threads), as they would OMP_NUM_THREADS.
    import torch

    monkeypatch.setenv("OMP_NUM_THREADS", "1")

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
