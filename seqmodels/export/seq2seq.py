"""A seq2seq checkpoint as two programs, the encoder and one decoder step, and the search over them.

A sequence-to-sequence model (task=seq2seq, e.g. grapheme-to-phoneme) decodes
one token at a time, with a search (greedy or beam) choosing the tokens. The
search stays in Python; what runs in another runtime is the network:

| program | inputs | outputs |
|---|---|---|
| encoder | `source` (B, S) int64, `lengths` (B,) int64 | `keys` (B, S, K), `prepared` (B, S, A), `mask` (B, S) bool, `state` (P, B, H) |
| step | `token` (B,) int64, `keys`, `prepared`, `mask`, `state` | `logits` (B, V), `weights` (B, S), `state_next` (P, B, H) |

`state` stacks the decoder's running state: the cell's (h, or h and c, ...,
its `state_names`), then the attentional state h~ when the model feeds it
back (input feeding); the metadata's `state` names them. `prepared` is what
the attention computes once per source. A beam search reorders rows of
`state` (dimension 1) and of the others (dimension 0). The batch size and the
source length are free in both. `seqmodels-export ... format=onnx` writes them as
`<out>.encoder.onnx` and `<out>.step.onnx` (`format=pt2`: `.pt2`), each with
the metadata a search needs: the vocabularies, the special tokens and the
checkpoint's decoding settings.

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
from torch import Tensor, nn

from seqmodels.data.seq2seq import BOS, EOS, PAD, SPECIALS
from seqmodels.errors import UserError
from seqmodels.export.programs import EXAMPLE_BATCH, Program
from seqmodels.nn import DecoderState, beam_search
from seqmodels.tasks.seq2seq import Seq2Seq

EXAMPLE_SOURCE = 5  # traced source length


class EncoderProgram(nn.Module):
    """Sources and lengths -> the decoder's starting state, as named tensors."""

    def __init__(self, task: Seq2Seq) -> None:
        super().__init__()
        self.task = task

    def forward(self, source: Tensor, lengths: Tensor) -> tuple[Tensor, ...]:
        start = self.task.encode(source, lengths)
        return start.keys, start.prepared, start.mask, stack(start, self.task.decoder)


class StepProgram(nn.Module):
    """One decoder step: the previous token and the state -> logits, weights, next state."""

    def __init__(self, task: Seq2Seq) -> None:
        super().__init__()
        self.task = task

    def forward(self, token: Tensor, keys: Tensor, prepared: Tensor, mask: Tensor, state: Tensor):
        decoder = self.task.decoder
        logits, new, weights = decoder.step(token, unstack(decoder, keys, prepared, mask, state))
        return logits, weights, stack(new, decoder)


def state_names(task: Seq2Seq) -> list[str]:
    """The rows of `state`: the cell's state names (h, c, ...), then feed if fed back."""
    names = list(task.decoder.cell.state_names)
    return names + (["feed"] if task.decoder.input_feeding else [])


def stack(state: DecoderState, decoder: Any) -> Tensor:
    """The running state as one (P, B, H) tensor: the cell's, then h~ if fed back."""
    cell = state.cell if isinstance(state.cell, tuple) else (state.cell,)
    return torch.stack([*cell, *((state.feed,) if decoder.input_feeding else ())])


def unstack(decoder: Any, keys: Tensor, prepared: Tensor, mask: Tensor, state: Tensor):
    parts = len(decoder.cell.state_names)
    cell = state[0] if parts == 1 else tuple(state[:parts].unbind(0))
    # Without input feeding no step reads feed: h stands in for it.
    feed = state[parts] if decoder.input_feeding else state[0]
    return DecoderState(cell, feed, keys, prepared, mask)


def programs(task: Any, datamodule: Any) -> dict[str, Program]:
    """The encoder and step programs of a loaded seq2seq checkpoint (in eval mode), with the
    metadata a search needs."""
    source, target = datamodule.source, datamodule.target
    names = state_names(task)
    meta = {
        "task": f"{type(task).__module__}.{type(task).__qualname__}",
        "source_vocabulary": list(source.itos),
        "target_vocabulary": list(target.itos),
        "source_tokens": datamodule.source_tokens,
        "target_tokens": datamodule.target_tokens,
        "lowercase": bool(datamodule.lowercase),
        "special_ids": {"pad": PAD, "bos": BOS, "eos": EOS},
        "decode": dict(task.hparams["decode"]),
        "state": names,
    }
    B, S = EXAMPLE_BATCH, EXAMPLE_SOURCE
    lengths = torch.tensor([S, S - 2])
    ids = torch.randint(len(SPECIALS), len(source), (B, S)).masked_fill(
        torch.arange(S) >= lengths[:, None], PAD
    )
    encoder = Program(
        EncoderProgram(task),
        {"source": ids, "lengths": lengths},
        ["keys", "prepared", "mask", "state"],
        {"source": {0: "batch", 1: "time"}, "lengths": {0: "batch"}},
        {**meta, "program": "encoder"},
    )
    with torch.no_grad():
        started = dict(zip(encoder.outputs, encoder.module(ids, lengths), strict=True))
    inputs = {"token": torch.randint(0, len(target), (B,)), **started}
    dynamic = {
        "token": {0: "batch"},
        **{k: {0: "batch", 1: "time"} for k in ("keys", "prepared", "mask")},
        "state": {1: "batch"},
    }
    step = Program(
        StepProgram(task),
        inputs,
        ["logits", "weights", "state_next"],
        dynamic,
        {**meta, "program": "step"},
    )
    return {"encoder": encoder, "step": step}


def check_inputs(datamodule: Any, batch: int, length: int) -> dict[str, Tensor]:
    """Sources of another batch size and length than the traced ones, lengths mixed."""
    lengths = torch.randint(1, length + 1, (batch,))
    lengths[0] = length
    ids = torch.randint(len(SPECIALS), len(datamodule.source), (batch, length))
    return {
        "source": ids.masked_fill(torch.arange(length) >= lengths[:, None], PAD),
        "lengths": lengths,
    }


def paths(path: Path, fmt: str) -> dict[str, Path]:
    """`g2p.onnx` -> g2p.encoder.onnx and g2p.step.onnx (the same for pt2)."""
    stem = path.with_suffix("") if path.suffix == f".{fmt}" else path
    return {name: stem.with_name(f"{stem.name}.{name}.{fmt}") for name in ("encoder", "step")}


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
    checkpoint's length penalty and max_len), over the encoder and step programs run by
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
            encoding.run(None, {"source": source.numpy(), "lengths": lengths.numpy()}),
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
