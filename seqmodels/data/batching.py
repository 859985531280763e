"""Batching for any task: the epoch's order from (seed, epoch), per-process shares
under DDP, and length-bucketed batches of variable-length token sequences.

The training order depends only on (seed, epoch), never on a global RNG, so a
run resumed from the checkpoint of epoch k sees exactly the batches the
uninterrupted run saw in epoch k + 1. Lightning calls `set_epoch` on a
DataLoader's `sampler` and on its `batch_sampler.sampler` before every epoch.

Resuming in the middle of an epoch: every DataLoader is made by `data_loader()`,
torchdata's `StatefulDataLoader`. Lightning stores a stateful loader's
`state_dict()` in every checkpoint (the fit loop's `combined_loader` entry) and
hands it back to `load_state_dict()` on resume; the loader asks its sampler (or
its iterable dataset) for theirs. The samplers here say where they are: the
epoch and how many items (indices, or batches for `BucketBatchSampler`) of it
were served, so the resumed loader serves the rest of that epoch's order, the
same batches in the same order. A checkpoint written at the end of an epoch
resumes at the start of the next one. Under workers, torchdata counts only the
batches the training loop took, not those the workers prefetched.

Under DDP the datamodules shard their own data (the trainer runs with
`use_distributed_sampler: false`): every index goes to exactly one process.
Training shares are cut to the same size (DDP steps all processes together);
evaluation shares are not, so validation and test metrics count every example
exactly once (torchmetrics sums their states across processes).
"""

from __future__ import annotations

import os
import signal
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from lightning.fabric.utilities.seed import pl_worker_init_function
from torch.utils.data import Dataset, Sampler
from torchdata.stateful_dataloader import StatefulDataLoader

from seqmodels.errors import UserError

PAD = 0  # the token id batches are padded with
TRUNCATION = ("first", "last", "head+tail")


def run_seed() -> int:
    """The run's seed, as `lightning.seed_everything` recorded it (0 without one)."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


def loader_generator() -> torch.Generator:
    """A DataLoader's own generator, for every DataLoader the datamodules make.

    Without one, every `iter(loader)` draws its worker seed from torch's global
    generator, so the moment Lightning creates an iterator (which differs
    between a run and its resumption) would shift the dropout masks after it.
    """
    return torch.Generator().manual_seed(run_seed())


def worker_init(worker_id: int) -> None:
    """Each loader worker's start: Ctrl-C is left to the main process, and Lightning's
    worker seeding runs as it would have (`seed_everything(workers=True)`).

    Ctrl-C reaches every process of the terminal's process group. A worker that died of
    it would end the run with "DataLoader worker exited unexpectedly" before the main
    process saves the step it stopped at (seqmodels.preemption); the main process stops
    its workers itself. Lightning adds its own worker_init_fn only to a loader without
    one, so this one calls it.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if int(os.environ.get("PL_SEED_WORKERS", 0)):
        pl_worker_init_function(worker_id)


def data_loader(dataset: Any, **kwargs: Any) -> StatefulDataLoader:
    """The DataLoader every datamodule makes: resumable mid-epoch (see the module
    docstring), with its own generator (`loader_generator`) and, with workers,
    `worker_init`. Takes DataLoader's arguments."""
    if kwargs.get("num_workers"):
        kwargs.setdefault("worker_init_fn", worker_init)
    with warnings.catch_warnings():  # torchdata calls a torch API deprecated in torch 2.13
        warnings.filterwarnings("ignore", message=".*set_vital.*")
        return StatefulDataLoader(dataset, generator=loader_generator(), **kwargs)


