"""Resuming in the middle of an epoch: every shared sampler, and every task's training
loader, saves where its epoch stands and serves exactly the rest of it after a restore
(with and without worker processes), the way Lightning saves and restores it."""

from __future__ import annotations

import pytest
import torch
from lightning.fabric.utilities.data import _set_sampler_epoch
from support import compose_train, options, small_data_overrides
from torch.utils.data import TensorDataset

from seqmodels.data.batching import (
    BucketBatchSampler,
    EpochSampler,
    Sequences,
    data_loader,
    pad_collate,
)
from seqmodels.data.text import InOrder, StreamBatches


def as_lists(batch):
    """A batch as nested lists, whatever its structure (tuples, dicts, tensors)."""
    if isinstance(batch, torch.Tensor):
        return batch.tolist()
    if isinstance(batch, dict):
        return {k: as_lists(v) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return [as_lists(b) for b in batch]
    return batch


def resumed_at(make, epoch, k):
    """(the whole epoch's batches, the first k, the rest after a save/restore in a new loader)."""
    whole = make()
    _set_sampler_epoch(whole, epoch)
    reference = [as_lists(b) for b in whole]
    first = make()
    _set_sampler_epoch(first, epoch)
    it = iter(first)
    taken = [as_lists(next(it)) for _ in range(k)]
    state = first.state_dict()  # what Lightning writes into the checkpoint
    again = make()
    again.load_state_dict(state)  # what Lightning does on resume, before the epoch is set
    iterator = iter(again)
    _set_sampler_epoch(again, epoch)  # then sets the epoch, as Lightning does
    rest = [as_lists(b) for b in iterator]
    return reference, taken, rest


@pytest.mark.parametrize("shuffle,rank,world", [(True, 0, 1), (True, 1, 3), (False, 0, 1)])
def test_epoch_sampler_state_round_trip(shuffle, rank, world):
    s = EpochSampler(50, shuffle, seed=7, rank=rank, world_size=world, even=shuffle)
    s.set_epoch(4)
    order = list(s)
    it = iter(s)
    head = [next(it) for _ in range(6)]
    state = s.state_dict()
    assert state == {"epoch": 4, "served": 6}
    t = EpochSampler(50, shuffle, seed=7, rank=rank, world_size=world, even=shuffle)
    t.load_state_dict(state)
    assert t.epoch == 4 and head + list(t) == order
    assert list(t) == order  # the next pass over the epoch starts at its beginning
    t.set_epoch(5)
    assert t.state_dict() == {"epoch": 5, "served": 0}


def test_a_finished_epoch_resumes_at_the_next_ones_start():
    s = EpochSampler(20, True, seed=1)
    s.set_epoch(2)
    list(s)
    t = EpochSampler(20, True, seed=1)
    t.load_state_dict(s.state_dict())
    nxt = EpochSampler(20, True, seed=1)
    nxt.set_epoch(3)
    assert t.epoch == 3 and list(t) == list(nxt)


def test_bucket_batch_sampler_state_round_trip():
    lengths = torch.randint(1, 90, (200,), generator=torch.Generator().manual_seed(0))
    make = lambda: BucketBatchSampler(EpochSampler(200, True, seed=2), lengths, 8, 3)  # noqa: E731
    s = make()
    s.sampler.set_epoch(6)
    batches = list(s)
    it = iter(s)
    head = [next(it) for _ in range(9)]
    assert s.state_dict() == {"epoch": 6, "served": 9}
    t = make()
    t.load_state_dict(s.state_dict())
    assert t.sampler.epoch == 6 and head + list(t) == batches


def test_in_order_stream_batches_state_round_trip():
    streams = InOrder(StreamBatches(torch.arange(500), batch_size=4, seq_len=7))
    batches = [x.tolist() for x, _ in streams]
    it = iter(streams)
    head = [next(it)[0].tolist() for _ in range(5)]
    again = InOrder(StreamBatches(torch.arange(500), batch_size=4, seq_len=7))
    again.load_state_dict(streams.state_dict())
    assert head + [x.tolist() for x, _ in again] == batches


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("bucketed", [False, True])
def test_loaders_resume_mid_epoch_with_and_without_workers(workers, bucketed):
    lengths = torch.randint(1, 30, (96,), generator=torch.Generator().manual_seed(1))
    data = Sequences([torch.full((int(n),), i) for i, n in enumerate(lengths)], torch.zeros(96))

    def make():
        sampler = EpochSampler(96, True, seed=3)
        if bucketed:
            batches = BucketBatchSampler(sampler, lengths, batch_size=8, pool_batches=2)
            return data_loader(
                data, batch_sampler=batches, collate_fn=pad_collate, num_workers=workers
            )
        return data_loader(
            data, batch_size=8, sampler=sampler, collate_fn=pad_collate, num_workers=workers
        )

    reference, taken, rest = resumed_at(make, epoch=2, k=5)
    assert len(taken) == 5 and taken + rest == reference


def test_plain_tensor_loader_resumes():
    data = TensorDataset(torch.arange(30))
    reference, taken, rest = resumed_at(
        lambda: data_loader(data, batch_size=4, sampler=EpochSampler(30, True, seed=0)), 1, 3
    )
    assert taken + rest == reference


@pytest.mark.parametrize("task", options("task"))
def test_every_tasks_training_loader_resumes_mid_epoch(task, small_data, tmp_path):
    """Every configs/task/*.yaml: its training loader is one Lightning saves and restores
    (state_dict/load_state_dict), and the restored loader serves the rest of the epoch."""
    from hydra.utils import instantiate

    cfg = compose_train(
        f"task={task}", *small_data_overrides(task, small_data), output_dir=tmp_path
    )

    def make():
        dm = instantiate(cfg.data)
        dm.prepare_data()
        dm.setup("fit")
        return dm.train_dataloader()

    n = len(make())
    assert n >= 3, f"{task}: too few batches to stop in the middle"
    reference, taken, rest = resumed_at(make, epoch=1, k=n // 2)
    assert taken + rest == reference, task
