"""The LSTM engines on the shapes of the LSTM recipes: fwd+bwd time per engine, side by side.

    .venv/bin/python scripts/bench_lstm.py                 # 2 threads
    .venv/bin/python scripts/bench_lstm.py --threads 1 --case mnist_pixel
    .venv/bin/python scripts/bench_lstm.py --case mnist_pixel --engines native,fused,compiled

Each case is the recurrent layer of a recipe in configs/experiment (batch, steps,
input and hidden size, layers) with the loss its task puts on it: the classifiers
(pooling=last) use the final h only, the language model every output. Times are
medians over rounds in which every engine runs once (interleaved, so load from
other processes hits all alike); the ratio is the median over rounds of
engine / native in the same round, and "best/best" the fastest round of each
over the fastest of native (on a loaded machine, the closest to an idle one).
CPU denormals are flushed, as in training. An engine's first pass (warm-up) is
timed too: for `compiled` it compiles ("first s"). Issue 28's target, printed
beside it: pixel MNIST at <= 0.5x native's time.
This is the evidence behind auto's LSTM rule (seqmodels/nn/auto.py).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_nn import cpu_name  # noqa: E402

from seqmodels.nn import LSTM  # noqa: E402

# name: (batch, steps, input_size, hidden_size, num_layers, loss on)
CASES = {
    "mnist_pixel": (128, 784, 1, 128, 1, "h"),
    "mnist_pixel_permuted": (128, 784, 1, 256, 1, "h"),
    "mnist_row": (128, 28, 28, 128, 2, "h"),
    "chargen_shakespeare": (64, 100, 64, 256, 2, "out"),
    "parity_long": (64, 20, 8, 32, 1, "h"),
}


def step_fn(layer, x, loss_on):
    def run():
        out, (h, _) = layer(x)
        (out.square().sum() if loss_on == "out" else h[-1].square().sum()).backward()
        for p in layer.parameters():
            p.grad = None

    return run


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--case", action="append", choices=sorted(CASES), help="default: all")
    ap.add_argument("--engines", default="native,fused", help="comma-separated; first = baseline")
    args = ap.parse_args()
    torch.set_flush_denormal(True)  # before any thread pool starts: its threads inherit it
    torch.set_num_threads(args.threads)
    engines = args.engines.split(",")
    print(
        f"torch {torch.__version__}, {cpu_name()}, {args.threads} threads, "
        f"median of {args.rounds} rounds"
    )
    print(
        f"| {'case':22} | {'engine':8} | {'ms':>8} | {'x ' + engines[0]:>9} | {'range':>9} "
        "| best/best | first s | target |"
    )
    print(f"|{'-' * 24}|{'-' * 10}|{'-' * 10}|{'-' * 11}|{'-' * 11}|{'-' * 11}|---------|--------|")
    for name in args.case or list(CASES):
        B, T, I, H, L, loss_on = CASES[name]  # noqa: E741
        torch.manual_seed(0)
        ref = LSTM(I, H, num_layers=L)
        x = torch.randn(B, T, I)
        runs = {}
        for e in engines:
            layer = LSTM(I, H, num_layers=L, engine=e)
            layer.load_state_dict(ref.state_dict())
            runs[e] = step_fn(layer, x, loss_on)
        first = {}
        for e, fn in runs.items():  # warm up: kept buffers, oneDNN primitives, compiling
            t0 = time.perf_counter()
            fn()
            first[e] = time.perf_counter() - t0
        times: dict[str, list[float]] = {e: [] for e in runs}
        for _ in range(args.rounds):
            for e, fn in runs.items():
                t0 = time.perf_counter()
                fn()
                times[e].append(time.perf_counter() - t0)
        base = times[engines[0]]
        for e, t in times.items():
            ratios = [a / b for a, b in zip(t, base, strict=True)]
            ratio, spread = statistics.median(ratios), f"{min(ratios):.2f}-{max(ratios):.2f}"
            ms, best = statistics.median(t) * 1e3, min(t) / min(base)
            want = "<= 0.5" if name == "mnist_pixel" and e != engines[0] else ""
            print(
                f"| {name:22} | {e:8} | {ms:8.1f} | {ratio:9.2f} | {spread:>9} | {best:9.2f} "
                f"| {first[e]:7.1f} | {want:6} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
