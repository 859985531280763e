"""Run recipes one after another and write the results table as Markdown.

    .venv/bin/python scripts/reproduce.py tagging_turkish_upos vic_elec_temp
    .venv/bin/python scripts/reproduce.py all --out results.md
    .venv/bin/python scripts/reproduce.py mnist_row --seed 1 -- trainer.max_epochs=5

Each recipe is its whole command, `seqmodels-train experiment=<recipe>` with the
data overrides this machine needs (real data from `--data`, default
`../shared/data`, or the `SEQMODELS_TEST_DATA` variable; recipes whose data
comes from a package need none), run as a fresh process, one at a time, so
nothing else shares the cores while it is timed. The table holds, per recipe,
the command, its test metrics (the `test metrics:` line the run prints), the
wall time of the whole command, the seed, the CPU (model and vector width)
and the threads; each run's output goes to `<out>.logs/<recipe>.log`. A run
that fails is a row saying so, and the script goes on with the next one.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SEQMODELS_TEST_DATA", REPO.parent / "shared" / "data"))

# recipe -> the overrides that point it at its data ({data} is --data; {imdb} the extracted
# archive), and the environment it runs with (the docs' commands set the same).
RECIPES: dict[str, tuple[list[str], dict[str, str]]] = {
    "parity_long": ([], {}),
    "imdb_keras": (["data.root={imdb}"], {}),
    "imdb": (["data.root={imdb}"], {}),
    "chargen_shakespeare": (["data.root={data}/tinyshakespeare"], {}),
    "mnist_row": (["data.root={data}/mnist"], {}),
    "mnist_pixel_cpu": (["data.root={data}/mnist"], {}),
    "vic_elec": ([], {"OMP_NUM_THREADS": "1"}),
    "vic_elec_temp": ([], {"OMP_NUM_THREADS": "1"}),
    "g2p_cmudict": ([], {}),
    "tagging_turkish_upos": ([], {}),
}


def cpu() -> str:
    """The CPU's model name and its widest vector instructions, from /proc/cpuinfo."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    model = re.search(r"^model name\s*:\s*(.+)$", info, re.M)
    flags = set((re.search(r"^flags\s*:\s*(.+)$", info, re.M) or [""])[0].split())
    width = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{model.group(1).strip() if model else 'unknown CPU'} ({width}, {os.cpu_count()} cores)"


def imdb_root(data: Path) -> Path:
    """The labelled aclImdb archive extracted once into the temporary folder."""
    dest = Path(tempfile.gettempdir()) / "seqmodels_reproduce_imdb"
    if not (dest / "aclImdb" / "test" / "pos").is_dir():
        archive = data / "imdb" / "aclImdb_labeled.tar.gz"
        if not archive.exists():
            raise SystemExit(f"no IMDB archive at {archive}: pass --data")
        tmp = Path(tempfile.mkdtemp(dir=tempfile.gettempdir()))
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(tmp, filter="data")
        dest.mkdir(exist_ok=True)
        (tmp / "aclImdb").replace(dest / "aclImdb")  # whole or not at all
        tmp.rmdir()
    return dest


def run(recipe: str, data: Path, seed: int | None, extra: list[str], logs: Path) -> dict:
    overrides, env = RECIPES[recipe]
    fill = {"data": str(data)}
    if any("{imdb}" in o for o in overrides):
        fill["imdb"] = str(imdb_root(data))
    argv = [f"experiment={recipe}", *(o.format(**fill) for o in overrides)]
    argv += [f"seed={seed}"] if seed is not None else []
    argv += [*extra, "trainer.enable_progress_bar=false"]
    train = Path(sys.executable).parent / "seqmodels-train"
    shown = " ".join([*(f"{k}={v}" for k, v in env.items()), "seqmodels-train", *argv[:-1]])
    print(f"== {recipe}: {shown}", flush=True)
    start = time.perf_counter()
    log = logs / f"{recipe}.log"
    with log.open("w") as out:
        code = subprocess.call(
            [str(train), *argv], stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env}
        )
    wall = time.perf_counter() - start
    text = log.read_text(errors="replace")
    found = re.findall(r"^test metrics: (.+)$", text, re.M)
    seed_used = re.search(r"Seed set to (\d+)", text)
    result = found[-1] if code == 0 and found else f"failed (exit {code}; see {log})"
    print(f"   {result}  [{wall / 60:.1f} min]", flush=True)
    threads = env.get("OMP_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS") or "torch's default"
    return {
        "recipe": recipe,
        "command": shown,
        "result": result,
        "minutes": wall / 60,
        "seed": seed_used.group(1) if seed_used else "?",
        "threads": threads,
    }


def table(rows: list[dict], machine: str) -> str:
    lines = [
        f"Measured by `python scripts/reproduce.py` on {machine}, torch "
        f"{torch_version()}, one recipe at a time; time is the whole command.",
        "",
        "| recipe | command | test metrics | time | seed | threads |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['recipe']} | `{r['command']}` | {r['result']} | {r['minutes']:.1f} min "
            f"| {r['seed']} | {r['threads']} |"
        )
    return "\n".join(lines) + "\n"


def torch_version() -> str:
    out = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.__version__)"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() or "?"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], epilog="after --: overrides added to every recipe"
    )
    parser.add_argument("recipes", nargs="+", help=f"'all' or any of: {', '.join(RECIPES)}")
    parser.add_argument("--data", type=Path, default=DATA, help="the real data's folder")
    parser.add_argument("--seed", type=int, default=None, help="seed= for every run")
    parser.add_argument("--out", type=Path, default=Path("results.md"))
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:cut])
    extra = argv[cut + 1 :]  # after --: overrides for every recipe
    chosen = list(RECIPES) if args.recipes == ["all"] else args.recipes
    unknown = [r for r in chosen if r not in RECIPES]
    if unknown:
        raise SystemExit(f"unknown recipe {unknown[0]!r}: choose from {', '.join(RECIPES)}")
    logs = args.out.with_suffix(".logs")
    logs.mkdir(parents=True, exist_ok=True)
    rows = [run(r, args.data.resolve(), args.seed, extra, logs) for r in chosen]
    text = table(rows, cpu())
    tmp = args.out.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(args.out)  # whole or not at all
    print(f"\n{text}\nwritten to {args.out}")
    if any(r["result"].startswith("failed") for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
