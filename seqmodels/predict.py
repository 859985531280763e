"""Classify new inputs, or forecast a series, with a trained checkpoint: `seqmodels-predict`.

The checkpoint rebuilds its task module and its datamodule (with the state
that encoding needs: a vocabulary, a permutation, a series' scaling). This
module reads what the user gives and hands it to the datamodule's predict
hook (seqmodels.data):

- `text="..."` or `file=reviews.txt` (one input per line, `-` for stdin):
  `encode_texts(texts)` of a `TextInputs` datamodule (IMDB);
- `image=digit.png` (or a .npy of one or N images): `encode_images(images)` of
  an `ImageInputs` datamodule (MNIST), after reading the file as grayscale;
- `csv=recent.csv` (recent rows of the series in the training columns):
  `encode_csv(path)` of a `SeriesInputs` datamodule (forecast).

- `text="..."` or `file=words.txt` for a sequence-to-sequence model
  (`Transduction`, task=seq2seq): `encode_texts(texts)`, then the model's
  `transduce` with `beam=` (null: the checkpoint's decode.beam_size; 1: greedy)
  and `nbest=` (outputs per input, best first). A model of characters that
  never saw a space (G2P) reads a line's words one by one (`Seq2Seq.sources_of`):
  `text="hello world"` prints two lines, hello's phones, then world's.

A classifier prints `label  probability  input` per input, and with more than
two classes a second line with every class's probability. A forecaster prints
CSV: a header `timestamp,forecast`, then one row per step of its horizon. A
seq2seq model prints `output  score  input` (score: the output's log-probability
per token, EOS included), one line per n-best output.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch

from seqmodels.checkpoint import load_run
from seqmodels.data import (
    Classification,
    ImageInputs,
    SeriesInputs,
    TextInputs,
    Transduction,
    missing,
    provides,
)
from seqmodels.errors import UserError

REQUEST_KEYS = ("text", "file", "image", "csv")


def predict(cfg: Mapping[str, Any], out: TextIO | None = None) -> list[tuple[Any, ...]]:
    """Print the prediction (to stdout) and return it: (name, label, p) per input, or
    (timestamp, forecast) per horizon step."""
    out = out or sys.stdout  # looked up now, not at import: redirections take effect
    run_cfg, module, datamodule = load_run(cfg.get("ckpt_path"))
    if provides(datamodule, SeriesInputs):
        return forecast(module, datamodule, {k: cfg.get(k) for k in REQUEST_KEYS}, out)
    if provides(datamodule, Transduction):
        return transduce(module, datamodule, cfg, out)
    if missing(datamodule, Classification) or not (
        provides(datamodule, TextInputs) or provides(datamodule, ImageInputs)
    ):
        task = run_cfg.get("task", {}).get("_target_", "?")
        raise UserError(
            f"{cfg.get('ckpt_path')} is a checkpoint of {type(datamodule).__name__} with {task}, "
            "which does not classify inputs: seqmodels-predict needs a classifier checkpoint "
            "(task=imdb, task=mnist), a forecaster's (task=forecast) or a seq2seq model's "
            "(task=seq2seq); for a language model "
            "use seqmodels-sample"
        )
    x, lengths, names = read_request(datamodule, {k: cfg.get(k) for k in REQUEST_KEYS})

    batch_size = int(cfg.get("batch_size") or 256)
    probs = []
    with torch.inference_mode():
        for i in range(0, len(x), batch_size):
            piece = lengths[i : i + batch_size] if lengths is not None else None
            probs.append(module.predict_step((x[i : i + batch_size], piece)))
    every = torch.cat(probs)
    p, label = every.max(dim=-1)

    class_names = datamodule.class_names
    results = [(n, class_names[int(k)], float(q)) for n, k, q in zip(names, label, p, strict=True)]
    width = max(len(c) for c in class_names)
    for (name, lab, q), row in zip(results, every, strict=True):
        print(f"{lab:<{width}}  {q:.3f}  {name}", file=out)
        if len(class_names) > 2:  # with two, the top one says it all
            print(
                "  "
                + "  ".join(f"{c}:{float(r):.3f}" for c, r in zip(class_names, row, strict=True)),
                file=out,
            )
    return results


def forecast(
    module: Any, datamodule: Any, request: Mapping[str, Any], out: TextIO
) -> list[tuple[Any, ...]]:
    """Print the next horizon after the file's last observed value as CSV: timestamp,forecast."""
    given = [k for k in REQUEST_KEYS if request.get(k) is not None]
    if given != ["csv"]:
        raise UserError(
            f"this model forecasts a series, not {' or '.join(given) or 'nothing'}: pass "
            "csv=recent.csv, recent rows in the training columns (see the task's config)"
        )
    batch, times = datamodule.encode_csv(str(Path(str(request["csv"])).expanduser()))
    with torch.inference_mode():
        values = module.predict_step(batch)[0].tolist()
    print("timestamp,forecast", file=out)
    for time, value in zip(times, values, strict=True):
        print(f"{time},{value:.4f}", file=out)
    return list(zip(times, values, strict=True))


def transduce(
    module: Any, datamodule: Any, cfg: Mapping[str, Any], out: TextIO
) -> list[tuple[Any, ...]]:
    """Print each input's n-best outputs: `output  score  input`; return (name, output, score)."""
    request = {k: cfg.get(k) for k in REQUEST_KEYS}
    x, lengths, names = read_request(
        datamodule, request, lambda t: module.sources_of(t, datamodule)
    )
    assert lengths is not None  # encode_texts of a Transduction gives lengths
    beam, nbest = cfg.get("beam"), int(cfg.get("nbest") or 1)
    batch_size = int(cfg.get("batch_size") or 256)
    found = []
    with torch.inference_mode():
        for i in range(0, len(x), batch_size):
            found += module.transduce(
                x[i : i + batch_size],
                lengths[i : i + batch_size],
                beam_size=None if beam is None else int(beam),
                nbest=nbest,
            )
    results = []
    for name, hypotheses in zip(names, found, strict=True):
        texts = [(datamodule.decode_target(ids), score) for ids, score in hypotheses]
        width = max(len(t) for t, _ in texts)
        for rank, (text, score) in enumerate(texts, 1):
            shown = name if nbest == 1 else f"{name} (#{rank})"
            print(f"{text:<{width}}  {score:.3f}  {shown}", file=out)
            results.append((name, text, score))
    return results


def read_request(
    datamodule: Any,
    request: Mapping[str, Any],
    sources_of: Callable[[str], list[str]] | None = None,
):
    """(x, lengths or None, a display name per input) from text=, file= or image=;
    `sources_of` splits a line of text into the inputs it holds (a G2P model's words)."""
    given = [k for k in REQUEST_KEYS if request.get(k) is not None]
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
    if "image" in given or len(given) != 1:
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
