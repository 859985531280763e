"""Training steps eager vs `compile=true`, and what the compilation costs, side by side.

For each recipe, builds the datamodule and task module as seqmodels-train does
(same seed), then trains `--steps` optimizer steps through Lightning twice:
eager, and with the task module's forward compiled (train.compile_module, what
`compile=true` does). Prints the median step time of each after `--warmup`
untimed steps, the speed-up (eager step / compiled step), the compile time (the
compiled run's first steps minus the eager run's, with torch's compile caches
empty, as on a new machine) and the steps after which compiling has paid for
itself.

    python scripts/bench_compile.py                                   # the LSTM recipes below
    python scripts/bench_compile.py --recipe "experiment=mnist_row data.root=<MNIST folder>"

Without `--recipe`: the default parity run, `experiment=mnist_row` and
`experiment=chargen_shakespeare` on small stand-ins (synthetic digits, a
generated text) unless `--data` names a folder with `mnist/` and
`tinyshakespeare/input.txt`: the step shapes are the recipes' own either way.
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

# A first compilation, as a new run on a new machine pays it: no kernels or graphs
# cached by an earlier run (torch keeps them under /tmp across processes).
if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench_compile_")
    atexit.register(shutil.rmtree, os.environ["TORCHINDUCTOR_CACHE_DIR"], ignore_errors=True)
os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "0")
os.environ.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "0")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def recipes(data: Path | None, scratch: Path) -> dict[str, list[str]]:
    """name -> overrides, on real data when `data` has it, else on small stand-ins."""
    from seqmodels.data.idx import write_idx
    from seqmodels.data.mnist import FILES

    mnist = data / "mnist" if data and (data / "mnist").is_dir() else None
    text = data / "tinyshakespeare" / "input.txt" if data else None
    if mnist is None:
        import numpy as np

        mnist = scratch / "mnist"
        rng = np.random.default_rng(0)
        for split, n in (("train", 6400), ("test", 256)):
            images, labels = FILES[split]
            write_idx(mnist / images, rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
            write_idx(mnist / labels, (np.arange(n) % 10).astype(np.uint8))
    if text is None or not text.is_file():
        text = scratch / "input.txt"
        words = ["to", "be", "or", "not", "that", "is", "the", "question", "ROMEO:", "\n"]
        gen = torch.Generator().manual_seed(0)
        text.write_text(
            " ".join(words[int(i)] for i in torch.randint(0, 10, (60000,), generator=gen))
        )
    return {
        "parity (default)": [],
        "mnist_row": ["experiment=mnist_row", f"data.root={mnist}", "data.verify=false"],
        "chargen_shakespeare": ["experiment=chargen_shakespeare", f"data.path={text}"],
    }


def time_steps(overrides: list[str], compiled: bool, steps: int, warmup: int, out: str):
    """(every step's seconds, warmup included) for one recipe, eager or compiled."""
    import lightning as L
    from hydra import compose, initialize_config_dir

    from seqmodels.cli import config_dir
    from seqmodels.train import build, set_numerics

    torch._dynamo.reset()
    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = compose(
            "train", overrides=[f"paths.output_dir={out}", f"compile={compiled}", *overrides]
        )
    set_numerics(cfg)
    L.seed_everything(cfg.seed, verbose=False)
    datamodule, module = build(cfg)
    times: list[float] = []

    class StepTimer(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.start = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            times.append(time.perf_counter() - self.start)

    trainer_cfg = {k: v for k, v in cfg.trainer.items() if k != "_target_"}
    trainer_cfg.update(
        max_epochs=1,
        max_steps=-1,
        max_time=None,
        fast_dev_run=False,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        limit_train_batches=warmup + steps,
        callbacks=[StepTimer()],
        accelerator="cpu",
    )
    L.Trainer(**trainer_cfg).fit(module, datamodule=datamodule)
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--recipe",
        action="append",
        default=[],
        help="overrides of one recipe, in one string (repeatable)",
    )
    p.add_argument("--data", type=Path, default=None, help="a folder with mnist/, tinyshakespeare/")
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (compiling)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

    with tempfile.TemporaryDirectory() as scratch:
        runs = (
            {r: r.split() for r in args.recipe}
            if args.recipe
            else recipes(args.data, Path(scratch))
        )
        print(
            f"torch {torch.__version__}, {torch.get_num_threads()} threads; median of "
            f"{args.steps} training steps after {args.warmup}"
        )
        print("| recipe | eager step | compiled step | speed-up | compile time | pays after |")
        print("|---|---|---|---|---|---|")
        for name, overrides in runs.items():
            eager = time_steps(overrides, False, args.steps, args.warmup, scratch)
            e = statistics.median(eager[args.warmup :])
            try:
                compiled = time_steps(overrides, True, args.steps, args.warmup, scratch)
            except Exception as err:  # a model torch.compile cannot train: say so, go on
                first = (str(err).strip().splitlines() or [""])[0][:100]
                print(
                    f"| {name} | {e * 1000:.1f} ms | fails: {type(err).__name__}: {first} | | | |"
                )
                continue
            c = statistics.median(compiled[args.warmup :])
            # The compiled run's warm-up steps hold the compilation (and any recompilation
            # for a new shape in them); the eager run's the same steps' ordinary work.
            cost = sum(compiled[: args.warmup]) - sum(eager[: args.warmup])
            pays = f"{cost / (e - c):,.0f} steps" if c < e else "never"
            print(
                f"| {name} | {e * 1000:.1f} ms | {c * 1000:.1f} ms | {e / c:.2f}x | "
                f"{cost:.0f} s | {pays} |"
            )


if __name__ == "__main__":
    main()
