"""batching.py and splits.py: epoch orders from (seed, epoch), per-process shares under
DDP, length buckets, the one validation split rule."""

import signal

import numpy as np
import pytest
import torch
from lightning.fabric.utilities.data import _set_sampler_epoch
from torch.utils.data import DataLoader

from seqmodels.data.batching import (
    BucketBatchSampler,
    EpochSampler,
    Sequences,
    data_loader,
    pad_collate,
)
from seqmodels.data.splits import holdout
from seqmodels.errors import UserError


def test_epoch_order_depends_only_on_seed_and_epoch():
    a, b = EpochSampler(100, shuffle=True, seed=3), EpochSampler(100, shuffle=True, seed=3)
    for _ in range(3):
        list(a)  # passes over a change nothing: the epoch number decides
    b.set_epoch(2)
    a.set_epoch(2)
    assert list(a) == list(b)
    assert sorted(a) == list(range(100))
    a.set_epoch(3)
    assert list(a) != list(b)
    assert list(EpochSampler(100, shuffle=True, seed=4)) != list(EpochSampler(100, True, seed=3))
    assert list(EpochSampler(5, shuffle=False)) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("shuffle,even", [(True, True), (False, False)])
def test_process_shares_are_disjoint(shuffle, even):
    n, world = 103, 4
    shares = [
        list(EpochSampler(n, shuffle, seed=1, rank=r, world_size=world, even=even))
        for r in range(world)
    ]
    seen = [i for s in shares for i in s]
    assert len(seen) == len(set(seen))  # nobody reads an example another process reads
    if even:  # training: equal shares (DDP steps together), the remainder left out
        assert {len(s) for s in shares} == {n // world} and len(seen) == n - n % world
    else:  # evaluation: every example exactly once
        assert sorted(seen) == list(range(n))
    assert [len(EpochSampler(n, shuffle, 1, r, world, even)) for r in range(world)] == [
        len(s) for s in shares
    ]


def test_lightning_sets_the_epoch_of_plain_and_bucketed_loaders():
    lengths = torch.randint(1, 50, (64,), generator=torch.Generator().manual_seed(0))
    data = Sequences([torch.ones(int(n), dtype=torch.long) for n in lengths], torch.zeros(64))
    plain = DataLoader(
        data, batch_size=8, sampler=EpochSampler(64, True, seed=1), collate_fn=pad_collate
    )
    bucketed = DataLoader(
        data,
        collate_fn=pad_collate,
        batch_sampler=BucketBatchSampler(
            EpochSampler(64, True, seed=1), lengths, batch_size=8, pool_batches=2
        ),
    )
    for loader in (plain, bucketed):
        _set_sampler_epoch(loader, 5)  # what Lightning calls before each epoch
    assert plain.sampler.epoch == 5 and bucketed.batch_sampler.sampler.epoch == 5


def test_bucket_batches_group_lengths_and_reshuffle():
    lengths = torch.randint(1, 500, (1000,), generator=torch.Generator().manual_seed(0))
    s = BucketBatchSampler(
        EpochSampler(1000, True, seed=3), lengths, batch_size=10, pool_batches=20
    )
    epoch0 = list(s)
    s.sampler.set_epoch(1)
    epoch1 = list(s)
    for batches in (epoch0, epoch1):
        assert sorted(i for b in batches for i in b) == list(range(1000))
    assert epoch0 != epoch1
    s.sampler.set_epoch(0)
    assert list(s) == epoch0  # the epoch number decides the order
    spread = torch.tensor([float(lengths[b].max() - lengths[b].min()) for b in epoch0])
    assert spread.median() < 30  # random batches of 10 would spread ~400
    assert len(s) == 100
    ev = list(BucketBatchSampler(EpochSampler(1000, False), lengths, 64))
    flat = torch.tensor([i for b in ev for i in b])
    assert torch.equal(lengths[flat], lengths.sort(stable=True).values) and len(ev) == 16


def test_bucketed_training_under_ddp_reads_each_review_at_most_once_per_epoch():
    lengths = torch.randint(1, 300, (250,), generator=torch.Generator().manual_seed(1))
    world = 2
    per_rank = [
        list(
            BucketBatchSampler(
                EpochSampler(250, True, seed=7, rank=r, world_size=world, even=True),
                lengths,
                16,
                pool_batches=3,
            )
        )
        for r in range(world)
    ]
    assert len(per_rank[0]) == len(per_rank[1])  # DDP needs the same number of steps
    seen = [i for batches in per_rank for b in batches for i in b]
    assert len(seen) == len(set(seen)) == 250


def test_holdout_is_one_rule_for_every_dataset():
    train, val = holdout(10, 3, seed=0)
    assert len(val) == 3 and sorted(torch.cat([train, val]).tolist()) == list(range(10))
    assert torch.equal(holdout(10, 3, seed=0)[1], val) and not torch.equal(
        holdout(10, 3, 1)[1], val
    )
    assert len(holdout(10, 0.25, seed=0)[1]) == 2  # round(2.5) to even
    for bad in (0, 10, 1.0, 0.0, "x"):
        with pytest.raises(UserError, match="data.val_size="):
            holdout(10, bad, seed=0, what="reviews")


class WorkerView(torch.utils.data.Dataset):
    """What a loader worker sees: its Ctrl-C handler and a draw of numpy's generator."""

    def __len__(self):
        return 4

    def __getitem__(self, i):
        ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        return torch.tensor([float(ignored), float(np.random.rand())])  # noqa: NPY002 (the legacy global generator is what Lightning seeds)


def test_loader_workers_leave_ctrl_c_to_the_main_process_and_keep_lightnings_seeding(
    monkeypatch,
):
    monkeypatch.setenv("PL_SEED_WORKERS", "1")
    loader = data_loader(WorkerView(), batch_size=1, num_workers=2)
    rows = torch.cat(list(loader))
    assert rows[:, 0].tolist() == [1.0] * 4  # SIGINT ignored in every worker
    # Lightning's worker seeding ran: the two workers draw different numbers (forked
    # workers without it inherit the parent's numpy state and draw the same ones)
    assert len(set(rows[:, 1].tolist())) == 4
