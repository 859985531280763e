"""Start-up time of the commands: how long a user waits for a first line, whole commands.

Runs each of these as a fresh process, in alternating rounds, and prints the
median wall time beside its target (and the median CPU time, user + system,
which other processes on the machine disturb less):

- `python -c "import torch"`: the floor every other line is measured against;
- `python -c "import seqmodels.nn"`: at most 0.3 s over `import torch`;
- `seqmodels-train --help`: at most 1.0 s (it needs no torch at all);
- `seqmodels-predict` of one word: at most 1.5 s over `import torch`, on a tiny
  grapheme-to-phoneme checkpoint that the bench trains first (one epoch on a
  toy dictionary it writes into a temporary folder: offline, about half a
  minute on two cores).

`python -X importtime -c "import seqmodels.cli"` shows where the time goes
when a line misses its target.

    python scripts/bench_startup.py
    python scripts/bench_startup.py --runs 11
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent  # the commands installed beside this Python
LETTERS = "abcdefghijklmnopqrstuvwxyz"
PHONES = "AE B K D EH F G HH IH JH K L M N OW P K R S T AH V W K Y Z".split()


def cpu() -> str:
    """The CPU's model name and its widest vector instructions, from /proc/cpuinfo."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    width = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{model} ({width}, {os.cpu_count()} cores)"


def tiny_checkpoint(folder: Path) -> Path:
    """A seq2seq checkpoint (task=seq2seq) after one epoch on a toy dictionary."""
    rng = random.Random(0)
    words: set[str] = set()
    while len(words) < 300:
        words.add("".join(rng.choice(LETTERS) for _ in range(rng.randint(2, 7))))
    lines = [f"{w} {' '.join(PHONES[LETTERS.index(c)] for c in w)}\n" for w in sorted(words)]
    (folder / "toy.dict").write_text("".join(lines), encoding="utf-8")
    run = folder / "run"
    command = [
        str(BIN / "seqmodels-train"),
        "task=seq2seq",
        f"data.path={folder / 'toy.dict'}",
        "data.batch_size=64",
        "data.eval_batch_size=64",
        "model=gru",
        "model.hidden_size=16",
        "task.decoder_hidden_size=16",
        "task.embedding_dim=8",
        "task.target_embedding_dim=8",
        "task.decode.max_len=12",
        "trainer.max_epochs=1",
        "trainer.enable_progress_bar=false",
        "logger=none",
        "test=false",
        f"paths.root_dir={folder}",
        f"hydra.run.dir={run}",
    ]
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"training the tiny checkpoint failed:\n{done.stderr[-3000:]}")
    return run / "checkpoints" / "last.ckpt"


def timed(command: list[str], cwd: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system) of one run of the command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, used


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=7, help="alternating rounds (median of them)")
    p.add_argument("--word", default="hello", help="the word seqmodels-predict reads")
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        print("training a tiny seq2seq checkpoint ...", flush=True)
        ckpt = tiny_checkpoint(folder)
        python = sys.executable
        commands = {
            'python -c "import torch"': [python, "-c", "import torch"],
            'python -c "import seqmodels.nn"': [python, "-c", "import seqmodels.nn"],
            "seqmodels-train --help": [str(BIN / "seqmodels-train"), "--help"],
            f"seqmodels-predict text={args.word} (seq2seq)": [
                str(BIN / "seqmodels-predict"),
                f"ckpt_path={ckpt}",
                f"text={args.word}",
            ],
        }
        for command in commands.values():  # once unmeasured: caches, compiled bytecode
            timed(command, folder)
        walls: dict[str, list[float]] = {name: [] for name in commands}
        cpus: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, command in commands.items():
                wall, used = timed(command, folder)
                walls[name].append(wall)
                cpus[name].append(used)

    wall = {name: statistics.median(v) for name, v in walls.items()}
    used = {name: statistics.median(v) for name, v in cpus.items()}
    torch_line, nn_line, help_line, predict_line = commands
    targets = {  # name: (what the target says, the wall time it allows)
        nn_line: ("<= import torch + 0.3 s", wall[torch_line] + 0.3),
        help_line: ("<= 1.0 s", 1.0),
        predict_line: ("<= import torch + 1.5 s", wall[torch_line] + 1.5),
    }
    print(f"CPU: {cpu()}")
    print(
        f"Python {platform.python_version()}, OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}; median of {args.runs} alternating runs "
        "of each whole command (a fresh process)"
    )
    print("| command | wall | over import torch | CPU (user+sys) | target | met |")
    print("|---|---|---|---|---|---|")
    for name in commands:
        over = "" if name == torch_line else f"{wall[name] - wall[torch_line]:+.2f} s"
        target, allowed = targets.get(name, ("(the floor)", None))
        met = "" if allowed is None else ("yes" if wall[name] <= allowed else "**no**")
        print(f"| `{name}` | {wall[name]:.2f} s | {over} | {used[name]:.2f} s | {target} | {met} |")


if __name__ == "__main__":
    main()
