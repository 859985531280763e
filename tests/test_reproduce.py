"""scripts/reproduce.py runs a recipe as its whole command and writes the results table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "reproduce.py"
SHRINK = [
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "logger=none",
]


def reproduce(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_recipe_becomes_a_row_with_its_test_metrics(tmp_path):
    out = tmp_path / "results.md"
    done = reproduce(
        tmp_path,
        "parity_long",
        "--seed",
        "3",
        "--out",
        str(out),
        "--",
        *SHRINK,
        f"paths.root_dir={tmp_path / 'runs'}",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line for line in out.read_text().splitlines() if line.startswith("| parity_long")]
    assert len(rows) == 1
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[1].startswith("`seqmodels-train experiment=parity_long seed=3")
    assert "test/acc=" in cells[2] and cells[4] == "3"
    assert (tmp_path / "results.logs" / "parity_long.log").is_file()


def test_a_failed_run_is_a_row_and_a_nonzero_exit(tmp_path):
    out = tmp_path / "results.md"
    done = reproduce(tmp_path, "parity_long", "--out", str(out), "--", "trainer.max_epochs=x")
    assert done.returncode == 1
    assert "failed (exit 1" in out.read_text()


def test_an_unknown_recipe_is_one_line(tmp_path):
    done = reproduce(tmp_path, "no_such_recipe")
    assert done.returncode != 0 and "unknown recipe 'no_such_recipe'" in done.stderr
