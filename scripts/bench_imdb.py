"""IMDB benchmark: one run, one table, medians measured side by side.

1. Tokenisation: IMDBDataModule.setup() on the first run (read 50,000 files,
   tokenise, build the vocabulary, write the cache) and with the cache.
   Targets: <= 10 s and <= 1 s.
2. Epoch time of `experiment=imdb_keras` (or --experiment) through Lightning (the real
   SequenceClassifier with its logging and metrics) against the same model
   trained by a plain PyTorch loop on the same batches. Target: <= 1.05x.
   A third row runs Lightning with every self.log a no-op: the cost of
   Lightning's loop alone. The three alternate in short runs (--limit-batches),
   so a busy machine slows them alike, and the ratios are medians of per-round
   ratios; CPU time (process time, all threads) is reported next to wall time
   because on a shared machine it is the steadier of the two.

    .venv/bin/python scripts/bench_imdb.py                 # $SEQMODELS_TEST_DATA/imdb (../shared/data)
    .venv/bin/python scripts/bench_imdb.py --root /path/to/folder/with/aclImdb
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import tarfile
import tempfile
import time

import torch

REPO = pathlib.Path(__file__).resolve().parents[1]
DATA = pathlib.Path(os.environ.get("SEQMODELS_TEST_DATA", REPO.parent / "shared" / "data"))
SHARED = DATA / "imdb" / "aclImdb_labeled.tar.gz"


def real_root(root: str | None) -> pathlib.Path:
    if root:
        return pathlib.Path(root)
    dest = pathlib.Path(tempfile.gettempdir()) / "seqmodels_bench_imdb"
    if not (dest / "aclImdb" / "test" / "pos").is_dir():
        if not SHARED.exists():
            raise SystemExit(f"no data: pass --root, or put the archive at {SHARED}")
        print(f"extracting {SHARED} to {dest} ...", flush=True)
        tmp = pathlib.Path(tempfile.mkdtemp(dir=dest.parent if dest.parent.exists() else None))
        with tarfile.open(SHARED, "r:gz") as tar:
            tar.extractall(tmp, filter="data")
        dest.mkdir(exist_ok=True)
        (tmp / "aclImdb").replace(dest / "aclImdb")
        tmp.rmdir()
    return dest


def compose(experiment: str, root: pathlib.Path, out: pathlib.Path, overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from seqmodels.cli import config_dir

    with initialize_config_dir(config_dir(), version_base="1.3"):
        return hydra_compose(
            "train",
            overrides=[
                f"experiment={experiment}",
                f"data.root={root}",
                f"paths.output_dir={out}",
                *overrides,
            ],
        )


class Clock:
    """Wall and CPU seconds of a block."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def bench_tokenise(root: pathlib.Path, repeats: int) -> tuple[list[Clock], list[Clock]]:
    from seqmodels.data.imdb import IMDBDataModule

    first, cached = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as cache:
            with Clock() as c:
                IMDBDataModule(root=str(root), cache_dir=cache).setup("fit")
            first.append(c)
            with Clock() as c:
                IMDBDataModule(root=str(root), cache_dir=cache).setup("fit")
            cached.append(c)
    return first, cached


class EpochTimer:
    """Lightning callback: wall time of each training epoch (no validation in it)."""

    def __init__(self):
        import lightning as L

        class _Timer(L.Callback):
            def on_train_epoch_start(cb, trainer, module):
                cb.clock = Clock().__enter__()

            def on_train_epoch_end(cb, trainer, module):
                cb.clock.__exit__()
                self.times.append(cb.clock)

        self.times: list[Clock] = []
        self.callback = _Timer()


def lightning_epoch(cfg, datamodule, limit, log=True) -> Clock:
    import lightning as L
    from hydra.utils import instantiate

    torch.manual_seed(0)
    module = instantiate(cfg.task, _recursive_=False, encoder=cfg.model, **datamodule.model_kwargs)
    if not log:  # Lightning's own loop alone: every self.log becomes a no-op
        module.log = lambda *args, **kwargs: None
    timer = EpochTimer()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        limit_train_batches=limit or 1.0,
        callbacks=[timer.callback],
    )
    trainer.fit(module, datamodule=datamodule)
    return timer.times[0]


