"""The search over a seq2seq checkpoint's two exported programs, the encoder and one decoder step.

A sequence-to-sequence model (task=seq2seq, e.g. grapheme-to-phoneme) decodes
one token at a time, with a search (greedy or beam) choosing the tokens. The
search stays in Python; what runs in another runtime is the network:

| program | inputs | outputs |
|---|---|---|
| encoder | `ids` (B, S) int64, `lengths` (B,) int64 | `keys` (B, S, K), `prepared` (B, S, A), `mask` (B, S) bool, `state` (P, B, H) |
| step | `token` (B,) int64, `keys`, `prepared`, `mask`, `state` | `logits` (B, V), `weights` (B, S), `state_next` (P, B, H) |

`state` stacks the decoder's running state: the cell's (h, or h and c, ...,
its `state_names`), then the attentional state h~ when the model feeds it
back (input feeding); the metadata's `state` names them. `prepared` is what
the attention computes once per source. A beam search reorders rows of
`state` (dimension 1) and of the others (dimension 0). The batch size and the
source length are free in both (`Seq2Seq.inference_programs` builds them).
`seqmodels-export ... format=onnx` writes them as `<out>.encoder.onnx` and
`<out>.step.onnx` (`format=pt2`: `.pt2`), each with the metadata a search
needs: the vocabularies, the special tokens and the checkpoint's decoding
settings.

:func:`transduce_onnx` runs the checkpoint's search over the two ONNX files on
onnxruntime, with torch for the search's bookkeeping (seqmodels.nn's
:func:`~seqmodels.nn.beam_search`, the one `seqmodels-predict` runs), and
gives what `seqmodels-predict` prints::

    from seqmodels.export.seq2seq import transduce_onnx
    transduce_onnx("g2p.encoder.onnx", "g2p.step.onnx", ["hello", "world"], beam_size=5)
    # per word [(phones, score)], as seqmodels-predict prints them
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from seqmodels.data.seq2seq import PAD, SPECIALS
from seqmodels.errors import UserError
from seqmodels.nn import beam_search

# -- the search over the ONNX files ---------------------------------------------------------


class OnnxStep:
    """The step program on onnxruntime, as the decoder of seqmodels.nn's searches
    (:class:`~seqmodels.nn.SearchDecoder`); the state is a dict of numpy arrays by name."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.outputs = [o.name for o in session.get_outputs()]

    def step(self, tokens: Tensor, state: dict[str, Any]) -> tuple[Tensor, dict[str, Any], Tensor]:
        got = self.session.run(None, {"token": tokens.numpy(), **state})
        named = dict(zip(self.outputs, got, strict=True))
        new = {**state, "state": named["state_next"]}
        return torch.from_numpy(named["logits"]), new, torch.from_numpy(named["weights"])

    @staticmethod
    def select(state: dict[str, Any], index: Tensor) -> dict[str, Any]:
        rows = index.numpy()
        return {k: v[:, rows] if k == "state" else v[rows] for k, v in state.items()}

    @staticmethod
    def reorder(state: dict[str, Any], index: Tensor) -> dict[str, Any]:
        """Rows moved among one source's hypotheses: only the running state changes."""
        return {**state, "state": state["state"][:, index.numpy()]}

    @staticmethod
    def source_mask(state: dict[str, Any]) -> Tensor:
        return torch.from_numpy(state["mask"])

    @staticmethod
    def with_source_mask(state: dict[str, Any], mask: Tensor) -> dict[str, Any]:
        return {**state, "mask": mask.numpy()}

    @staticmethod
    def batch_size(state: dict[str, Any]) -> int:
        return len(state["keys"])

    @staticmethod
    def device(state: dict[str, Any]) -> torch.device:
        return torch.device("cpu")


def transduce_onnx(
    encoder: str | Path,
    step: str | Path,
    sources: Sequence[str],
    beam_size: int | None = None,
    nbest: int = 1,
) -> list[list[tuple[str, float]]]:
    """Each source's `nbest` outputs with their scores, best first, from the two ONNX files
    `seqmodels-export ... format=onnx` writes for a seq2seq checkpoint.

    The same search as `seqmodels-predict` (:func:`~seqmodels.nn.beam_search` with the
    checkpoint's length penalty, max_len, attention_window and eos_margin), over the encoder and step programs run by
    onnxruntime: the same outputs, scores to float rounding.

    Args:
        encoder: the `.encoder.onnx` file.
        step: the `.step.onnx` file.
        sources: the inputs, one per output (a G2P model: words, not sentences).
        beam_size: the beam; None: the checkpoint's decode.beam_size; 1: greedy.
        nbest: outputs per source, `1 <= nbest <= beam_size`. Default: 1

    Returns:
        per source, `nbest` pairs `(output text, log-probability per token)`, best first.

    Example::

        transduce_onnx("g2p.encoder.onnx", "g2p.step.onnx", ["hello"], beam_size=5, nbest=2)
    """
    import onnxruntime as ort  # the export extra, needed only here

    options = ort.SessionOptions()
    encoding = ort.InferenceSession(str(encoder), options, providers=["CPUExecutionProvider"])
    stepping = ort.InferenceSession(str(step), options, providers=["CPUExecutionProvider"])
    meta = json.loads(encoding.get_modelmeta().custom_metadata_map["seqmodels"])
    source, lengths = encode(meta, sources)
    started = dict(
        zip(
            [o.name for o in encoding.get_outputs()],
            encoding.run(None, {"ids": source.numpy(), "lengths": lengths.numpy()}),
            strict=True,
        )
    )
    decode, ids = meta["decode"], meta["special_ids"]
    beam = int(beam_size or decode["beam_size"])
    found = beam_search(
        OnnxStep(stepping),
        started,
        beam,
        int(decode["max_len"]),
        float(decode["length_penalty"]),
        nbest,
        bos=ids["bos"],
        eos=ids["eos"],
        # an export made before these settings existed has neither: off, as it was decoded
        attention_window=decode.get("attention_window"),
        eos_margin=decode.get("eos_margin"),
    )
    itos, joiner = meta["target_vocabulary"], "" if meta["target_tokens"] == "char" else " "
    return [
        [(joiner.join(itos[i] for i in tokens), score) for tokens, score in hypotheses]
        for hypotheses in found
    ]


def encode(meta: dict[str, Any], sources: Sequence[str]) -> tuple[Tensor, Tensor]:
    """Sources -> (ids (B, S) PAD-padded, lengths (B,)), as the checkpoint's datamodule reads."""
    stoi = {t: i for i, t in enumerate(meta["source_vocabulary"])}
    rows = []
    for text in sources:
        text = text.strip().lower() if meta["lowercase"] else text.strip()
        toks = list(text) if meta["source_tokens"] == "char" else text.split()
        unknown = sorted({t for t in toks if t not in stoi or t in SPECIALS})
        if not toks or unknown:
            raise UserError(
                f"{text!r}: the model never saw {' '.join(map(repr, unknown)) or 'an empty input'}"
            )
        rows.append([stoi[t] for t in toks])
    lengths = torch.tensor([len(r) for r in rows])
    ids = torch.full((len(rows), int(lengths.max())), PAD, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
    return ids, lengths
