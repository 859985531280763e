"""Classify new inputs, forecast a series or transduce words with a trained checkpoint:
`seqmodels-predict`.

The checkpoint rebuilds its task module and its datamodule (with the state
that encoding needs: a vocabulary, a permutation, a series' scaling). The task
module reads the request, runs and formats its answer (the inference contract
of seqmodels.tasks.base.TaskModule: `read_request`, `predict_request`,
`format_prediction`); this command only prints it. The tasks read, through
their datamodule's hooks (seqmodels.data):

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
from collections.abc import Mapping
from typing import Any, TextIO

from seqmodels.checkpoint import load_run
from seqmodels.tasks.base import as_task
from seqmodels.tasks.inference import (  # the readers, for users of this module
    REQUEST_KEYS,
    ascii_image,
    read_images,
    read_lines,
    read_request,
    snippet,
)

__all__ = [
    "REQUEST_KEYS",
    "ascii_image",
    "predict",
    "read_images",
    "read_lines",
    "read_request",
    "snippet",
]


def predict(cfg: Mapping[str, Any], out: TextIO | None = None) -> list[tuple[Any, ...]]:
    """Print the prediction (to stdout) and return it, one row per answer: (input, label,
    probability) for a classifier, (timestamp, forecast) per horizon step for a
    forecaster, (input, output, score) per n-best output for a seq2seq model."""
    out = out or sys.stdout  # looked up now, not at import: redirections take effect
    _, module, datamodule = load_run(cfg.get("ckpt_path"))
    task = as_task(module, cfg.get("ckpt_path"))
    # every key of the command's config (configs/predict.yaml): the input and the options
    # a task reads (batch_size, beam, nbest, ...); a new task's option goes there only
    request = {str(k): cfg.get(k) for k in cfg.keys() if k != "ckpt_path"}
    inputs = task.read_request(datamodule, request)
    predicted = task.predict_request(inputs, request)
    prediction = task.format_prediction(datamodule, inputs, predicted)
    for line in prediction.lines:
        print(line, file=out)
    return prediction.rows