def plain_epoch(cfg, datamodule, limit) -> Clock:
    from hydra.utils import instantiate

    torch.manual_seed(0)
    module = instantiate(cfg.task, _recursive_=False, encoder=cfg.model, **datamodule.model_kwargs)
    module.train()
    opt = instantiate(cfg.task.optimizer, params=list(module.parameters()))
    loader = datamodule.train_dataloader()
    with Clock() as clock:
        for i, (x, y, lengths) in enumerate(loader):
            if limit and i >= limit:
                break
            loss = torch.nn.functional.cross_entropy(module(x, lengths), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return clock


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--root", help="folder holding aclImdb/ (default: extract $SEQMODELS_TEST_DATA/imdb's copy)"
    )
    p.add_argument("--repeats", type=int, default=3, help="tokenisation runs")
    p.add_argument("--epoch-repeats", type=int, default=5, help="alternating training runs")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--experiment", default="imdb_keras", help="the recipe whose model is timed")
    p.add_argument(
        "--limit-batches",
        type=int,
        default=200,
        help="train batches per timed run (0: the whole epoch, 704 batches)",
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    root = real_root(args.root)

    first, cached = bench_tokenise(root, args.repeats)

    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as out:
        cfg = compose(args.experiment, root, pathlib.Path(out), [])
        from hydra.utils import instantiate

        datamodule = instantiate(cfg.data)
        datamodule.prepare_data()
        datamodule.setup("fit")
        lightning_epoch(cfg, datamodule, 5)  # warm-up: first-call allocations, lazy imports
        lightning_epoch(cfg, datamodule, 5, log=False)
        plain_epoch(cfg, datamodule, 5)
        lit, nolog, plain = [], [], []
        for _ in range(args.epoch_repeats):  # alternate: load changes hit all alike
            lit.append(lightning_epoch(cfg, datamodule, args.limit_batches))
            nolog.append(lightning_epoch(cfg, datamodule, args.limit_batches, log=False))
            plain.append(plain_epoch(cfg, datamodule, args.limit_batches))

    def med(clocks: list[Clock], attr: str) -> float:
        return statistics.median(getattr(c, attr) for c in clocks)

    batches = args.limit_batches or len(datamodule.train_dataloader())
    full = len(datamodule.train_dataloader()) / batches  # scale a run to a whole epoch
    print(
        f"\nIMDB benchmark (medians; tokenise x{args.repeats}, training x{args.epoch_repeats} "
        f"alternating runs of {batches} batches; torch threads={args.threads})"
    )
    print(f"{'measure':44s} {'wall s':>8s} {'cpu s':>8s} {'target':>8s}")
    rows = [
        ("tokenise 50,000 reviews, first run", first, 1, "<= 10"),
        ("load with the cache", cached, 1, "<= 1"),
        (f"{args.experiment} epoch, Lightning", lit, full, ""),
        (f"{args.experiment} epoch, Lightning, no self.log", nolog, full, ""),
        (f"{args.experiment} epoch, plain PyTorch loop", plain, full, ""),
    ]
    for name, clocks, scale, target in rows:
        print(
            f"{name:44s} {med(clocks, 'wall') * scale:8.2f} {med(clocks, 'cpu') * scale:8.2f} "
            f"{target:>8s}"
        )

    def ratio(a: list[Clock], b: list[Clock], attr: str) -> float:
        """Median over rounds of a/b within the same round: drift between rounds cancels."""
        return statistics.median(
            getattr(x, attr) / getattr(y, attr) for x, y in zip(a, b, strict=True)
        )

    for name, clocks, target in (
        ("Lightning / plain", lit, "<= 1.05"),
        ("Lightning without self.log / plain", nolog, ""),
    ):
        print(
            f"{name:44s} {ratio(clocks, plain, 'wall'):8.3f} {ratio(clocks, plain, 'cpu'):8.3f} "
            f"{target:>8s}"
        )
    print(
        "raw wall s per run: "
        + "; ".join(
            f"{key}={[round(c.wall, 2) for c in cl]}"
            for key, (_, cl, _, _) in zip(
                ("first", "cached", "lightning", "nolog", "plain"), rows, strict=True
            )
        )
    )


if __name__ == "__main__":
    main()
