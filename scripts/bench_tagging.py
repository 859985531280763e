"""experiment=tagging_turkish_upos beside two peers on the same split and the same CPU.

    python scripts/bench_tagging.py            # the full comparison (about half an hour)
    python scripts/bench_tagging.py --quick    # each trained for a few steps: a smoke test

On the Turkish web and Wikipedia treebank's split (the turkish-treebanks
package: 3,881 / 485 / 485 sentences, UPOS tags), read by TaggingDataModule:

- a feature CRF: sklearn-crfsuite (L-BFGS, c1 = c2 = 0.1, 100 iterations) over
  the usual features: the lowercased word, prefixes and suffixes of 1-3
  characters, shape and case flags, and the same of the neighbours at -2..+2;
- spaCy's tagger from a blank Turkish config (`spacy init config --lang tr
  --pipeline tagger --optimize efficiency`: no pretrained vectors), trained by
  `spacy train` on the train and dev sentences (its own early stopping);
- ours: `seqmodels-train experiment=tagging_turkish_upos`, the whole command.

Prints, per system, test token accuracy and training time (ours: the whole
command, data and test included), and the CPU. A peer whose package is
missing is one line saying how to install it (`pip install
"seqmodels[tagging-peers]"`); the script goes on with the others.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from seqmodels.data.conll import Sentence  # noqa: E402
from seqmodels.data.tagging import SHAPES, TaggingDataModule, shape  # noqa: E402


def cpu_name() -> str:
    """The CPU's model, its widest vector instructions and its cores."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    model = re.search(r"^model name\s*:\s*(.+)$", info, re.M)
    flags = set((re.search(r"^flags\s*:\s*(.+)$", info, re.M) or [""])[0].split())
    width = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    name = model.group(1).strip() if model else platform.machine()
    return f"{name} ({width}), {os.cpu_count()} cores"


def accuracy(predicted: list[list[str]], gold: list[Sentence]) -> float:
    pairs = [
        (p, g)
        for ps, (_, gs) in zip(predicted, gold, strict=True)
        for p, g in zip(ps, gs, strict=True)
    ]
    return 100.0 * sum(p == g for p, g in pairs) / len(pairs)


# -- feature CRF ---------------------------------------------------------------------------


def token_features(word: str, prefix: str) -> dict[str, object]:
    low = word.lower()
    return {
        f"{prefix}word": low,
        f"{prefix}shape": SHAPES[shape(word)],
        f"{prefix}title": word.istitle(),
        f"{prefix}upper": word.isupper(),
        f"{prefix}digit": word.isdigit(),
        **{f"{prefix}pre{n}": low[:n] for n in (1, 2, 3)},
        **{f"{prefix}suf{n}": low[-n:] for n in (1, 2, 3)},
    }


def sentence_features(tokens: list[str]) -> list[dict[str, object]]:
    out = []
    for i in range(len(tokens)):
        features: dict[str, object] = {"bias": 1.0, **token_features(tokens[i], "")}
        for d in (-2, -1, 1, 2):
            j = i + d
            if 0 <= j < len(tokens):
                features.update(token_features(tokens[j], f"{d:+d}:"))
            else:
                features[f"{d:+d}:edge"] = True
        out.append(features)
    return out


def feature_crf(parts: dict[str, list[Sentence]], quick: bool) -> tuple[float, float]:
    import sklearn_crfsuite

    crf = sklearn_crfsuite.CRF(
        algorithm="lbfgs",
        c1=0.1,
        c2=0.1,
        max_iterations=5 if quick else 100,
        all_possible_transitions=True,
    )
    x = [sentence_features(t) for t, _ in parts["train"]]
    y = [tags for _, tags in parts["train"]]
    start = time.perf_counter()
    crf.fit(x, y)
    seconds = time.perf_counter() - start
    predicted = crf.predict([sentence_features(t) for t, _ in parts["test"]])
    return accuracy(predicted, parts["test"]), seconds


# -- spaCy ---------------------------------------------------------------------------------


