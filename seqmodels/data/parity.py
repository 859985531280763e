"""Parity classification: is the sum of a sequence of integers odd?

The setup of the Keras example this project started from: 5 integers drawn from
1..10, label = sum mod 2. Its SimpleRNN stays at chance (47% test accuracy).

- `alphabet="digits"`: values 1..10 (token id = value); `"bits"`: values 0, 1
  (token id = value + 1). Id 0 is padding.
- `min_len`/`max_len` draw a length per sequence (variable-length batches with
  `lengths`); otherwise every sequence has `seq_len` steps.
- `test_seq_len` gives the test split its own length, to measure how far the
  model generalises beyond the lengths it was trained on.

Everything is generated from `seed`: the train, val and test splits come from
three independent child streams of one numpy SeedSequence, so they never share
a stream and do not change when another split's size changes.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from seqmodels.data.batching import data_loader, split_sampler
from seqmodels.errors import UserError

ALPHABETS = {"digits": (1, 10), "bits": (0, 1)}


def make_parity(
    num: int, min_len: int, max_len: int, alphabet: str, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`num` sequences as (token ids (num, max_len) padded with 0, labels, lengths)."""
    low, high = ALPHABETS[alphabet]
    values = rng.integers(low, high + 1, size=(num, max_len))
    lengths = rng.integers(min_len, max_len + 1, size=num)
    valid = np.arange(max_len)[None, :] < lengths[:, None]
    values = values * valid
    labels = values.sum(axis=1) % 2
    tokens = np.where(valid, values - low + 1, 0)
    return (
        torch.from_numpy(tokens).long(),
        torch.from_numpy(labels).long(),
        torch.from_numpy(lengths).long(),
    )


class ParityDataModule(L.LightningDataModule):
    r"""Parity of short integer sequences, generated offline: is the sum odd?

    Sequences of values from the alphabet, labelled by the parity of their sum
    (classes ``["even", "odd"]``), drawn from ``seed`` (see the module docstring).
    The task of ``task=parity`` (``seqmodels-train``'s default): no download, a
    run in seconds.

    Args:
        seq_len: steps per sequence when ``min_len``/``max_len`` are not given.
            Default: 5.
        alphabet: ``"digits"`` (values 1..10, token id = value) or ``"bits"``
            (values 0, 1, token id = value + 1); id 0 pads. Default: ``"digits"``.
        min_len: shortest sequence (variable lengths when it differs from
            ``max_len``). Default: ``seq_len``.
        max_len: longest sequence. Default: ``seq_len``.
        test_seq_len: the test split's length, to measure length generalisation.
            Default: ``max_len``.
        num_train: training sequences. Default: 8000.
        num_val: validation sequences. Default: 1000.
        num_test: test sequences. Default: 1000.
        batch_size: sequences per batch. Default: 64.
        seed: the seed every split is generated from. Default: 0.
        num_workers: DataLoader worker processes. Default: 0.

    Shape:
        - Batches: ``(x, y)`` with token ids x :math:`(B, T)` and labels y
          :math:`(B,)`; with variable lengths ``(x, y, lengths)``, lengths
          :math:`(B,)` and x padded with 0.
        - ``model_kwargs``: ``{"num_classes": 2, "vocab_size": V}``.

    Example::

        >>> from seqmodels.data.parity import ParityDataModule
        >>> dm = ParityDataModule(min_len=2, max_len=6, num_train=64, num_val=16,
        ...                       num_test=16, batch_size=8)
        >>> dm.setup()
        >>> x, y, lengths = next(iter(dm.train_dataloader()))
        >>> x.shape, y.shape, lengths.shape
        (torch.Size([8, 6]), torch.Size([8]), torch.Size([8]))
        >>> dm.model_kwargs, dm.class_names
        ({'num_classes': 2, 'vocab_size': 11}, ['even', 'odd'])
    """

    def __init__(
        self,
        seq_len: int = 5,
        alphabet: str = "digits",
        min_len: int | None = None,
        max_len: int | None = None,
        test_seq_len: int | None = None,
        num_train: int = 8000,
        num_val: int = 1000,
        num_test: int = 1000,
        batch_size: int = 64,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if alphabet not in ALPHABETS:
            raise UserError(
                f"data.alphabet must be one of {', '.join(ALPHABETS)}; got {alphabet!r}"
            )
        self.min_len = seq_len if min_len is None else min_len
        self.max_len = seq_len if max_len is None else max_len
        self.test_len = self.max_len if test_seq_len is None else test_seq_len
        if not 1 <= self.min_len <= self.max_len or self.test_len < 1:
            raise UserError(
                "parity lengths must satisfy 1 <= data.min_len <= data.max_len and "
                f"data.test_seq_len >= 1; got min_len={self.min_len}, max_len={self.max_len}, "
                f"test_seq_len={self.test_len}"
            )
        for name, value in (
            ("num_train", num_train),
            ("num_val", num_val),
            ("num_test", num_test),
            ("batch_size", batch_size),
        ):
            if value < 1:
                raise UserError(f"data.{name} must be a positive integer; got {value}")
        self.alphabet, self.seed, self.batch_size = alphabet, seed, batch_size
        self.num_train, self.num_val, self.num_test = num_train, num_val, num_test
        self.num_workers = num_workers
        self.splits: dict[str, TensorDataset] = {}

    @property
    def variable_length(self) -> bool:
        return self.min_len != self.max_len

    class_names = ["even", "odd"]

    @property
    def model_kwargs(self) -> dict[str, int]:
        low, high = ALPHABETS[self.alphabet]
        return {"num_classes": 2, "vocab_size": high - low + 2}

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        streams = [np.random.default_rng(s) for s in np.random.SeedSequence(self.seed).spawn(3)]
        shapes = {
            "train": (self.num_train, self.min_len, self.max_len),
            "val": (self.num_val, self.min_len, self.max_len),
            "test": (self.num_test, self.test_len, self.test_len),
        }
        for (split, (num, lo, hi)), rng in zip(shapes.items(), streams, strict=True):
            x, y, lengths = make_parity(num, lo, hi, self.alphabet, rng)
            # Fixed-length splits are plain (x, y) batches: no masking work.
            tensors = (x, y, lengths) if self.variable_length else (x, y)
            self.splits[split] = TensorDataset(*tensors)

    def _loader(self, split: str) -> DataLoader:
        dataset = self.splits[split]
        return data_loader(
            dataset,
            batch_size=self.batch_size,
            sampler=split_sampler(len(dataset), split == "train", self.trainer),
            num_workers=self.num_workers,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    # Nothing to carry: the data is generated from the config alone.
    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state_dict: dict) -> None:
        pass
