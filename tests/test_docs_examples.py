"""Every example of the docs (docs/**/*.md) and the README runs, so they cannot drift from the code.

Python: each ```python block runs; the blocks of one page share a namespace, in page order, as
a reader runs them (one test per page, in a fresh folder; a failure's traceback names the
page and its line).

Command lines: each `seqmodels-*` line of a ```bash block, and each `$ seqmodels-*` line of a
```console block, is a test. RULES below says how each one runs: shrunk to a few batches on
the small datasets of the `small_data` fixture (the docs' real-data placeholders such as
`data.root=<aclImdb parent>` become those), marked slow, or skipped with the reason (a
cluster, a GPU). A checkpoint a command names (`<run>`, `<imdb run>`, ...) is trained first,
small, on the same task. A console block's expected `error:` line is checked against what
the command prints. A command line that no rule covers fails: add it to RULES.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from support import CONFIGS, run_dirs, small_data_overrides

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md"] + sorted(
    p for p in (ROOT / "docs").rglob("*.md") if "_build" not in p.parts
)
FENCE = re.compile(
    r"^(?P<indent>[ ]*)```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ ]*$", re.S | re.M
)


def page_name(page: Path) -> str:
    return str(page.relative_to(ROOT))


def blocks(page: Path, lang: str) -> list[tuple[int, str]]:
    """(line number of the first line of code, code) of each ```lang block, in page order."""
    text = page.read_text(encoding="utf-8")
    found = []
    for m in FENCE.finditer(text):
        if m.group("lang") == lang:
            indent = len(m.group("indent"))
            body = "\n".join(line[indent:] for line in m.group("body").splitlines())
            found.append((text.count("\n", 0, m.start("body")) + 1, body))
    return found


# --- Python blocks -------------------------------------------------------------------------

PYTHON_PAGES = [p for p in PAGES if blocks(p, "python")]


@pytest.mark.parametrize("page", PYTHON_PAGES, ids=page_name)
def test_python_examples_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files (model.onnx) write them here
    namespace: dict = {"__name__": "__docs__"}
    for line, code in blocks(page, "python"):
        # Padded so that a traceback's line numbers are the page's.
        exec(compile("\n" * (line - 1) + code, str(page), "exec"), namespace)


def test_every_page_is_read():
    assert ROOT / "docs" / "nn.md" in PYTHON_PAGES and ROOT / "README.md" in PYTHON_PAGES
    assert len(blocks(ROOT / "docs" / "nn.md", "python")) >= 5


# --- Command lines -------------------------------------------------------------------------


@dataclass
class Command:
    page: str
    line: int
    argv: list[str]  # seqmodels-<entry> and its arguments, environment variables dropped
    expected: str  # a console block's first output line ("" for bash blocks)

    @property
    def text(self) -> str:
        return shlex.join(self.argv)


def commands() -> list[Command]:
    found = []
    for page in PAGES:
        for lang in ("bash", "console"):
            for first, code in blocks(page, lang):
                physical = code.splitlines()
                i = 0
                while i < len(physical):
                    start, line = i, physical[i]
                    while line.endswith("\\") and i + 1 < len(physical):  # continuation lines
                        i += 1
                        line = line[:-1] + " " + physical[i]
                    i += 1
                    expected = ""
                    if lang == "console":
                        if not line.startswith("$ "):
                            continue
                        line = line[2:]
                        if i < len(physical) and not physical[i].startswith("$ "):
                            expected = physical[i]
                    # <MNIST folder>, <imdb run>: one word each, as a reader types them
                    line = re.sub(r"<[^<>]*>", lambda m: m.group(0).replace(" ", "_"), line)
                    argv = shlex.split(line, comments=True)
                    while argv and re.fullmatch(r"[A-Z_]+=\S*", argv[0]):
                        argv = argv[1:]  # OMP_NUM_THREADS=1 seqmodels-train ...
                    if ">" in argv:
                        argv = argv[: argv.index(">")]  # ... > forecast.csv
                    if argv and argv[0].startswith("seqmodels-"):
                        found.append(Command(page_name(page), first + start, argv, expected))
                    # make train, python scripts/bench_*.py: the install and the benchmarks,
                    # not run here (a benchmark's timings mean nothing in a test run).
    return found


FAST, SLOW = "fast", "slow"
# How each command line runs, first match wins: (regex over the command line, how, and the
# overrides added to it (they replace the command's own value of the same key), or why it is
# skipped). Every command also gets SHRINK and its task's small dataset.
RULES: list[tuple[str, str, tuple[str, ...] | str]] = [
    (r"hydra/launcher=slurm", "skip", "needs a SLURM cluster"),
    (r"postgresql://", "skip", "needs a PostgreSQL server"),
    (r"^seqmodels-train trainer=gpu$", "no-cuda", ()),  # the one-line error without CUDA
    (
        r"trainer=gpu|experiment=(mnist_pixel|mnist_pixel_permuted|chargen_shakespeare_gpu)$",
        "cuda",
        (),
    ),
    # The console blocks' one-line errors: they stop before the first training step.
    (r"trainer\.max_epochs=x|optimizer\.lr=-1|poolng|optimizer\.lr=inf", FAST, ()),
    (r"hparams_search=", SLOW, ("hydra.sweeper.n_trials=2",)),
    (r"hydra/launcher=submitit_local", SLOW, ()),
    (r"compile=true", SLOW, ()),
    (r"seqmodels-export|seqmodels-predict|seqmodels-sample", SLOW, ("prime=to",)),
    (r"task=|experiment=(?!parity_long)", SLOW, ()),
    (r"-m model=", FAST, ()),
    (r"^seqmodels-(train|eval)\b", FAST, ()),
]
SHRINK = (
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.enable_progress_bar=false",
    "logger=none",
    "trainer.max_time=null",
)
SWEEP_SHRINK = ("trainer.fast_dev_run=true", "logger=none")
# The docs' placeholders for a checkpoint, and the task each one was trained on.
CHECKPOINT = re.compile(
    r"(?:outputs/parity/)?(?:<(?:(?P<task>\w+?)_)?run>|\d{4}-\d\d-\d\d_[\w-]+)(?P<rest>/checkpoints/\S+)?"
)
PLACEHOLDER_TASK = {
    "imdb": "imdb",
    "mnist": "mnist",
    "chargen": "chargen",
    "vic_elec": "forecast",
    "g2p": "seq2seq",
    "tagging": "tagging",
}
PAGE_TASK = {
    "forecasting": "forecast",
    "seq2seq": "seq2seq",
    "chargen": "chargen",
    "tagging": "tagging",
}
INPUT_FILES = {
    "reviews.txt": "A warm, funny film.\nDull and far too long.\n",
    "words.txt": "stream\nmodel\n",  # letters of the small dictionary
    "fra.txt": "".join(f"{w}\t{w[::-1]}\n" for w in ("go", "hi", "run", "who", "wow") * 12),
}


def rule(command: Command) -> tuple[str, tuple[str, ...] | str]:
    for pattern, how, extra in RULES:
        if re.search(pattern, command.text):
            return how, extra
    return "missing", ()


def params():
    seen = set()
    for command in commands():
        if (command.text, command.expected) in seen:
            continue  # the same line on several pages runs once
        seen.add((command.text, command.expected))
        how, extra = rule(command)
        marks = [pytest.mark.slow] if how == SLOW else []
        if how == "skip":
            marks = [pytest.mark.skip(reason=str(extra))]
        yield pytest.param(command, id=f"{command.page}:{command.line}", marks=marks)


def task_of(argv: list[str], page: str) -> str:
    for arg in argv:
        if arg.startswith("task="):
            return arg.split("=", 1)[1]
        if arg.startswith("experiment="):
            text = (CONFIGS / "experiment" / f"{arg.split('=', 1)[1]}.yaml").read_text()
            return re.search(r"override /task: (\w+)", text).group(1)
    stem = Path(page).stem
    return PAGE_TASK.get(stem, {"imdb": "imdb", "mnist": "mnist"}.get(stem, "parity"))


def key(arg: str) -> str:
    return arg.lstrip("+~").split("=", 1)[0]


def merged(argv: list[str], extra: list[str], doc_wins: bool) -> list[str]:
    """argv with `extra` added; on a key both set, `extra` wins unless doc_wins."""
    keys = {key(a) for a in extra}
    own = {key(a) for a in argv[1:]}
    if doc_wins:
        return argv + [a for a in extra if key(a) not in own]
    return [argv[0]] + [a for a in argv[1:] if key(a) not in keys] + extra


@pytest.mark.parametrize("command", list(params()))
def test_command_line_examples_run(command, run_cli, small_data, tmp_path, monkeypatch):
    how, extra = rule(command)
    if how == "missing":
        pytest.fail(f"{command.page}:{command.line}: `{command.text}` has no rule in RULES")
    if how == "cuda" and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    if how == "no-cuda" and torch.cuda.is_available():
        pytest.skip("shows the error of a machine without CUDA")
    monkeypatch.chdir(tmp_path)
    for name, text in INPUT_FILES.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    write_inputs(tmp_path, small_data)
    (tmp_path / "mycell.py").write_text(  # a cell in the folder the command runs from
        "from seqmodels.nn import GRUCell as MyCell\n", encoding="utf-8"
    )
    package = tmp_path / "site-packages" / "my_package"  # an installed package of cells
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        "from seqmodels.nn import GRUCell as MyCell\n", encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(package.parent))

    entry = command.argv[0].removeprefix("seqmodels-")
    task = task_of(command.argv, command.page)
    argv = [re.sub(r"data\.(root|path)=<[^>]*>|data\.root=/path/\S+", "", a) for a in command.argv]
    argv = [a for a in argv if a]
    if (
        entry == "train"
        and "data.path=fra.txt" not in argv
        and not ("-m" in argv and task == "parity")
    ):
        argv += [a for a in small_data_overrides(task, small_data) if key(a) not in map(key, argv)]
    if (
        entry == "sample"
        or entry == "predict"
        or entry == "export"
        or any(CHECKPOINT.search(a) for a in argv[1:])
    ):
        argv = with_checkpoint(argv, command.page, run_cli, small_data, tmp_path)
    if entry == "train" and "-m" in argv:
        # A sweep's job folders are named by its overrides: few and short ones here.
        argv = merged(argv, list(SWEEP_SHRINK), doc_wins=False)
    elif entry == "train":
        argv = merged(argv, list(SHRINK), doc_wins=bool(command.expected))
    argv = merged(argv, [a for a in extra if key(a) != "prime" or entry == "sample"], False)

    result = run_cli(entry, *argv[1:], outputs=tmp_path)
    if command.expected.startswith("error:"):
        assert result.code != 0, f"`{command.text}` did not fail"
        head = re.split(r"[<(]|\.\.\.", command.expected)[0].strip()
        assert head in result.err, f"expected `{head}`, got: {result.err}"
    else:
        assert result.code == 0, f"`{shlex.join(argv)}` failed:\n{result.err}"


def write_inputs(folder: Path, small_data: Path) -> None:
    """digit.png and recent.csv, the predict inputs the task pages name."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    Image.fromarray(np.zeros((28, 28), dtype=np.uint8)).save(folder / "digit.png")
    frame = pd.read_csv(small_data / "series.csv", dtype=str, keep_default_na=False)
    recent = frame.iloc[-336 - 48 :].copy()  # the last week, then a day whose demand is unknown
    recent.loc[recent.index[-48:], "Demand"] = ""
    recent.to_csv(folder / "recent.csv", index=False)


def with_checkpoint(argv, page, run_cli, small_data, tmp_path) -> list[str]:
    """argv with its checkpoint or run folder placeholder replaced by a small run of its task."""
    ckpt_arg = next(a for a in argv[1:] if CHECKPOINT.search(a))
    m = CHECKPOINT.search(ckpt_arg)
    task = PLACEHOLDER_TASK.get((m.group("task") or "").strip()) or task_of(argv, page)
    outputs = tmp_path / "trained"
    trained = run_cli(
        "train",
        f"task={task}",
        *small_data_overrides(task, small_data),
        *SHRINK,
        outputs=outputs,
    )
    assert trained.code == 0, trained.err
    (run,) = run_dirs(outputs)
    replacement = str(run / "checkpoints" / "last.ckpt") if m.group("rest") else str(run)
    return [CHECKPOINT.sub(replacement, a) if a == ckpt_arg else a for a in argv]


def test_every_command_line_has_a_rule():
    missing = [f"{c.page}:{c.line}: {c.text}" for c in commands() if rule(c)[0] == "missing"]
    assert not missing, "add these to RULES:\n" + "\n".join(missing)
    assert len(commands()) > 50, "the command lines of the docs were not found"


def test_the_config_reference_includes_every_config_file():
    text = (ROOT / "docs" / "api" / "configs.md").read_text(encoding="utf-8")
    for path in sorted(CONFIGS.rglob("*.yaml")):
        name = path.relative_to(CONFIGS).as_posix()
        if not name.startswith("hydra/"):  # Hydra's own settings: the Runs page has them
            assert f"../../configs/{name}" in text, f"docs/api/configs.md lacks configs/{name}"
