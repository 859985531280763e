"""What a task module hands the inference commands: its exported program, and what
seqmodels-predict reads and prints.

`seqmodels-export`, `seqmodels-predict` and `seqmodels-sample` never look at a
task's type: they ask the task module (the contract is on
`seqmodels.tasks.base.TaskModule`, each task implements its own part). This
module holds the plain data that passes between them: `Program` (what gets
exported), `PredictInputs` (a request read into model inputs) and `Prediction`
(what the command prints and returns), plus the readers of the raw inputs a
user gives (`text=`, `file=`, `image=`) that several tasks share.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from seqmodels.data import ImageInputs, provides
from seqmodels.errors import UserError

EXAMPLE_BATCH = 2  # traced with 2 rows: torch.export specialises a dimension of size 1

# What seqmodels-predict reads: one of these names the input.
REQUEST_KEYS = ("text", "file", "image", "csv")


@dataclass
class Program:
    """What gets exported: the module, example inputs, names and the dynamic dimensions.

    Args:
        module: runs the inference path: its arguments are `inputs`' tensors in order,
            its outputs (a tensor or a tuple) are named by `outputs`.
        inputs: name -> an example tensor, in the module's argument order.
        outputs: the name of each output.
        dynamic: input name -> {dimension: "batch" or "time"}, the sizes that stay free.
        metadata: plain data written into the file (class names, vocabulary, ...).
    """

    module: nn.Module
    inputs: dict[str, Tensor]
    outputs: list[str]
    dynamic: dict[str, dict[int, str]]
    metadata: dict[str, Any] = field(default_factory=dict)

    def example(self, batch: int, time: int | None = None) -> dict[str, Tensor]:
        """Inputs of another size than the traced ones, with the same content rules."""
        return _resize(self.inputs, self.dynamic, batch, time)


@dataclass
class PredictInputs:
    """A seqmodels-predict request read into model inputs.

    Args:
        batch: what the task's `predict_request` runs on (for a classifier, `(x, lengths)`).
        names: one display name per input (or per output row, e.g. a forecast's times).
    """

    batch: Any
    names: list[str]


@dataclass
class Prediction:
    """What seqmodels-predict prints (`lines`) and returns (`rows`, one tuple per answer)."""

    lines: list[str]
    rows: list[tuple[Any, ...]]


def given_keys(request: Mapping[str, Any]) -> list[str]:
    """The inputs a request names (`text`, `file`, `image`, `csv`), in that order."""
    return [k for k in REQUEST_KEYS if request.get(k) is not None]


def read_request(
    datamodule: Any,
    request: Mapping[str, Any],
    sources_of: Callable[[str], list[str]] | None = None,
):
    """(x, lengths or None, a display name per input) from text=, file= or image=, encoded by
    the datamodule's own hooks (`encode_images` of an ImageInputs datamodule, else
    `encode_texts`); `sources_of` splits a line of text into the inputs it holds (a G2P
    model's words), each named by its line."""
    given = given_keys(request)
    if provides(datamodule, ImageInputs):
        if given != ["image"]:
            raise UserError(
                f"this model reads {'x'.join(map(str, datamodule.image_shape))} images, not "
                f"{' or '.join(given) or 'nothing'}: pass image=digit.png (or a .npy array)"
            )
        path = Path(request["image"])
        images, note = read_images(path, datamodule.image_shape)
        names = [
            f"{path}{f'[{i}]' if len(images) > 1 else ''}{note}\n{ascii_image(d)}"
            for i, d in enumerate(images)
        ]
        return datamodule.encode_images(images), None, names
    if "image" in given or len(given) != 1 or given == ["csv"]:
        raise UserError(
            'this model reads text: give exactly one of text="a review" or '
            "file=reviews.txt (one per line, file=- for stdin)"
        )
    if request.get("text") is not None:
        texts, names = [str(request["text"])], ["text"]
    else:
        file = str(request["file"])
        numbered = [(i, t) for i, t in enumerate(read_lines(file), 1) if t.strip()]
        if not numbered:
            raise UserError(f"{file} has nothing to predict: put one input per line")
        names, texts = [f"line {i}" for i, _ in numbered], [t for _, t in numbered]
    if sources_of is not None:
        split = [(n, source) for n, t in zip(names, texts, strict=True) for source in sources_of(t)]
        names, texts = [n for n, _ in split], [t for _, t in split]
    x, lengths = datamodule.encode_texts(texts)
    return x, lengths, [f"{n}: {snippet(t)}" for n, t in zip(names, texts, strict=True)]


# -- text ------------------------------------------------------------------------------


def read_lines(file: str) -> list[str]:
    if file == "-":
        return sys.stdin.read().splitlines()
    try:
        return Path(file).expanduser().read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UserError(
            f"file={file} does not exist: give a text file with one input per line"
        ) from None
    except (UnicodeDecodeError, IsADirectoryError) as e:
        raise UserError(f"file={file} is not a UTF-8 text file ({type(e).__name__})") from None


def snippet(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


# -- images ----------------------------------------------------------------------------


def read_images(path: Path, shape: tuple[int, int]) -> tuple[torch.Tensor, str]:
    """A .png/.jpg (one image) or .npy (one, or N stacked) -> uint8 (N, H, W), and a note.

    Models trained on MNIST saw light strokes on a dark background; an image
    with a light border (a dark digit drawn on white) is inverted to match.
    """
    if not path.is_file():
        raise UserError(f"image={path}: no such file")
    if path.suffix.lower() == ".npy":
        try:
            a = np.load(path, allow_pickle=False)
        except ValueError as e:
            raise UserError(f"image={path}: not a numpy .npy array ({e})") from None
        if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
            raise UserError(f"image={path}: array of type {a.dtype}, expected numbers")
        a = a.astype(np.float64)
        if a.size and a.max() <= 1.0:  # floats in [0, 1]; anything larger is 0..255
            a = a * 255.0
        a = np.clip(np.rint(a), 0, 255).astype(np.uint8)
    else:
        from PIL import Image, UnidentifiedImageError  # Pillow comes with tensorboard

        try:
            with Image.open(path) as im:
                a = np.asarray(im.convert("L"))
        except (UnidentifiedImageError, OSError) as e:
            raise UserError(f"image={path}: cannot read it as an image ({e})") from None
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[1:] != tuple(shape) or len(a) == 0:
        h, w = shape
        raise UserError(
            f"image={path} has shape {a.shape}; this model reads {h}x{w} grayscale images "
            f"(a .npy may also hold N of them): resize it to {h}x{w} first"
        )
    border = np.concatenate([a[:, 0], a[:, -1], a[:, :, 0], a[:, :, -1]], axis=1)
    invert = border.mean(axis=1) > 127
    a = np.where(invert[:, None, None], 255 - a, a)
    note = " (inverted: light background)" if invert.all() else ""
    return torch.from_numpy(np.ascontiguousarray(a)), note


def ascii_image(image: torch.Tensor) -> str:
    """A uint8 (H, W) image as text for the terminal, without its blank top and bottom rows."""
    ramp = " .:-=+*#%@"  # two characters per pixel: terminal cells are about twice as tall
    idx = (image.int() * len(ramp) // 256).tolist()
    return "\n".join("".join(ramp[v] * 2 for v in row).rstrip() for row in idx).strip("\n")


# -- export ----------------------------------------------------------------------------


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
        ids = "ids" if "ids" in out else "words"  # a tagger's words
        T = out[ids].shape[1]
        lengths = torch.randint(1, T + 1, (batch,))
        lengths[0] = T
        out["lengths"] = lengths
        out[ids] = out[ids].masked_fill(torch.arange(T)[None, :] >= lengths[:, None], 0)
    return out
