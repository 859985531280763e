"""seqmodels.nn is pure PyTorch: importing it (the seq2seq pieces too) pulls in no Lightning,
Hydra, OmegaConf, torchmetrics or TensorBoard, nor torch's compiler (torch._dynamo: most of a
second at start-up), and it imports nothing from the rooms above it."""

import pathlib
import re
import subprocess
import sys

import pytest

import seqmodels.nn

FORBIDDEN = ("lightning", "pytorch_lightning", "hydra", "omegaconf", "torchmetrics", "tensorboard")
# loaded by torch.compile when it is used, not by importing the layers
LAZY = ("torch._dynamo",)


def test_no_framework_import_in_source():
    root = pathlib.Path(seqmodels.nn.__file__).parent
    pattern = re.compile(r"^\s*(?:import|from)\s+(" + "|".join(FORBIDDEN) + r")\b", re.M)
    hits = [
        f"{p.name}: {m.group(0).strip()}"
        for p in root.glob("*.py")
        for m in pattern.finditer(p.read_text())
    ]
    assert not hits, hits


def test_no_import_from_the_rooms_above():
    # data, tasks and the commands sit above nn: the special token ids are arguments instead.
    root = pathlib.Path(seqmodels.nn.__file__).parent
    pattern = re.compile(r"^\s*(?:import|from)\s+seqmodels\.(?!nn\b|errors\b)\w+", re.M)
    hits = [
        f"{p.name}: {m.group(0).strip()}"
        for p in root.glob("*.py")
        for m in pattern.finditer(p.read_text())
    ]
    assert not hits, hits


@pytest.mark.parametrize(
    "statement",
    [
        "import seqmodels.nn",
        "from seqmodels.nn import Attention, AttentionDecoder, beam_search, greedy_search",
        "from seqmodels.nn import generate, sample_text",
    ],
)
def test_importing_seqmodels_nn_loads_no_framework(statement):
    code = (
        f"import sys\n{statement}\n"
        f"bad = [m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}]\n"
        f"bad += [m for m in {LAZY!r} if m in sys.modules]\n"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
