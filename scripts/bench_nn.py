"""Benchmark seqmodels.nn engines against torch.nn: fwd+bwd time, ratios, GFLOP/s.

    .venv/bin/python scripts/bench_nn.py            # CPU (and CUDA when present)
    .venv/bin/python scripts/bench_nn.py --quick    # fewer repeats
    .venv/bin/python scripts/bench_nn.py --case a   # only the (a) cases

Cases:
  (a) B64 T100 I128 H256, unidirectional, no lengths: LSTM and GRU, and a cell of
      one's own, the peephole LSTM (seqmodels.nn.PeepholeLSTMCell, in a Recurrent
      layer), against torch.nn.LSTM of the same size;
  (b) LSTM and GRU, bidirectional, B64 T256 I128 H128, lengths uniform in [T/2, T],
      against torch.nn on the same padded batch without lengths.
The built-in LSTM's fused engine runs its hand-written recurrence; the row
"fused:any-cell" runs the same LSTM step on the recurrence every other cell
runs on (a subclass that overrides `step`), to show what that one costs.
The `compiled` rows (the LSTM and the peephole LSTM) run that recurrence with
K steps per torch.compile'd call (seqmodels/nn/compiled.py); their first pass
compiles, and the table's "compile s" is that pass's time less a timed one.
Every time is the median of N fwd+bwd passes measured in this one run, with
torch.nn measured side by side (interleaved, one pass of each per round); the
ratio is the median over rounds of engine/torch.nn in the same round, so load
from other processes hits both sides alike ("best/best" = fastest over fastest).
GFLOP/s counts the recurrent GEMMs only (fwd 2*B*T*(I+H)*G*H per layer and
direction, fwd+bwd 3x that) and is compared to a square fp32 torch.matmul's
peak measured here. The targets are issue 28's (the fused LSTM <= 1.0, a cell of one's own
<= 1.2 on (a), at 2 threads and at 1, on AVX2 and AVX-512 CPUs alike) and issue 2's; the
script names the CPU and its vector width first.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from seqmodels.nn import GRU, LSTM, LSTMCell, PeepholeLSTMCell, Recurrent  # noqa: E402
from seqmodels.nn.auto import choose_engine  # noqa: E402

GATES = {"LSTM": 4, "GRU": 3}


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def cpu_name() -> str:
    """The CPU model and its widest vector unit, from /proc/cpuinfo (Linux), or what
    the platform module knows."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    model = next(
        (ln.split(":", 1)[1].strip() for ln in info.splitlines() if "model name" in ln), ""
    )
    flags = next(
        (ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), []
    )
    width = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{model or 'unknown CPU'} ({width})"


def gemm_peak(device: str, n: int = 1024, reps: int = 20) -> float:
    """GFLOP/s of a square fp32 torch.matmul on this device with the current thread count."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(reps):
        sync(device)
        t0 = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / min(times) / 1e9  # the best run: a peak, not a typical time


class StepLSTMCell(LSTMCell):
    """The LSTM's step as a cell of one's own: the fused engine runs it on its recurrence
    for any cell instead of the built-in LSTM's hand-written one."""

    def step(self, gates, state):
        return super().step(gates, state)


def step_fn(module, x, lengths):
    def run():
        out, s = module(x) if lengths is None else module(x, lengths=lengths)
        h = s[0] if isinstance(s, tuple) else s
        (out.sum() + h.sum()).backward()
        for p in module.parameters():
            p.grad = None

    return run


def layer_runs(cls, ref, x, lengths):
    """{label: fwd+bwd runner} for every engine of the layer, and auto's choice."""
    runs, picked = {}, ""
    if cls is PeepholeLSTMCell:  # a cell of one's own: no torch kernel, no from_torch
        for e in ("loop", "fused", "compiled", "auto"):
            m = Recurrent(
                PeepholeLSTMCell,
                ref.input_size,
                ref.hidden_size,
                batch_first=True,
                bidirectional=ref.bidirectional,
                engine=e,
            ).to(x.device)
            runs[e] = step_fn(m, x, lengths)
        return runs, choose_engine(m, x, lengths)
    for e in ("loop", "fused", "compiled", "native", "auto"):
        if e == "compiled" and cls is not LSTM:  # the compiled rows: the LSTM and a user's cell
            continue
        m = cls.from_torch(ref, engine=e)
        if e == "native" and m.native_kernel() is None:
            continue
        runs[e] = step_fn(m, x, lengths)
        if e == "auto":
            picked = choose_engine(m, x, lengths)
        if e == "fused" and cls is LSTM:  # the LSTM's step on the recurrence for any cell
            anycell = Recurrent(
                StepLSTMCell,
                ref.input_size,
                ref.hidden_size,
                batch_first=True,
                bidirectional=ref.bidirectional,
                engine="fused",
            ).to(x.device)
            anycell.load_state_dict(m.state_dict())
            runs["fused:any-cell"] = step_fn(anycell, x, lengths)
    return runs, picked


