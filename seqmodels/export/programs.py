"""A trained task's inference path as a module with named tensor inputs and outputs.

Each task module has one inference function, which `seqmodels-predict` runs
too; the modules here only put the tensors around it in the order and names an
exported file has:

| task | inputs | outputs | any length |
|---|---|---|---|
| classifier of token ids (IMDB, parity) | `ids` (B, T) int64, `lengths` (B,) int64 | `probabilities` (B, C) | yes |
| classifier of images (MNIST) | `images` (B, 28, 28) uint8, 0..255 | `probabilities` (B, C) | fixed by the image |
| forecaster | `past` (B, window, F), `known` (B, horizon, K), `snaive` (B, horizon) | `forecast` (B, horizon) | fixed window |
| language model, one step | `token` (B,) int64, `h` (L, B, H) [, `c`] | `logits` (B, V), `h_next` [, `c_next`] | one step |

The image classifier includes the datamodule's own encoding of pixels
(`encode_images`: scaling, rows or pixels, a pixel permutation), so the file
reads images as they are. Token ids come from the checkpoint's vocabulary,
which the file's metadata carries with the class names (`metadata`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from seqmodels.data import CharacterText, Classification, ImageInputs, provides
from seqmodels.errors import UserError
from seqmodels.tasks.classifier import SequenceClassifier
from seqmodels.tasks.forecaster import Forecaster
from seqmodels.tasks.language_model import LanguageModel

EXAMPLE_BATCH = 2  # traced with 2 rows: torch.export specialises a dimension of size 1


@dataclass
class Program:
    """What gets exported: the module, example inputs, names and the dynamic dimensions."""

    module: nn.Module
    inputs: dict[str, Tensor]  # name -> example, in the module's argument order
    outputs: list[str]
    dynamic: dict[str, dict[int, str]]  # input -> {dimension: its name}, e.g. batch, time
    metadata: dict[str, Any] = field(default_factory=dict)

    def example(self, batch: int, time: int | None = None) -> dict[str, Tensor]:
        """Inputs of another size than the traced ones, with the same content rules."""
        return _resize(self.inputs, self.dynamic, batch, time)


class TokenClassifier(nn.Module):
    def __init__(self, task: SequenceClassifier) -> None:
        super().__init__()
        self.task = task

    def forward(self, ids: Tensor, lengths: Tensor) -> Tensor:
        return self.task.class_probabilities(ids, lengths)


class ImageClassifier(nn.Module):
    def __init__(self, task: SequenceClassifier, encode_images: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.task, self.encode_images = task, encode_images

    def forward(self, images: Tensor) -> Tensor:
        return self.task.class_probabilities(self.encode_images(images))


class ForecastProgram(nn.Module):
    def __init__(self, task: Forecaster) -> None:
        super().__init__()
        self.task = task

    def forward(self, past: Tensor, known: Tensor, snaive: Tensor) -> Tensor:
        return self.task.forecast_from(past, known, snaive)


class LanguageModelStep(nn.Module):
    def __init__(self, task: LanguageModel) -> None:
        super().__init__()
        self.task = task

    def forward(self, token: Tensor, h: Tensor, c: Tensor | None = None):
        logits, state = self.task.step(token, h if c is None else (h, c))
        return (logits, *state) if isinstance(state, tuple) else (logits, state)


def program_for(task: nn.Module, datamodule: Any) -> Program:
    """The inference path of a loaded checkpoint (task module in eval mode, datamodule
    with its state); a one-line UserError for a task without one."""
    meta: dict[str, Any] = {"task": f"{type(task).__module__}.{type(task).__qualname__}"}
    if provides(datamodule, Classification):
        meta["class_names"] = list(datamodule.class_names)
    B = EXAMPLE_BATCH
    if isinstance(task, SequenceClassifier) and provides(datamodule, ImageInputs):
        h, w = datamodule.image_shape
        images = torch.randint(0, 256, (B, h, w), dtype=torch.uint8)
        module = ImageClassifier(task, datamodule.encode_images)  # as seqmodels-predict reads
        return Program(
            module, {"images": images}, ["probabilities"], {"images": {0: "batch"}}, meta
        )
    if isinstance(task, SequenceClassifier) and task.hparams.get("vocab_size"):
        vocab = getattr(datamodule, "vocab", None)
        if vocab is not None and hasattr(vocab, "itos"):
            meta["vocabulary"] = list(vocab.itos)  # id -> word; 0 pads, 1 is unknown
        T, V = 5, int(task.hparams["vocab_size"])
        ids = torch.randint(1, V, (B, T))
        lengths = torch.tensor([T, T - 2])
        ids[1, T - 2 :] = 0  # padding after each sequence's length
        return Program(
            TokenClassifier(task),
            {"ids": ids, "lengths": lengths},
            ["probabilities"],
            {"ids": {0: "batch", 1: "time"}, "lengths": {0: "batch"}},
            meta,
        )
    if isinstance(task, Forecaster):
        hp = task.hparams
        past = torch.randn(B, int(hp["window"]), int(hp["input_size"]))
        known = torch.randn(B, int(hp["horizon"]), int(hp["known_size"]))
        snaive = torch.randn(B, int(hp["horizon"]))
        return Program(
            ForecastProgram(task),
            {"past": past, "known": known, "snaive": snaive},
            ["forecast"],
            {k: {0: "batch"} for k in ("past", "known", "snaive")},
            meta,
        )
    if isinstance(task, LanguageModel):
        if provides(datamodule, CharacterText):
            meta["characters"] = [datamodule.decode([i]) for i in range(datamodule.vocab_size)]
        enc: Any = task.encoder  # a seqmodels layer: num_layers, hidden_size are ints
        LD = int(enc.num_layers) * (2 if getattr(enc, "bidirectional", False) else 1)
        state = torch.zeros(LD, B, int(enc.hidden_size))
        inputs = {"token": torch.randint(0, int(task.hparams["vocab_size"]), (B,)), "h": state}
        outputs = ["logits", "h_next"]
        parts = int(getattr(enc, "state_size", 1))
        if parts > 2:
            raise UserError(
                f"seqmodels-export writes a language model's step with a state of h (and c); "
                f"this encoder's cells carry {parts} state tensors"
            )
        if parts == 2:  # (h, c): an LSTM, or a cell of one's own with a cell state
            inputs["c"] = state.clone()
            outputs.append("c_next")
        dynamic = {"token": {0: "batch"}, **{k: {1: "batch"} for k in inputs if k != "token"}}
        return Program(LanguageModelStep(task), inputs, outputs, dynamic, meta)
    raise UserError(
        f"seqmodels-export cannot export a {type(task).__name__} checkpoint: it exports "
        "classifiers (task=imdb, mnist, parity), forecasters (task=forecast), language "
        "models (task=chargen, one step) and seq2seq models (task=seq2seq, encoder and step)"
    )


def _resize(
    inputs: dict[str, Tensor], dynamic: dict[str, dict[int, str]], batch: int, time: int | None
) -> dict[str, Tensor]:
    """New inputs with the dynamic dimensions resized (ids and lengths kept consistent)."""
    out = {}
    for name, x in inputs.items():
        shape = list(x.shape)
        for dim, what in dynamic.get(name, {}).items():
            shape[dim] = batch if what == "batch" else (time or shape[dim])
        if x.dtype == torch.uint8:
            out[name] = torch.randint(0, 256, shape, dtype=torch.uint8)
        elif x.dtype.is_floating_point:
            out[name] = torch.randn(shape) if name not in ("h", "c") else torch.randn(shape) * 0.5
        else:
            high = int(inputs[name].max()) + 1
            out[name] = torch.randint(1 if name == "ids" else 0, max(high, 2), shape)
    if "lengths" in out:
        T = out["ids"].shape[1]
        lengths = torch.randint(1, T + 1, (batch,))
        lengths[0] = T
        out["lengths"] = lengths
        out["ids"] = out["ids"].masked_fill(torch.arange(T)[None, :] >= lengths[:, None], 0)
    return out
