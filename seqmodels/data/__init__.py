"""Datasets as LightningDataModules, and the contract every one of them keeps.

A task (configs/task/*.yaml) pairs a datamodule with a task module. Everything
above this package (train, eval, predict, sample, the task modules) talks to a
datamodule only through the members named below: one name and one type each.

Every datamodule (`DataModule`):
- `prepare_data()`: download and cache what is missing (rank 0 only under DDP).
- `setup(stage=None)`: build the splits. Idempotent, and every split at once:
  `seqmodels-train` calls it before the Trainer exists, to size the model and
  to check every input file before the first training step; Lightning calls it
  again later, and under DDP each process's loaders shard by rank from there.
- `model_kwargs`: what the network is built with that the data decides
  (vocab_size or input_size, num_classes; a forecaster's window, horizon and
  target scale), known after `setup()` or `load_state_dict()`.
- `state_dict()` / `load_state_dict()`: what a checkpoint must carry to
  encode new inputs without the data folder (a vocabulary, a permutation, a
  series' scaling, step, time zone and feature layout).
- train/val/test dataloaders whose training order depends only on (seed,
  epoch) and which shard by rank under DDP (batching.py).

Then, by task:
- `Classification`: `class_names`, the label of each class id.
- `CharacterText` (LanguageModel, seqmodels-sample): `vocab_size`,
  `encode(text) -> LongTensor`, `decode(ids) -> str`.
- `Forecasting` (Forecaster): `horizon`, the steps forecast from each origin;
  `examples()`, a few fixed validation stretches as (title, batch) pairs,
  drawn in TensorBoard every epoch. Its batches are `forecast.ForecastBatch`.
- `Transduction` (Seq2Seq): `encode_texts(texts) -> (x, lengths)` for new
  sources, `decode_target(ids) -> str` and `decode_source(ids) -> str`,
  `source_tokens_of(ids)` / `target_tokens_of(ids)` (labels of an attention
  image), `example_batch()`, a few fixed validation sources. Its batches are
  `seq2seq.Seq2SeqBatch`.

Optional hooks (checked with `provides(datamodule, Hook)`):
- `TextInputs.encode_texts(texts) -> (x, lengths or None)`: seqmodels-predict text=/file=.
- `ImageInputs.encode_images(images) -> x`, with `image_shape`: seqmodels-predict image=.
- `SeriesInputs.encode_csv(path) -> (batch, timestamps)`: seqmodels-predict csv=; the
  batch holds one forecast origin, right after the file's last observed value.
- `RendersExamples`: `example_batch()`, the same few validation examples every
  epoch, as a batch; `log_examples(writer, batch, probs, global_step)` draws
  them in TensorBoard with the model's class probabilities.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, Protocol

from torch import Tensor


class DataModule(Protocol):
    def prepare_data(self) -> None: ...
    def setup(self, stage: str | None = None) -> None: ...
    @property
    def model_kwargs(self) -> dict[str, int | float]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state_dict: dict[str, Any]) -> None: ...


class Classification(DataModule, Protocol):
    class_names: list[str]


class CharacterText(DataModule, Protocol):
    @property
    def vocab_size(self) -> int: ...
    def encode(self, text: str) -> Tensor: ...
    def decode(self, ids: Sequence[int] | Tensor) -> str: ...


class Forecasting(DataModule, Protocol):
    horizon: int

    def examples(self) -> list[tuple[str, Any]]: ...


class Transduction(DataModule, Protocol):
    def encode_texts(self, texts: Sequence[str]) -> tuple[Tensor, Tensor | None]: ...
    def decode_target(self, ids: Sequence[int] | Tensor) -> str: ...
    def decode_source(self, ids: Sequence[int] | Tensor) -> str: ...
    def source_tokens_of(self, ids: Sequence[int] | Tensor) -> list[str]: ...
    def target_tokens_of(self, ids: Sequence[int]) -> list[str]: ...
    def example_batch(self) -> Any: ...


class TextInputs(Protocol):
    def encode_texts(self, texts: Sequence[str]) -> tuple[Tensor, Tensor | None]: ...


class ImageInputs(Protocol):
    image_shape: tuple[int, int]

    def encode_images(self, images: Tensor) -> Tensor: ...


class SeriesInputs(Protocol):
    def encode_csv(self, path: str) -> tuple[Any, list[str]]: ...


class RendersExamples(Protocol):
    def example_batch(self) -> Any: ...
    def log_examples(self, writer: Any, batch: Any, probs: Tensor, global_step: int) -> None: ...


def missing(datamodule: Any, protocol: type) -> list[str]:
    """The members of `protocol` that `datamodule` (an object or a class) lacks.

    Looked up without calling anything (a property such as `model_kwargs` may
    only work after setup), on the instance's attributes and its class's.
    """
    names = [n for n in dir(protocol) if not n.startswith("_")]
    names += list(getattr(protocol, "__annotations__", {}))
    for base in protocol.__mro__:
        names += [n for n in getattr(base, "__annotations__", {}) if not n.startswith("_")]
    own = vars(datamodule) if not inspect.isclass(datamodule) else {}
    return sorted(
        {n for n in names if n not in own and inspect.getattr_static(datamodule, n, None) is None}
    )


def provides(datamodule: Any, protocol: type) -> bool:
    """Whether `datamodule` has every member of `protocol` (e.g. an optional hook)."""
    return datamodule is not None and not missing(datamodule, protocol)
