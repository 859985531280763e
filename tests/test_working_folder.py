"""A `_target_` names a module of the folder the command starts from, as `python -m` does.

The commands run here as the installed console scripts (the .venv's
`seqmodels-train`, `seqmodels-eval`), in a subprocess started in a folder that
holds `mycell.py` and nothing else: a console script's own sys.path does not
hold that folder, so only the entry point's rule makes the module importable.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from seqmodels.checkpoint import load_run

MYCELL = '''
import torch
from seqmodels.nn import Cell


class MinGRU(Cell):
    """h_t = (1 - z) * h_{t-1} + z * tanh(c), both gates from [x_t, h_{t-1}]."""

    gate_names = ("z", "c")

    def step(self, gates, state):
        z, c = gates.chunk(2, dim=-1)
        z = torch.sigmoid(z)
        return (1 - z) * state + z * torch.tanh(c)
'''


def command(name: str) -> str:
    script = Path(sys.executable).parent / f"seqmodels-{name}"
    assert script.is_file(), f"{script} is not installed (make install)"
    return str(script)


def run_here(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ""}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run(
        list(args), cwd=folder, env=env, capture_output=True, text=True, timeout=300
    )


def test_a_cell_in_the_working_folder_trains_and_its_checkpoint_loads_there(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "mycell.py").write_text(MYCELL, encoding="utf-8")
    trained = run_here(
        work,
        command("train"),
        "model=custom",
        "model.cell._target_=mycell.MinGRU",
        "model.hidden_size=8",
        "logger=none",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "trainer.enable_progress_bar=false",
        f"paths.root_dir={tmp_path / 'runs'}",
    )
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "test/acc=" in trained.stdout
    (ckpt,) = (tmp_path / "runs").rglob("last.ckpt")

    # The checkpoint names mycell.MinGRU: seqmodels-eval loads it from the same folder.
    evaluated = run_here(work, command("eval"), f"ckpt_path={ckpt}")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "test metrics:" in evaluated.stdout

    # and the cell it trained is the working folder's own
    stale = sys.modules.pop("mycell", None)  # another test's mycell.py (the docs' examples)
    sys.path.insert(0, str(work))
    try:
        _, module, _ = load_run(ckpt)
    finally:
        sys.path.remove(str(work))
        sys.modules.pop("mycell", None)
        if stale is not None:
            sys.modules["mycell"] = stale
    cells = [m for m in module.modules() if type(m).__name__ == "MinGRU"]
    assert cells and type(cells[0]).__module__ == "mycell"
    assert all(torch.isfinite(p).all() for p in module.parameters())
