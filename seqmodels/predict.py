"""Classify new inputs with a trained checkpoint: the body of `seqmodels-predict`.

Generic over classification tasks. The checkpoint rebuilds its task module and
its datamodule (with the state that encoding needs: a vocabulary, a
permutation), and the datamodule turns the request into model inputs:

    datamodule.encode_for_predict(request) -> (x, lengths or None, display names)
    datamodule.class_names -> list[str]

`request` holds `text`, `file` and `image`; each datamodule takes the kinds of
input it understands and says so in one line when given another.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, TextIO

import torch

from seqmodels.checkpoint import load_run
from seqmodels.errors import UserError

REQUEST_KEYS = ("text", "file", "image")


def predict(cfg: Mapping[str, Any], out: TextIO | None = None) -> list[tuple[str, str, float]]:
    """Print `label  probability  input` per input (to stdout); return (name, label, p) each.

    With more than two classes a second line gives every class's probability.
    """
    out = out or sys.stdout  # looked up now, not at import: redirections take effect
    run_cfg, module, datamodule = load_run(cfg.get("ckpt_path"))
    encode = getattr(datamodule, "encode_for_predict", None)
    class_names = getattr(datamodule, "class_names", None)
    if encode is None or not class_names:
        task = run_cfg.get("task", {}).get("_target_", "?")
        raise UserError(
            f"{cfg.get('ckpt_path')} is a checkpoint of {type(datamodule).__name__} with {task}, "
            "which does not classify inputs: seqmodels-predict needs a classifier checkpoint "
            "(task=imdb, task=mnist); for a language model use seqmodels-sample"
        )
    request = {k: cfg.get(k) for k in REQUEST_KEYS}
    x, lengths, names = encode(request)

    batch_size = int(cfg.get("batch_size") or 256)
    probs = []
    with torch.inference_mode():
        for i in range(0, len(x), batch_size):
            piece = lengths[i : i + batch_size] if lengths is not None else None
            probs.append(module.predict_step((x[i : i + batch_size], piece)))
    every = torch.cat(probs)
    p, label = every.max(dim=-1)

    results = [(n, class_names[int(k)], float(q)) for n, k, q in zip(names, label, p, strict=True)]
    width = max(len(c) for c in class_names)
    for (name, lab, q), row in zip(results, every, strict=True):
        print(f"{lab:<{width}}  {q:.3f}  {name}", file=out)
        if len(class_names) > 2:  # with two, the top one says it all
            print("  " + "  ".join(f"{c}:{float(r):.3f}" for c, r in zip(class_names, row, strict=True)),
                  file=out)
    return results
