"""Batching for any task: the epoch's order from (seed, epoch), per-process shares
under DDP, and length-bucketed batches of variable-length token sequences.

The training order depends only on (seed, epoch), never on a global RNG, so a
run resumed from the checkpoint of epoch k sees exactly the batches the
uninterrupted run saw in epoch k + 1. Lightning calls `set_epoch` on a
DataLoader's `sampler` and on its `batch_sampler.sampler` before every epoch.

Under DDP the datamodules shard their own data (the trainer runs with
`use_distributed_sampler: false`): every index goes to exactly one process.
Training shares are cut to the same size (DDP steps all processes together);
evaluation shares are not, so validation and test metrics count every example
exactly once (torchmetrics sums their states across processes).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

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


class EpochSampler(Sampler[int]):
    """The indices of `n` items that process `rank` of `world_size` reads in one epoch.

    shuffle=True orders them by a permutation drawn from `seed + epoch` (as
    torch's DistributedSampler does); shuffle=False keeps 0..n-1. Process
    `rank` takes every `world_size`-th index of that order. `even=True` cuts
    every share to n // world_size items (training under DDP); the few left
    out differ from epoch to epoch.
    """

    def __init__(self, n: int, shuffle: bool, seed: int = 0, rank: int = 0, world_size: int = 1,
                 even: bool = False) -> None:  # fmt: skip
        self.n, self.shuffle, self.seed = n, shuffle, seed
        self.rank, self.world_size, self.even = rank, world_size, even
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
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
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        if self.even:
            return self.n // self.world_size
        return len(range(self.rank, self.n, self.world_size))


class Sequences(Dataset):
    """Variable-length token-id tensors, their labels and lengths."""

    def __init__(self, ids: Sequence[torch.Tensor], labels: torch.Tensor,
                 lengths: torch.Tensor | None = None) -> None:  # fmt: skip
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


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of indices whose sequences have similar lengths, over `sampler`'s share.

    Shuffling sampler (training): its indices are cut into pools of
    `batch_size * pool_batches`, each pool is sorted by length and cut into
    batches, and the order of all batches is shuffled, all from the epoch's
    generator: batches stay random, padding stays small. Ordered sampler
    (evaluation): one sort by length.
    """

    def __init__(self, sampler: EpochSampler, lengths: torch.Tensor, batch_size: int,
                 pool_batches: int = 50) -> None:  # fmt: skip
        self.sampler = sampler  # Lightning's set_epoch reaches it as batch_sampler.sampler
        self.lengths = torch.as_tensor(lengths)
        self.batch_size, self.pool_batches = batch_size, pool_batches

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        share = self.sampler.indices()
        if not self.sampler.shuffle:
            order = share[torch.argsort(self.lengths[share], stable=True)]
            yield from (c.tolist() for c in torch.split(order, self.batch_size))
            return
        batches: list[torch.Tensor] = []
        for pool in torch.split(share, self.batch_size * self.pool_batches):
            order = pool[torch.argsort(self.lengths[pool], stable=True)]
            batches += torch.split(order, self.batch_size)
        for i in torch.randperm(len(batches), generator=self.sampler.generator(stream=1)):
            yield batches[i].tolist()
