"""seqmodels.nn is pure PyTorch: importing it pulls in no Lightning, Hydra or TensorBoard."""

import pathlib
import re
import subprocess
import sys

import seqmodels.nn

FORBIDDEN = ("lightning", "pytorch_lightning", "hydra", "omegaconf", "tensorboard")


def test_no_framework_import_in_source():
    root = pathlib.Path(seqmodels.nn.__file__).parent
    pattern = re.compile(r"^\s*(?:import|from)\s+(" + "|".join(FORBIDDEN) + r")\b", re.M)
    hits = [
        f"{p.name}: {m.group(0).strip()}"
        for p in root.glob("*.py")
        for m in pattern.finditer(p.read_text())
    ]
    assert not hits, hits


def test_importing_seqmodels_nn_loads_no_framework():
    code = (
        "import sys, seqmodels.nn\n"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}]\n"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
