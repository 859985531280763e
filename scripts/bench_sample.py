"""Characters per second of one sampling stream, against the bound it measures itself.

A batch-1 step is a handful of matrix-vector products: every recurrent and
head weight is read once per character, so

    chars/s <= GEMV bandwidth / weight bytes per step.

The bound is measured here, on this machine, by running exactly the GEMVs one
step needs (same matrices, no nonlinearity, no sampling), side by side with
the generators, in interleaved rounds (medians):

- generate(): seqmodels.nn.generation's streaming generator (the folded LSTM stepper),
  prime run once, state carried, O(1) work per character;
- cell stepper: the same generator stepping `encoder.cells` as they are;
- layer, T=1: the seqmodels.nn layer called on one step at a time, state carried;
- window re-run: re-run the model over the last `seq_len` characters for every
  new one (what the classic Keras text-generation example does), same model.

Targets (issue 6): generate() >= 75% of the bound and >= 20x the window re-run.

    .venv/bin/python scripts/bench_sample.py [--hidden 512 --layers 2 --threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from seqmodels.nn.generation import CellStepper, FoldedLSTMStepper, generate, make_stepper
from seqmodels.tasks.language_model import LanguageModel


def rate(fn, n: int) -> float:
    """Characters per second of fn(n), which makes n characters."""
    t = time.perf_counter()
    fn(n)
    return n / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--embedding-dim", type=int, default=64)
    p.add_argument("--vocab", type=int, default=65)  # Tiny Shakespeare's
    p.add_argument("--seq-len", type=int, default=128, help="the window re-run's length")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--chars", type=int, default=300, help="characters per round (fast rows)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    model = LanguageModel(
        {
            "_target_": "seqmodels.nn.LSTM",
            "hidden_size": args.hidden,
            "num_layers": args.layers,
            "engine": "auto",
        },
        vocab_size=args.vocab,
        embedding_dim=args.embedding_dim,
    ).eval()
    V, H = args.vocab, args.hidden
    prime = torch.randint(0, V, (args.seq_len,))

    # -- the bound: exactly the GEMVs of one folded step ----------------------
    stepper = make_stepper(model, None, 0.8)
    assert isinstance(stepper, FoldedLSTMStepper)
    mats = [layer[0] for layer in stepper.layers] + [stepper.head_weight]
    vecs = [torch.randn(m.shape[1]) for m in mats]
    step_bytes = sum(m.shape[0] * m.shape[1] * m.element_size() for m in mats)
    cells = list(model.encoder.cells)
    all_bytes = sum(c.i2h.weight.numel() * 4 for c in cells) + model.head.weight.numel() * 4

    def gemvs(n: int) -> None:
        with torch.no_grad():
            for _ in range(n):
                for m, v in zip(mats, vecs, strict=True):
                    torch.mv(m, v)

    # -- the generators ---------------------------------------------------------
    def folded(n: int) -> None:
        for _ in generate(model, prime[:1], n, temperature=0.8, seed=0):
            pass

    def cell_stepper(n: int) -> None:
        import seqmodels.nn.generation as s

        real = s.make_stepper
        s.make_stepper = lambda m, st, t: CellStepper(m, st, t)
        try:
            for _ in s.generate(model, prime[:1], n, temperature=0.8, seed=0):
                pass
        finally:
            s.make_stepper = real

    def layer_t1(n: int) -> None:
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            token, state = prime[-1:].view(1, 1), None
            for _ in range(n):
                logits, state = model(token, state)
                probs = torch.softmax(logits[0, -1] / 0.8, -1)
                token = torch.multinomial(probs, 1, generator=gen).view(1, 1)
                int(token)

    def window_rerun(n: int) -> None:
        gen = torch.Generator().manual_seed(0)
        window = prime.tolist()
        with torch.no_grad():
            for _ in range(n):
                logits, _ = model(torch.tensor([window[-args.seq_len :]]))
                probs = torch.softmax(logits[0, -1] / 0.8, -1)
                window.append(int(torch.multinomial(probs, 1, generator=gen)))

    rows = {
        "bound (GEMVs only)": (gemvs, args.chars),
        "generate() (folded)": (folded, args.chars),
        "cell stepper": (cell_stepper, args.chars),
        "layer, T=1 per call": (layer_t1, args.chars // 3),
        f"window re-run ({args.seq_len})": (window_rerun, max(3, args.chars // 60)),
    }
    for fn, n in rows.values():  # warm-up: allocator, oneDNN primitives
        fn(max(2, n // 10))
    rates: dict[str, list[float]] = {k: [] for k in rows}
    for _ in range(args.rounds):
        for name, (fn, n) in rows.items():
            rates[name].append(rate(fn, n))
    med = {k: statistics.median(v) for k, v in rates.items()}

    bound = med["bound (GEMVs only)"]
    bandwidth = bound * step_bytes
    fast = med["generate() (folded)"]
    rerun = med[f"window re-run ({args.seq_len})"]
    print(
        f"model: LSTM {args.layers}x{H}, embedding {args.embedding_dim}, vocab {V}; "
        f"torch {torch.__version__}, {args.threads} thread(s), median of {args.rounds} rounds"
    )
    print(
        f"weight bytes per step: {step_bytes / 1e6:.2f} MB read by the folded step "
        f"({all_bytes / 1e6:.2f} MB for all recurrent + head weights, unfolded)"
    )
    print(
        f"GEMV bandwidth: {bandwidth / 1e9:.1f} GB/s -> bound {bound:,.0f} chars/s "
        f"(unfolded weights: {bandwidth / all_bytes:,.0f} chars/s)"
    )
    print()
    print(f"{'generator':34s} {'chars/s':>10s} {'of bound':>9s} {'vs re-run':>9s}")
    for name, r in med.items():
        print(f"{name:34s} {r:10,.0f} {r / bound:9.0%} {r / rerun:8.1f}x")
    print()
    ok_bound, ok_rerun = fast >= 0.75 * bound, fast >= 20 * rerun
    print(f"target >= 75% of bound: {fast / bound:.0%} {'OK' if ok_bound else 'MISSED'}")
    print(f"target >= 20x window re-run: {fast / rerun:.0f}x {'OK' if ok_rerun else 'MISSED'}")


if __name__ == "__main__":
    main()