def bench_case(name, cls, B, T, I, H, bi, with_lengths, device, reps, warmup):  # noqa: E741
    torch.manual_seed(0)
    torch_name = "LSTM" if cls is PeepholeLSTMCell else cls.__name__
    ref = getattr(torch.nn, torch_name)(I, H, batch_first=True, bidirectional=bi).to(device)
    x = torch.randn(B, T, I, device=device, requires_grad=True)
    lengths = torch.randint(T // 2, T + 1, (B,), device=device) if with_lengths else None
    runs = {"torch.nn": step_fn(ref, x, None)}  # padded torch.nn: the baseline cost
    engine_runs, picked = layer_runs(cls, ref, x, lengths)
    runs.update(engine_runs)
    first: dict[str, float] = {}
    for k, fn in runs.items():  # warm up (allocator, oneDNN primitives; compiling)
        for n in range(max(warmup, 2)):
            t0 = time.perf_counter()
            fn()
            if n == 0:
                first[k] = time.perf_counter() - t0
            elif n == 1:
                first[k] -= time.perf_counter() - t0
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(reps):  # interleaved: drift hits every engine alike
        for k, fn in runs.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[k].append(time.perf_counter() - t0)
    D = 2 if bi else 1
    flops = 3 * 2 * B * T * (I + H) * GATES[torch_name] * H * D
    med = {k: statistics.median(v) for k, v in times.items()}
    base = times["torch.nn"]
    rows = []
    for k, t in med.items():
        label = k if k != "auto" else f"auto->{picked}"
        # ratio: median over rounds of (engine / torch.nn in the same round), so a load
        # spike on a shared machine hits both sides of a ratio alike
        ratio = statistics.median(a / b for a, b in zip(times[k], base, strict=True))
        best = min(times[k]) / min(base)
        ratios = [a / b for a, b in zip(times[k], base, strict=True)]
        spread = f"{min(ratios):.2f}-{max(ratios):.2f}"
        compile_s = f"{first[k]:.0f}" if k == "compiled" else ""
        rows.append((name, label, t * 1e3, ratio, spread, best, flops / t / 1e9, compile_s))
    return rows


CASES = {
    "a": [
        ("(a) LSTM B64 T100 I128 H256", LSTM, 64, 100, 128, 256, False, False),
        ("(a) peephole LSTM (own cell), same", PeepholeLSTMCell, 64, 100, 128, 256, False, False),
        ("(a) GRU  B64 T100 I128 H256", GRU, 64, 100, 128, 256, False, False),
    ],
    "b": [
        ("(b) LSTM bi+len B64 T256 I128 H128", LSTM, 64, 256, 128, 128, True, True),
        ("(b) GRU  bi+len B64 T256 I128 H128", GRU, 64, 256, 128, 128, True, True),
    ],
}
TARGETS = {
    ("(a) LSTM", "fused"): "<= 1.0",
    ("(a) LSTM", "compiled"): "<= 1.0",
    ("(a) peephole", "fused"): "<= 1.2",
    ("(a) peephole", "compiled"): "<= 1.2",
    ("(a) peephole", "auto"): "<= 1.2",
    ("(b) LSTM", "auto"): "<= 1.15",
    ("(b) GRU", "auto"): "<= 1.15",
}


def target(name: str, label: str) -> str:
    for (case, engine), want in TARGETS.items():
        if name.startswith(case) and (label == engine or label.startswith(engine + "->")):
            return want
    return ""


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
    ap.add_argument("--case", action="append", choices=sorted(CASES), help="default: all")
    ap.add_argument(
        "--device", action="append", help="cpu and/or cuda (default: cpu, cuda if present)"
    )
    args = ap.parse_args()
    if args.quick:
        args.reps, args.warmup = 5, 2
    torch.set_num_threads(args.threads)
    devices = args.device or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    print(
        f"torch {torch.__version__}, {cpu_name()}, {args.threads} CPU threads, "
        f"median of {args.reps} fwd+bwd passes"
    )
    for device in devices:
        peak = gemm_peak(device)
        print(f"\n[{device}] GEMM peak (1024^3 fp32, measured): torch.matmul {peak:.1f} GFLOP/s")
        print(
            f"| {'case':36} | {'engine':18} | {'ms':>8} | {'x torch.nn':>10} | {'range':>9} "
            f"| {'(best/best)':>11} | {'GFLOP/s':>8} | {'% peak':>6} | target | compile s |"
        )
        print(
            f"|{'-' * 38}|{'-' * 20}|{'-' * 10}|{'-' * 12}|{'-' * 11}|{'-' * 13}|{'-' * 10}"
            f"|{'-' * 8}|--------|-----------|"
        )
        for key in args.case or sorted(CASES):
            for case in CASES[key]:
                for name, label, ms, ratio, spread, best, gf, compile_s in bench_case(
                    *case, device, args.reps, args.warmup
                ):
                    print(
                        f"| {name:36} | {label:18} | {ms:8.1f} | {ratio:10.2f} | {spread:>9} "
                        f"| {best:11.2f} | {gf:8.1f} | {100 * gf / peak:5.0f}% "
                        f"| {target(name, label):6} | {compile_s:>9} |",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
