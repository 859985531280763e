"""seqmodels-sample: stream text from a language-model checkpoint.

The checkpoint rebuilds its LanguageModel and its datamodule's vocabulary
(no text file is read); generation itself is seqmodels.nn.generation.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

from seqmodels.checkpoint import load_run
from seqmodels.data import CharacterText, missing
from seqmodels.errors import UserError
from seqmodels.nn.generation import default_prime, sample_text
from seqmodels.tasks.language_model import LanguageModel


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
    cfg, module, datamodule = load_run(ckpt_path)
    if not isinstance(module, LanguageModel) or missing(datamodule, CharacterText):
        raise UserError(
            f"{ckpt_path} is a {type(module).__name__} checkpoint, not a language model: "
            "seqmodels-sample needs a checkpoint trained with task=chargen"
        )
    prime = default_prime(datamodule) if prime is None else str(prime)
    if "\\" not in datamodule.decode(range(datamodule.vocab_size)):
        # a command line cannot type a newline: accept \n and \t
        prime = prime.replace("\\n", "\n").replace("\\t", "\t")
    chars = sample_text(module, datamodule, prime, length, temperature, top_k, seed)
    pieces = [prime]
    try:
        out.write(prime)
        out.flush()
        for ch in chars:
            out.write(ch)
            out.flush()  # stream: each character appears as it is made
            pieces.append(ch)
        out.write("\n")
        out.flush()
    except KeyboardInterrupt:  # Ctrl-C ends a long sample: not an error
        out.write("\n")
    except BrokenPipeError:  # `| head` closed the pipe: stop quietly
        if out is sys.stdout:  # and keep Python's exit-time flush from complaining
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return "".join(pieces)