def spacy_tagger(parts: dict[str, list[Sentence]], quick: bool, work: Path) -> tuple[float, float]:
    import spacy
    from spacy.tokens import Doc, DocBin

    nlp = spacy.blank("tr")
    for name in ("train", "val"):
        docs = DocBin()
        for tokens, tags in parts[name]:
            docs.add(Doc(nlp.vocab, words=tokens, tags=tags))
        docs.to_disk(work / f"{name}.spacy")
    config = work / "config.cfg"
    spacy_cli = [sys.executable, "-m", "spacy"]
    init = ["init", "config", str(config), "--lang", "tr", "--pipeline", "tagger"]
    subprocess.run(
        [*spacy_cli, *init, "--optimize", "efficiency", "--force"],
        check=True,
        capture_output=True,
    )
    train = [
        *spacy_cli,
        "train",
        str(config),
        "--output",
        str(work / "spacy"),
        "--paths.train",
        str(work / "train.spacy"),
        "--paths.dev",
        str(work / "val.spacy"),
    ]
    if quick:
        train += ["--training.max_steps", "20", "--training.eval_frequency", "10"]
    start = time.perf_counter()
    done = subprocess.run(train, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr else "failed")
    trained = spacy.load(work / "spacy" / "model-best")
    predicted = [
        [t.tag_ for t in trained(Doc(trained.vocab, words=tokens))] for tokens, _ in parts["test"]
    ]
    return accuracy(predicted, parts["test"]), seconds


# -- ours ----------------------------------------------------------------------------------


def ours(quick: bool, work: Path, extra: list[str]) -> tuple[float, float]:
    command = [
        str(Path(sys.executable).with_name("seqmodels-train")),
        "experiment=tagging_turkish_upos",
        f"paths.root_dir={work}",
        "trainer.enable_progress_bar=false",
        *extra,
    ]
    if quick:
        command += ["trainer.max_epochs=1", "trainer.limit_train_batches=20", "logger=none"]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    found = re.search(r"test/acc=([0-9.]+)", done.stdout + done.stderr)
    if done.returncode != 0 or not found:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:]
        raise RuntimeError(f"seqmodels-train failed: {' '.join(tail)}")
    return 100.0 * float(found.group(1)), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few steps each: a smoke test")
    parser.add_argument(
        "--only", nargs="*", default=["crf", "spacy", "ours"], help="crf, spacy, ours"
    )
    parser.add_argument("overrides", nargs="*", help="more overrides for seqmodels-train")
    args = parser.parse_args()

    dm = TaggingDataModule(column="upos", scheme="none")
    parts = dm.read()  # the package's split: train, val (dev), test
    sizes = ", ".join(f"{k} {len(v)}" for k, v in parts.items())
    print(f"Turkish treebank (turkish-treebanks), UPOS: {sizes} sentences")
    print(f"CPU: {cpu_name()}{' (--quick: a smoke test, not a result)' if args.quick else ''}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_tagging_") as scratch:
        work = Path(scratch)
        peers = {
            "crf": ("feature CRF (sklearn-crfsuite)", lambda: feature_crf(parts, args.quick)),
            "spacy": (
                "spaCy tagger (blank tr, efficiency)",
                lambda: spacy_tagger(parts, args.quick, work),
            ),
            "ours": (
                "ours: experiment=tagging_turkish_upos",
                lambda: ours(args.quick, work, args.overrides),
            ),
        }
        for key in args.only:
            name, run = peers[key]
            try:
                acc, seconds = run()
            except ImportError as e:
                print(
                    f"{name}: skipped, {e.name} is not installed "
                    '(pip install "seqmodels[tagging-peers]")'
                )
                continue
            except RuntimeError as e:
                print(f"{name}: failed: {e}")
                continue
            rows.append((name, acc, seconds))
            print(f"  done: {name}: {acc:.2f}% in {seconds:.0f} s", flush=True)
    width = max([len(r[0]) for r in rows] + [6])
    print(f"\n{'system':<{width}}  test token acc  train time")
    for name, acc, seconds in rows:
        print(f"{name:<{width}}  {acc:>13.2f}%  {seconds:>8.0f} s")
    print("(ours: the whole command, data and test included; peers: their training alone)")


if __name__ == "__main__":
    main()
