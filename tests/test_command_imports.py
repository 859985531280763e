"""The commands load what they need when they need it: the command line itself and
`seqmodels-train --help` load no torch, Lightning, torchmetrics, onnx, pandas or optuna,
and seqmodels-predict loads no exporter, pandas or optuna. (That `import seqmodels.nn`
loads no framework is tests/nn/test_purity.py's.)

Each check runs a fresh Python: `-X importtime` lists every module a process imported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
HEAVY = ("torch", "lightning", "pytorch_lightning", "torchmetrics", "tensorboard")
EXTRAS = ("onnx", "onnxscript", "onnxruntime", "pandas", "optuna")


def imported(command: list[str]) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    """The top-level packages a fresh process imported, and the finished process."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *command],
        cwd=REPO,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    names = {
        line.rsplit("|", 1)[1].strip().split(".")[0]
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and line.count("|") == 2
    }
    assert "hydra" in names or "torch" in names, done.stderr[-2000:]  # importtime's lines read
    return names, done


def test_the_command_line_imports_no_framework():
    names, done = imported(["-c", "import seqmodels.cli"])
    assert done.returncode == 0, done.stderr[-2000:]
    assert not names & {*HEAVY, *EXTRAS}, sorted(names & {*HEAVY, *EXTRAS})


def test_train_help_answers_without_torch_and_lists_the_config_groups():
    names, done = imported([str(BIN / "seqmodels-train"), "--help"])
    assert done.returncode == 0, done.stderr[-2000:]
    # Hydra imports every plugin module (our Optuna sweeper's too) before it answers.
    assert not names & {*HEAVY, *EXTRAS}, sorted(names & {*HEAVY, *EXTRAS})
    assert "== Configuration groups ==" in done.stdout
    for group in sorted(p for p in (REPO / "configs").iterdir() if p.is_dir()):
        if group.name == "hydra":
            continue  # Hydra's own groups are listed by --hydra-help
        options = sorted(p.stem for p in group.glob("*.yaml"))
        assert f"{group.name}: {', '.join(options)}" in done.stdout, done.stdout


def test_predict_loads_no_exporter_pandas_or_optuna():
    names, done = imported(["-c", "import seqmodels.cli, seqmodels.predict"])
    assert done.returncode == 0, done.stderr[-2000:]
    assert "lightning" in names  # the checkpoint's task and datamodule are Lightning's
    assert not names & set(EXTRAS), sorted(names & set(EXTRAS))


def test_help_names_each_command_and_a_closed_pipe_is_no_traceback():
    for name in ("train", "eval", "predict", "sample", "export"):
        done = subprocess.run(
            [str(BIN / f"seqmodels-{name}"), "--help"],
            env=ENV,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.startswith(f"seqmodels-{name} is powered by Hydra."), done.stdout[:80]
    # `seqmodels-train --help | head -1`: the reader closes the pipe after one line
    shell = subprocess.run(
        f"'{BIN / 'seqmodels-train'}' --help | head -1; echo ${{PIPESTATUS[0]}}",
        shell=True,
        executable="/bin/bash",
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "Traceback" not in shell.stderr and "BrokenPipeError" not in shell.stderr, shell.stderr
    assert shell.stdout.splitlines()[-1] in ("0", "141"), shell.stdout  # 0: all fit the pipe
