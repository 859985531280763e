"""A trained task's inference path as a module with named tensor inputs and outputs.

Each task module defines its own (`TaskModule.inference_program`, around the
same inference function `seqmodels-predict` runs); this module asks it and
adds the task's name to the file's metadata. What the built-in tasks give, in
the order and names an exported file has:

| task | inputs | outputs | any length |
|---|---|---|---|
| classifier of token ids (IMDB, parity) | `ids` (B, T) int64, `lengths` (B,) int64 | `probabilities` (B, C) | yes |
| classifier of images (MNIST) | `images` (B, 28, 28) uint8, 0..255 | `probabilities` (B, C) | fixed by the image |
| forecaster | `past` (B, window, F), `known` (B, horizon, K), `snaive` (B, horizon) | `forecast` (B, horizon) | fixed window |
| language model, one step | `token` (B,) int64, `h` (L, B, H) [, `c`] | `logits` (B, V), `h_next` [, `c_next`] | one step |

A sequence-to-sequence model is two programs, its encoder and one decoder
step, with the search over them in Python (seq2seq.py).

The image classifier includes the datamodule's own encoding of pixels
(`encode_images`: scaling, rows or pixels, a pixel permutation), so the file
reads images as they are. Token ids come from the checkpoint's vocabulary,
which the file's metadata carries with the class names (`metadata`).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from seqmodels.tasks.base import as_task
from seqmodels.tasks.inference import EXAMPLE_BATCH, Program

__all__ = ["EXAMPLE_BATCH", "Program", "program_for", "programs_for"]


def program_for(task: nn.Module, datamodule: Any) -> Program:
    """The inference path of a loaded checkpoint (task module in eval mode, datamodule
    with its state), as the task module defines it (`TaskModule.inference_program`),
    with the task's name in the metadata; a one-line UserError for a task without one."""
    program = as_task(task, "the checkpoint").inference_program(datamodule)
    program.metadata = {"task": f"{type(task).__module__}.{type(task).__qualname__}"} | dict(
        program.metadata
    )
    return program


def programs_for(task: nn.Module, datamodule: Any) -> dict[str, Program]:
    """`TaskModule.inference_programs` (one program named "", or several a caller runs
    together), each with the task's name in its metadata."""
    programs = as_task(task, "the checkpoint").inference_programs(datamodule)
    for program in programs.values():
        program.metadata = {"task": f"{type(task).__module__}.{type(task).__qualname__}"} | dict(
            program.metadata
        )
    return programs
