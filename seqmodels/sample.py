"""seqmodels-sample: stream text from a language-model checkpoint.

The checkpoint rebuilds its task module and its datamodule's vocabulary (no
text file is read); the task module generates (`TaskModule.sample`: for a
LanguageModel, seqmodels.nn.generation), this command streams what it makes.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

from seqmodels.checkpoint import load_run
from seqmodels.errors import UserError
from seqmodels.tasks.base import as_task


def sample_checkpoint(
    ckpt_path: str,
    prime: str | None = None,
    length: int = 1000,
    temperature: float = 1.0,
    top_k: int = 0,
    seed: int | None = None,
    out: TextIO | None = None,
) -> str:
    """Write prime + `length` sampled characters to `out` as they are made; return the text."""
    out = sys.stdout if out is None else out
    _, module, datamodule = load_run(ckpt_path)
    task = as_task(module, ckpt_path)
    if not task.can_sample():
        raise UserError(
            f"{ckpt_path} is a {task.task_name()} checkpoint, not a language model: "
            "seqmodels-sample needs a checkpoint trained with task=chargen"
        )
    pieces = task.sample(datamodule, prime, length, temperature, top_k, seed)
    first = next(pieces, "")  # the prime, once the options are checked
    made = [first]
    try:
        out.write(first)
        out.flush()
        for piece in pieces:
            out.write(piece)
            out.flush()  # stream: each character appears as it is made
            made.append(piece)
        out.write("\n")
        out.flush()
    except KeyboardInterrupt:  # Ctrl-C ends a long sample: not an error
        out.write("\n")
    except BrokenPipeError:  # `| head` closed the pipe: stop quietly
        if out is sys.stdout:  # and keep Python's exit-time flush from complaining
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return "".join(made)
