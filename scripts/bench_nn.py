"""Benchmark seqmodels.nn engines against torch.nn: fwd+bwd time, ratios, GFLOP/s.

    .venv/bin/python scripts/bench_nn.py            # CPU (and CUDA when present)
    .venv/bin/python scripts/bench_nn.py --quick    # fewer repeats

Cases (from issue 2):
  (a) LSTM and GRU, B64 T100 I128 H256, unidirectional, no lengths;
  (b) LSTM and GRU, bidirectional, B64 T256 I128 H128, lengths uniform in [T/2, T],
      against torch.nn on the same padded batch without lengths.
Every time is the median of N fwd+bwd passes measured in this one run, with
torch.nn measured side by side (interleaved, one pass of each per round); the
ratio is the median over rounds of engine/torch.nn in the same round, so load
from other processes hits both sides alike ("best/best" = fastest over fastest).
GFLOP/s counts the recurrent GEMMs only (fwd 2*B*T*(I+H)*G*H per layer and
direction, fwd+bwd 3x that) and is compared to a GEMM peak measured here: the
best of torch.matmul (MKL on x86 CPUs) and, on CPU, oneDNN's matmul, which the
fused engine uses (seqmodels/nn/gemm.py); both are printed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from seqmodels.nn import GRU, LSTM, gemm  # noqa: E402
from seqmodels.nn.auto import choose_engine  # noqa: E402
from seqmodels.nn.gemm import StepLinear  # noqa: E402

GATES = {"LSTM": 4, "GRU": 3}


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def gemm_peak(device: str, onednn: bool = False, n: int = 1024, reps: int = 20) -> float:
    """GFLOP/s of a square fp32 matmul on this device with the current thread count:
    torch.matmul, or oneDNN's (gemm.StepLinear) with onednn=True."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    product = StepLinear(b, None, n) if onednn else b.t().__rmatmul__
    for _ in range(3):
        product(a)
    times = []
    for _ in range(reps):
        sync(device)
        t0 = time.perf_counter()
        product(a)
        sync(device)
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / min(times) / 1e9  # the best run: a peak, not a typical time


def step_fn(module, x, lengths):
    def run():
        out, s = module(x) if lengths is None else module(x, lengths=lengths)
        h = s[0] if isinstance(s, tuple) else s
        (out.sum() + h.sum()).backward()
        for p in module.parameters():
            p.grad = None

    return run


def bench_case(name, cls, B, T, I, H, bi, with_lengths, device, reps, warmup):  # noqa: E741
    torch.manual_seed(0)
    ref = getattr(torch.nn, cls.__name__)(I, H, batch_first=True, bidirectional=bi).to(device)
    x = torch.randn(B, T, I, device=device, requires_grad=True)
    lengths = torch.randint(T // 2, T + 1, (B,), device=device) if with_lengths else None
    engines = ["loop", "fused", "native", "auto"]
    runs = {"torch.nn": step_fn(ref, x, None)}  # padded torch.nn: the baseline cost
    picked = {}
    for e in engines:
        m = cls.from_torch(ref, engine=e)
        if e == "native" and m.native_kernel() is None:
            continue
        runs[e] = step_fn(m, x, lengths)
        if e == "auto":
            picked[e] = choose_engine(m, x, lengths)
    for fn in runs.values():  # warm up (compiles, allocator, oneDNN primitives)
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(reps):  # interleaved: drift hits every engine alike
        for k, fn in runs.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[k].append(time.perf_counter() - t0)
    D = 2 if bi else 1
    flops = 3 * 2 * B * T * (I + H) * GATES[cls.__name__] * H * D
    med = {k: statistics.median(v) for k, v in times.items()}
    base = times["torch.nn"]
    rows = []
    for k, t in med.items():
        label = k if k != "auto" else f"auto->{picked['auto']}"
        # ratio: median over rounds of (engine / torch.nn in the same round), so a load
        # spike on a shared machine hits both sides of a ratio alike
        ratio = statistics.median(a / b for a, b in zip(times[k], base, strict=True))
        best = min(times[k]) / min(base)
        rows.append((name, label, t * 1e3, ratio, best, flops / t / 1e9))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=2,
        help="torch.set_num_threads (CPU); use 1 on a loaded machine",
    )
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="5 repeats, 2 warm-ups")
    ap.add_argument(
        "--device", action="append", help="cpu and/or cuda (default: cpu, cuda if present)"
    )
    args = ap.parse_args()
    if args.quick:
        args.reps, args.warmup = 5, 2
    torch.set_num_threads(args.threads)
    devices = args.device or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    print(
        f"torch {torch.__version__}, {args.threads} CPU threads, median of {args.reps} fwd+bwd passes"
    )
    for device in devices:
        peak = gemm_peak(device)
        line = f"\n[{device}] GEMM peak (1024^3 fp32, measured): torch.matmul {peak:.1f} GFLOP/s"
        if device == "cpu" and gemm.use_onednn(torch.empty(1024, 1024), 1024):
            onednn = gemm_peak(device, onednn=True)
            line += f", oneDNN {onednn:.1f} GFLOP/s (% peak: of the higher)"
            peak = max(peak, onednn)
        print(line)
        cases = [
            ("(a) LSTM B64 T100 I128 H256", LSTM, 64, 100, 128, 256, False, False),
            ("(a) GRU  B64 T100 I128 H256", GRU, 64, 100, 128, 256, False, False),
            ("(b) LSTM bi+len B64 T256 I128 H128", LSTM, 64, 256, 128, 128, True, True),
            ("(b) GRU  bi+len B64 T256 I128 H128", GRU, 64, 256, 128, 128, True, True),
        ]
        print(
            f"| {'case':36} | {'engine':14} | {'ms':>8} | {'x torch.nn':>10} "
            f"| {'(best/best)':>11} | {'GFLOP/s':>8} | {'% peak':>6} |"
        )
        print(f"|{'-' * 38}|{'-' * 16}|{'-' * 10}|{'-' * 12}|{'-' * 13}|{'-' * 10}|{'-' * 8}|")
        for case in cases:
            for name, eng, ms, ratio, best, gf in bench_case(*case, device, args.reps, args.warmup):
                print(
                    f"| {name:36} | {eng:14} | {ms:8.1f} | {ratio:10.2f} | {best:11.2f} "
                    f"| {gf:8.1f} | {100 * gf / peak:5.0f}% |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