class Resumable:
    """Where an epoch's order stands: `served` items of epoch `epoch`.

    `state_dict()` says so; `load_state_dict()` makes the next pass over that
    epoch skip what was served (a finished epoch resumes at the next one's
    start). A pass over any other epoch, set later by `set_epoch`, starts at 0.
    Subclasses give `epoch`, `_set_epoch` and `__len__`, and iterate through `_pass`.
    """

    epoch: int
    _served: tuple[int, int] = (0, 0)  # (epoch, items served of it)
    _resume: tuple[int, int] | None = None

    def __len__(self) -> int:
        raise NotImplementedError

    def _set_epoch(self, epoch: int) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, int]:
        epoch, served = self._served
        return {"epoch": self.epoch, "served": served if epoch == self.epoch else 0}

    def load_state_dict(self, state: dict[str, int]) -> None:
        epoch, served = int(state["epoch"]), int(state["served"])
        if served >= len(self):
            epoch, served = epoch + 1, 0
        self._set_epoch(epoch)
        self._resume = self._served = (epoch, served)

    def _pass(self, items: Sequence[Any]) -> Iterator[Any]:
        """Serve this epoch's `items`, from the resumed position when there is one."""
        resume, self._resume = self._resume, None
        start = resume[1] if resume is not None and resume[0] == self.epoch else 0
        for n, item in enumerate(items[start:], start + 1):
            self._served = (self.epoch, n)
            yield item


