"""IMDB benchmark: one run, one table, medians measured side by side.

1. Tokenisation: IMDBDataModule.setup() on the first run (read 50,000 files,
   tokenise, build the vocabulary, write the cache) and with the cache.
   Targets: <= 10 s and <= 1 s.
2. Epoch time of `experiment=imdb_seed` through Lightning (the real
   SequenceClassifier with its logging and metrics) against the same model
   trained by a plain PyTorch loop on the same batches. Target: <= 1.05x.
   The two alternate, so a busy machine slows both alike.

    .venv/bin/python scripts/bench_imdb.py                 # real data from ../shared
    .venv/bin/python scripts/bench_imdb.py --root /path/to/folder/with/aclImdb
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import tarfile
import tempfile
import time

import torch

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO / ".." / "shared" / "data" / "imdb" / "aclImdb_labeled.tar.gz"


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


def compose(root: pathlib.Path, out: pathlib.Path, overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from seqmodels.cli import config_dir

    with initialize_config_dir(config_dir(), version_base="1.3"):
        return hydra_compose(
            "train",
            overrides=["experiment=imdb_seed", f"data.root={root}", f"paths.output_dir={out}",
                       *overrides],
        )


def bench_tokenise(root: pathlib.Path, repeats: int) -> tuple[list[float], list[float]]:
    from seqmodels.data.imdb import IMDBDataModule

    first, cached = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as cache:
            t = time.perf_counter()
            IMDBDataModule(root=str(root), cache_dir=cache).setup("fit")
            first.append(time.perf_counter() - t)
            t = time.perf_counter()
            IMDBDataModule(root=str(root), cache_dir=cache).setup("fit")
            cached.append(time.perf_counter() - t)
    return first, cached


class EpochTimer:
    """Lightning callback: wall time of each training epoch (no validation in it)."""

    def __init__(self):
        import lightning as L

        class _Timer(L.Callback):
            def on_train_epoch_start(cb, trainer, module):
                cb.t = time.perf_counter()

            def on_train_epoch_end(cb, trainer, module):
                self.times.append(time.perf_counter() - cb.t)

        self.times: list[float] = []
        self.callback = _Timer()


def lightning_epoch(cfg, datamodule, limit) -> float:
    import lightning as L
    from hydra.utils import instantiate

    torch.manual_seed(0)
    module = instantiate(cfg.task, _recursive_=False, encoder=cfg.model, **datamodule.model_kwargs)
    timer = EpochTimer()
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_epochs=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        limit_val_batches=0, limit_train_batches=limit or 1.0, callbacks=[timer.callback],
    )
    trainer.fit(module, datamodule=datamodule)
    return timer.times[0]


def plain_epoch(cfg, datamodule, limit) -> float:
    from hydra.utils import instantiate

    torch.manual_seed(0)
    module = instantiate(cfg.task, _recursive_=False, encoder=cfg.model, **datamodule.model_kwargs)
    module.train()
    opt = torch.optim.Adam(module.parameters(), lr=cfg.task.optimizer.lr)
    loader = datamodule.train_dataloader()
    t = time.perf_counter()
    for i, (x, y, lengths) in enumerate(loader):
        if limit and i >= limit:
            break
        loss = torch.nn.functional.cross_entropy(module(x, lengths), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--root", help="folder holding aclImdb/ (default: extract ../shared's copy)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--limit-batches", type=int, default=0, help="train batches per epoch (0: all)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    root = real_root(args.root)

    first, cached = bench_tokenise(root, args.repeats)

    import logging

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as out:
        cfg = compose(root, pathlib.Path(out), [])
        from hydra.utils import instantiate

        datamodule = instantiate(cfg.data)
        datamodule.prepare_data()
        datamodule.setup("fit")
        lit, plain = [], []
        for _ in range(args.repeats):  # alternate: load changes hit both alike
            lit.append(lightning_epoch(cfg, datamodule, args.limit_batches))
            plain.append(plain_epoch(cfg, datamodule, args.limit_batches))

    med = statistics.median
    batches = args.limit_batches or len(datamodule.train_dataloader())
    print(f"\nIMDB benchmark ({args.repeats} repeats, medians, torch threads={args.threads})")
    print(f"{'measure':52s} {'median':>9s} {'target':>8s}")
    print(f"{'tokenise 50,000 reviews, first run (s)':52s} {med(first):9.2f} {'<= 10':>8s}")
    print(f"{'load with the cache (s)':52s} {med(cached):9.2f} {'<= 1':>8s}")
    print(f"{f'imdb_seed epoch, Lightning ({batches} batches) (s)':52s} {med(lit):9.2f}")
    print(f"{'imdb_seed epoch, plain PyTorch loop (s)':52s} {med(plain):9.2f}")
    ratio = med(lit) / med(plain)
    print(f"{'Lightning / plain':52s} {ratio:9.3f} {'<= 1.05':>8s}")
    print(f"raw: first={[round(t, 2) for t in first]} cached={[round(t, 2) for t in cached]} "
          f"lightning={[round(t, 2) for t in lit]} plain={[round(t, 2) for t in plain]}")


if __name__ == "__main__":
    main()