def process_share(trainer: Any) -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) outside a distributed trainer."""
    if trainer is None:
        return 0, 1
    return int(trainer.global_rank), int(trainer.world_size)


def split_sampler(n: int, train: bool, trainer: Any) -> EpochSampler:
    """A split's sampler: for training shuffled by (seed, epoch) into equal per-process
    shares; for evaluation in order, every example read by exactly one process."""
    rank, world = process_share(trainer)
    return EpochSampler(n, shuffle=train, seed=run_seed(), rank=rank, world_size=world, even=train)


class EpochSampler(Resumable, Sampler[int]):
    """The indices of `n` items that process `rank` of `world_size` reads in one epoch.

    shuffle=True orders them by a permutation drawn from `seed + epoch` (as
    torch's DistributedSampler does); shuffle=False keeps 0..n-1. Process
    `rank` takes every `world_size`-th index of that order. `even=True` cuts
    every share to n // world_size items (training under DDP); the few left
    out differ from epoch to epoch. Resumable mid-epoch (`Resumable`).
    """

    def __init__(
        self,
        n: int,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        even: bool = False,
    ) -> None:
        self.n, self.shuffle, self.seed = n, shuffle, seed
        self.rank, self.world_size, self.even = rank, world_size, even
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def generator(self, stream: int = 0) -> torch.Generator:
        """A generator for this epoch's randomness; `stream` separates independent uses."""
        return torch.Generator().manual_seed((self.seed + self.epoch) * 1009 + stream)

    def indices(self) -> torch.Tensor:
        order = torch.randperm(self.n, generator=self.generator()) if self.shuffle else None
        order = torch.arange(self.n) if order is None else order
        if self.even:
            order = order[: self.n // self.world_size * self.world_size]
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        # A generator: the epoch and the resumed position are read at the first item,
        # after Lightning's set_epoch and the loader's load_state_dict.
        yield from self._pass(self.indices().tolist())

    def __len__(self) -> int:
        if self.even:
            return self.n // self.world_size
        return len(range(self.rank, self.n, self.world_size))


class Sequences(Dataset):
    """Variable-length token-id tensors, their labels and lengths."""

    def __init__(
        self, ids: Sequence[torch.Tensor], labels: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> None:
        self.ids, self.labels = list(ids), labels
        if lengths is None:
            lengths = torch.tensor([len(t) for t in self.ids], dtype=torch.long)
        self.lengths = lengths

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.ids[i], self.labels[i]


def pad_collate(batch: Sequence[tuple[torch.Tensor, torch.Tensor]]):
    """Pad at the end with PAD to the longest sequence in the batch: (x, y, lengths)."""
    ids, ys = zip(*batch, strict=True)
    lengths = torch.tensor([len(t) for t in ids], dtype=torch.long)
    x = torch.full((len(ids), int(lengths.max())), PAD, dtype=torch.long)
    for i, t in enumerate(ids):
        x[i, : len(t)] = t
    return x, torch.stack(ys), lengths


def truncate(ids: torch.Tensor, max_len: int | None, side: str) -> torch.Tensor:
    """Keep at most max_len tokens: the first, the last, or half from each end ("head+tail")."""
    if side not in TRUNCATION:
        raise UserError(f"truncation={side!r} is not one of {', '.join(TRUNCATION)}")
    if max_len is None or len(ids) <= max_len:
        return ids
    if side == "first":
        return ids[:max_len]
    if side == "last":
        return ids[-max_len:]
    head = max_len // 2
    return torch.cat([ids[:head], ids[len(ids) - (max_len - head) :]])


class BucketBatchSampler(Resumable, Sampler[list[int]]):
    """Batches of indices whose sequences have similar lengths, over `sampler`'s share.

    Shuffling sampler (training): its indices are cut into pools of
    `batch_size * pool_batches`, each pool is sorted by length and cut into
    batches, and the order of all batches is shuffled, all from the epoch's
    generator: batches stay random, padding stays small. Ordered sampler
    (evaluation): one sort by length. Resumable mid-epoch, counted in batches.
    """

    def __init__(
        self, sampler: EpochSampler, lengths: torch.Tensor, batch_size: int, pool_batches: int = 50
    ) -> None:
        self.sampler = sampler  # Lightning's set_epoch reaches it as batch_sampler.sampler
        self.lengths = torch.as_tensor(lengths)
        self.batch_size, self.pool_batches = batch_size, pool_batches

    @property
    def epoch(self) -> int:  # type: ignore[override]
        return self.sampler.epoch

    def _set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.batch_size)

    def batches(self) -> list[list[int]]:
        """This epoch's batches, in order."""
        share = self.sampler.indices()
        if not self.sampler.shuffle:
            order = share[torch.argsort(self.lengths[share], stable=True)]
            return [c.tolist() for c in torch.split(order, self.batch_size)]
        batches: list[torch.Tensor] = []
        for pool in torch.split(share, self.batch_size * self.pool_batches):
            order = pool[torch.argsort(self.lengths[pool], stable=True)]
            batches += torch.split(order, self.batch_size)
        shuffled = torch.randperm(len(batches), generator=self.sampler.generator(stream=1))
        return [batches[i].tolist() for i in shuffled]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self._pass(self.batches())


class BucketedLoaders:
    """The train, val and test loaders of a datamodule whose batches group similar lengths.

    A mixin for a LightningDataModule (`class MyData(BucketedLoaders, L.LightningDataModule)`)
    that has `splits` (split name -> a dataset with `lengths`), `batch_size`,
    `eval_batch_size`, `pool_batches`, `num_workers` and `collate` (a batch from a list of
    items): each split is read by a resumable BucketBatchSampler over its `split_sampler`.
    """

    splits: dict[str, Any]
    batch_size: int
    eval_batch_size: int
    pool_batches: int
    num_workers: int
    trainer: Any

    @staticmethod
    def collate(items: Sequence[Any]) -> Any:
        raise NotImplementedError

    def bucketed_loader(self, split: str) -> StatefulDataLoader:
        train = split == "train"
        dataset = self.splits[split]
        sampler = split_sampler(len(dataset), train, self.trainer)
        size = self.batch_size if train else self.eval_batch_size
        batches = BucketBatchSampler(sampler, dataset.lengths, size, self.pool_batches)
        return data_loader(
            dataset, batch_sampler=batches, collate_fn=self.collate, num_workers=self.num_workers
        )

    def train_dataloader(self) -> StatefulDataLoader:
        return self.bucketed_loader("train")

    def val_dataloader(self) -> StatefulDataLoader:
        return self.bucketed_loader("val")

    def test_dataloader(self) -> StatefulDataLoader:
        return self.bucketed_loader("test")
