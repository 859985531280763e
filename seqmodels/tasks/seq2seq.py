"""Seq2Seq: an attention encoder-decoder (grapheme-to-phoneme by default).

    source tokens → embedding → encoder (any seqmodels.nn layer, with lengths)
                  → AttentionDecoder (any seqmodels.nn cell, one token at a time)
                  → greedy or beam search (seqmodels.nn.search)

Training is teacher-forced cross-entropy over the target tokens and EOS
(`label_smoothing` optional). Every validation epoch decodes greedily and logs
`val/wer` and `val/per` (sequence_errors.py) with `val/loss`; the test decodes
with the configured beam (`decode.beam_size`, 1: greedy) and logs `test/wer`,
`test/per` and `test/beam_size`, so the number says how it was made.
TensorBoard gets, each validation epoch, the attention matrix of a few fixed
validation sources (`val/attention`) and a table of their outputs against
their references (`val/examples`).

Args:
    encoder: a seqmodels.nn layer or its config (input_size filled in).
    bidirectional: the encoder config's direction, whatever model.bidirectional says
        (the model group's default is one direction; a transducer reads the whole
        source first, so both is the better default); None keeps the config's.
    source_vocab_size, target_vocab_size: from the datamodule.
    embedding_dim, target_embedding_dim: source and target token embeddings.
    decoder_cell: the decoder's cell config, e.g. {_target_: seqmodels.nn.LSTMCell}
        or one's own Cell subclass; built as cell(input_size, hidden_size).
    decoder_hidden_size: the cell's hidden size (also the attentional state's).
    attention: its config, {_target_: seqmodels.nn.MultiplicativeAttention}
        or AdditiveAttention (attention_size=...); query and key sizes filled in.
    input_feeding: feed the previous attentional state to the cell.
    dropout: on embeddings, encoder states and the decoder's attentional state.
    label_smoothing: of the training loss (validation/test loss: none).
    decode: {beam_size, length_penalty, max_len, attention_window, eos_margin}
        for the test and predict (seqmodels.nn.beam_search); validation's greedy
        search takes max_len, attention_window and eos_margin.
    optimizer, scheduler, encoder_init: as every task (optim.py, encoder.py).
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn
from torchmetrics import MeanMetric

from seqmodels.data import Transduction, missing, provides
from seqmodels.data.seq2seq import BOS, EOS, PAD, SPECIALS, Seq2SeqBatch
from seqmodels.errors import UserError
from seqmodels.nn import AttentionDecoder, DecoderState, beam_search, build_cell, greedy_search
from seqmodels.nn.gradflow import state_gradient_norms
from seqmodels.tasks.attention_plots import attention_image, stack
from seqmodels.tasks.base import TaskModule
from seqmodels.tasks.encoder import build_encoder, encoder_output_size
from seqmodels.tasks.inference import (
    EXAMPLE_BATCH,
    PredictInputs,
    Prediction,
    Program,
    read_request,
)
from seqmodels.tasks.sequence_errors import SequenceErrorRate, TokenErrorRate

STAGES = ("train", "val", "test")
DECODE = {
    "beam_size": 5,
    "length_penalty": 1.0,
    "max_len": 50,
    "attention_window": None,
    "eos_margin": None,
}


class Seq2Seq(TaskModule):
    r"""An attention encoder-decoder for sequence-to-sequence tasks (grapheme to phoneme
    by default).

    ``source tokens -> embedding -> encoder (with lengths) -> attention decoder (any
    cell, one token at a time) -> greedy or beam search``. Trained with teacher-forced
    cross-entropy over the target tokens and EOS; validation decodes greedily, the
    test with ``decode.beam_size``; logs sequence and token error rates and the
    attention maps (see the module docstring). The task of ``task=seq2seq``;
    ``seqmodels-predict`` transduces new sources with it. Token ids 0, 1, 2 are PAD,
    BOS and EOS (``seqmodels.data.seq2seq``).

    Args:
        encoder: a ``seqmodels.nn`` layer whose ``input_size`` is ``embedding_dim``,
            or its config as a dict with ``_target_`` (filled in).
        source_vocab_size: number of source token ids (from the data).
        target_vocab_size: number of target token ids V (from the data).
        bidirectional: the encoder config's direction, whatever the config says
            (``None`` keeps the config's). Default: ``True``.
        embedding_dim: size of the source embedding. Default: 64.
        target_embedding_dim: size of the target embedding. Default: 64.
        decoder_cell: the decoder cell's config, e.g. ``{"_target_":
            "seqmodels.nn.LSTMCell"}`` (the default) or a ``Cell`` of one's own.
        decoder_hidden_size: the cell's hidden size (also the attentional
            state's). Default: 256.
        attention: the attention's config (multiplicative when ``None``); query and
            key sizes are filled in.
        input_feeding: feed the previous attentional state to the cell. Default: ``True``.
        dropout: on embeddings, encoder states and the attentional state. Default: 0.
        label_smoothing: of the training loss. Default: 0.
        decode: ``{"beam_size", "length_penalty", "max_len", "attention_window",
            "eos_margin"}`` for the test and predict (validation's greedy search takes the
            last three); missing keys take ``{"beam_size": 5, "length_penalty": 1.0,
            "max_len": 50, "attention_window": None, "eos_margin": None}``. The last two
            hold the attention to the source's order (:func:`~seqmodels.nn.beam_search`):
            ``[back, ahead]`` positions around the furthest one attended, and EOS only
            within ``eos_margin`` positions of the source's end.
        optimizer: the optimizer's config (Adam, lr 1e-3 when ``None``).
        scheduler: an LR scheduler's config, or ``None``.
        encoder_init: an init function's config applied to the encoder once built.

    Shape:
        - source: :math:`(B, S)` token ids, PAD-padded; lengths: :math:`(B,)`.
        - target: :math:`(B, U)` the target's ids then EOS, PAD-padded.
        - Output of ``forward``: logits :math:`(B, U, V)` and attention weights
          :math:`(B, U, S)`.
        - ``transduce(source, lengths, beam_size, nbest)``: per source, its ``nbest``
          outputs as (token ids without EOS, log-probability per token), best first.

    Example::

        >>> import torch
        >>> from seqmodels.tasks.seq2seq import Seq2Seq
        >>> model = Seq2Seq({"_target_": "seqmodels.nn.LSTM", "hidden_size": 16},
        ...                 source_vocab_size=30, target_vocab_size=40,
        ...                 decoder_hidden_size=16, decode={"max_len": 6}).eval()
        >>> source, lengths = torch.randint(4, 30, (2, 7)), torch.tensor([7, 4])
        >>> logits, attention = model(source, lengths, torch.randint(4, 40, (2, 5)))
        >>> logits.shape, attention.shape
        (torch.Size([2, 5, 40]), torch.Size([2, 5, 7]))
        >>> best = model.transduce(source, lengths, beam_size=3, nbest=2)
        >>> len(best), len(best[0])
        (2, 2)
    """

    train_loss: MeanMetric  # set per stage in __init__, as val_loss and test_loss

    def __init__(
        self,
        encoder: nn.Module | Mapping[str, Any],
        source_vocab_size: int,
        target_vocab_size: int,
        bidirectional: bool | None = True,
        embedding_dim: int = 64,
        target_embedding_dim: int = 64,
        decoder_cell: Mapping[str, Any] | None = None,
        decoder_hidden_size: int = 256,
        attention: Mapping[str, Any] | None = None,
        input_feeding: bool = True,
        dropout: float = 0.0,
        label_smoothing: float = 0.0,
        decode: Mapping[str, Any] | None = None,
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        encoder_init: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise UserError(f"task.dropout must be in [0, 1); got {dropout}")
        if not 0.0 <= label_smoothing < 1.0:
            raise UserError(f"task.label_smoothing must be in [0, 1); got {label_smoothing}")
        unknown = set(decode or {}) - set(DECODE)
        if unknown:
            raise UserError(
                f"task.decode.{sorted(unknown)[0]} is not a decoding setting "
                f"(they are {', '.join(DECODE)})"
            )
        self.save_plain_hyperparameters({"_target_": "torch.optim.Adam", "lr": 1e-3})
        # The defaults written into the hparams (already plain data), so a checkpoint says them.
        hp = self.hparams
        hp["decode"] = {**DECODE, **(hp["decode"] or {})}
        self.search_options()  # a bad attention_window or eos_margin: one line now, not at test
        hp["decoder_cell"] = hp["decoder_cell"] or {"_target_": "seqmodels.nn.LSTMCell"}
        hp["attention"] = hp["attention"] or {"_target_": "seqmodels.nn.MultiplicativeAttention"}

        self.embedding = nn.Embedding(source_vocab_size, embedding_dim, padding_idx=PAD)
        if bidirectional is not None and isinstance(encoder, Mapping):
            encoder = {**encoder, "bidirectional": bool(bidirectional)}
        self.encoder = build_encoder(encoder, embedding_dim, encoder_init)
        cell = instantiate(self.hparams["decoder_cell"], _partial_=True)
        self.decoder = AttentionDecoder(
            target_vocab_size,
            target_embedding_dim,
            cell=lambda i, h: build_cell(cell, i, h, bias=True),
            hidden_size=decoder_hidden_size,
            key_size=encoder_output_size(self.encoder),
            attention=instantiate(self.hparams["attention"], _partial_=True),
            input_feeding=input_feeding,
            dropout=dropout,
            padding_idx=PAD,
        )
        self.dropout = nn.Dropout(dropout)
        for stage in STAGES:  # a ModuleDict key cannot be "train": attributes per stage
            setattr(self, f"{stage}_loss", MeanMetric())
        for stage in ("val", "test"):
            setattr(self, f"{stage}_wer", SequenceErrorRate())
            setattr(self, f"{stage}_per", TokenErrorRate())

    # -- model -----------------------------------------------------------------------
    def encode(self, source: Tensor, lengths: Tensor) -> DecoderState:
        """The decoder's starting state for a batch of sources (B, S) with their lengths."""
        memory, _ = self.encoder(self.dropout(self.embedding(source)), lengths=lengths)
        steps = torch.arange(source.shape[1], device=source.device)
        mask = steps.unsqueeze(0) < lengths.to(source.device).unsqueeze(1)
        return self.decoder.start(self.dropout(memory), mask)

    def forward(self, source: Tensor, lengths: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Teacher forcing: logits (B, U, V) for target (B, U) (its tokens then EOS), and
        the attention weights (B, U, S)."""
        return self.teacher_forced(self.encode(source, lengths), target)

    def teacher_forced(self, state: DecoderState, target: Tensor) -> tuple[Tensor, Tensor]:
        inputs = torch.cat((torch.full_like(target[:, :1], BOS), target[:, :-1]), 1)
        return self.decoder(inputs, state)

    def loss(self, logits: Tensor, target: Tensor, smoothing: float = 0.0) -> Tensor:
        return nn.functional.cross_entropy(
            logits.flatten(0, 1), target.flatten(), ignore_index=PAD, label_smoothing=smoothing
        )

    def search_options(self) -> dict[str, Any]:
        """`attention_window` and `eos_margin` of `decode` as the searches take them."""
        decode = self.hparams["decode"]
        window, margin = decode.get("attention_window"), decode.get("eos_margin")
        if window is not None and (
            isinstance(window, str | int)
            or len(window) != 2
            or not all(isinstance(w, int) and w >= 0 for w in window)
        ):
            raise UserError(
                f"task.decode.attention_window={window}: give [back, ahead], two integers "
                f">= 0 (e.g. [1, 3]), or null"
            )
        if margin is not None and (not isinstance(margin, int) or margin < 0):
            raise UserError(f"task.decode.eos_margin={margin}: give an integer >= 0, or null")
        return {
            "attention_window": None if window is None else tuple(window),
            "eos_margin": margin,
        }

    def search(self, state: DecoderState, beam_size: int) -> list[list[int]]:
        """The best output (token ids, no EOS) of each source: greedy search for
        `beam_size` 1, else beam search, with `decode`'s settings."""
        decode = self.hparams["decode"]
        max_len = int(decode["max_len"])
        if beam_size == 1:
            return greedy_search(
                self.decoder, state, max_len, bos=BOS, eos=EOS, **self.search_options()
            ).tokens
        found = beam_search(
            self.decoder,
            state,
            beam_size,
            max_len,
            float(decode["length_penalty"]),
            bos=BOS,
            eos=EOS,
            **self.search_options(),
        )
        return [best[0][0] for best in found]

    def transduce(
        self, source: Tensor, lengths: Tensor, beam_size: int | None = None, nbest: int = 1
    ) -> list[list[tuple[list[int], float]]]:
        """Per source, its nbest outputs (token ids, no EOS) with their length-normalised
        log-probability, best first: the inference path of seqmodels-predict."""
        decode = self.hparams["decode"]
        beam = int(beam_size or decode["beam_size"])
        if beam < 1 or not 1 <= nbest <= beam:
            raise UserError(f"beam={beam}, nbest={nbest}: need 1 <= nbest <= beam")
        state = self.encode(source, lengths)
        return beam_search(
            self.decoder,
            state,
            beam,
            int(decode["max_len"]),
            float(decode["length_penalty"]),
            nbest,
            bos=BOS,
            eos=EOS,
            **self.search_options(),
        )

    @staticmethod
    def sources_of(line: str, datamodule: Any) -> list[str]:
        """The sources a line of input holds, for seqmodels-predict: its words, for a model
        that reads characters and never saw a space (grapheme-to-phoneme: `hello world` is two
        words, pronounced one by one, each on its own output line), else the line itself (a
        model of words, or of characters with the space among them, reads the whole line).

        Punctuation the model never saw is taken off the words' ends (`"Hello, world!"` is
        `Hello` and `world`); what remains unknown is the datamodule's one-line error."""
        vocabulary = getattr(datamodule, "source", None)
        known = set(getattr(vocabulary, "stoi", ()))
        if getattr(datamodule, "source_tokens", "char") != "char" or " " in known:
            return [line]
        unseen = "".join(c for c in string.punctuation if c not in known)
        words = [word.strip(unseen) for word in line.split()]
        return [word for word in words if word] or [line]

    # -- inference (TaskModule's contract) --------------------------------------------
    def inference_programs(self, datamodule: Any) -> dict[str, Program]:
        """Two programs, with the search between them left to the caller (seqmodels.export's
        seq2seq.transduce_onnx runs seqmodels-predict's over ONNX files):

        - `encoder`: `ids` (B, S) int64, `lengths` (B,) -> `keys` (B, S, K), `prepared`
          (what the attention computes once per source), `mask` (B, S) bool and `state`
          (P, B, H), the decoder's running state stacked: the cell's (its `state_names`),
          then the attentional state when it is fed back (input feeding);
        - `step`: `token` (B,) int64, `keys`, `prepared`, `mask`, `state` -> `logits`
          (B, V), `weights` (B, S), `state_next`.

        The metadata holds what a search needs: the vocabularies, the special ids, the
        checkpoint's decoding settings and the names of `state`'s rows."""
        source, target = datamodule.source, datamodule.target
        meta = {
            "source_vocabulary": list(source.itos),
            "target_vocabulary": list(target.itos),
            "source_tokens": datamodule.source_tokens,
            "target_tokens": datamodule.target_tokens,
            "lowercase": bool(datamodule.lowercase),
            "special_ids": {"pad": PAD, "bos": BOS, "eos": EOS},
            "decode": dict(self.hparams["decode"]),
            # seqmodels-predict's search over the ONNX files, on onnxruntime
            "search": "seqmodels.export.seq2seq.transduce_onnx(encoder, step, sources)",
            "state": [
                *self.decoder.cell.state_names,
                *(["feed"] if self.decoder.input_feeding else []),
            ],
        }
        B, S = EXAMPLE_BATCH, 5
        lengths = torch.tensor([S, S - 2])
        ids = torch.randint(len(SPECIALS), len(source), (B, S))
        ids = ids.masked_fill(torch.arange(S) >= lengths[:, None], PAD)
        encoder = Program(
            EncoderProgram(self),
            {"ids": ids, "lengths": lengths},
            ["keys", "prepared", "mask", "state"],
            {"ids": {0: "batch", 1: "time"}, "lengths": {0: "batch"}},
            {**meta, "program": "encoder"},
        )
        with torch.no_grad():
            started = dict(zip(encoder.outputs, encoder.module(ids, lengths), strict=True))
        step = Program(
            StepProgram(self),
            {"token": torch.randint(0, len(target), (B,)), **started},
            ["logits", "weights", "state_next"],
            {
                "token": {0: "batch"},
                **{k: {0: "batch", 1: "time"} for k in ("keys", "prepared", "mask")},
                "state": {1: "batch"},
            },
            {**meta, "program": "step"},
        )
        return {"encoder": encoder, "step": step}

    def read_request(self, datamodule: Any, request: Mapping[str, Any]) -> PredictInputs:
        """text=/file= through the datamodule's `encode_texts`: one source per line, or per
        word of a line for a G2P model (`sources_of`)."""
        if missing(datamodule, Transduction):
            raise UserError(
                f"seqmodels-predict reads a sequence-to-sequence model's sources through its "
                f"datamodule's encode_texts; {type(datamodule).__name__} has none"
            )
        x, lengths, names = read_request(
            datamodule, request, lambda line: self.sources_of(line, datamodule)
        )
        return PredictInputs((x, lengths), names)

    def predict_request(
        self, inputs: PredictInputs, request: Mapping[str, Any]
    ) -> list[list[tuple[list[int], float]]]:
        """Each input's n-best outputs (`transduce`) with `beam=` (None: the checkpoint's
        decode.beam_size; 1: greedy) and `nbest=`, in batches of `batch_size`."""
        x, lengths = inputs.batch
        beam, nbest = request.get("beam"), int(request.get("nbest") or 1)
        batch_size = int(request.get("batch_size") or 256)
        found: list[list[tuple[list[int], float]]] = []
        with torch.inference_mode():
            for i in range(0, len(x), batch_size):
                found += self.transduce(
                    x[i : i + batch_size],
                    lengths[i : i + batch_size],
                    beam_size=None if beam is None else int(beam),
                    nbest=nbest,
                )
        return found

    def format_prediction(
        self, datamodule: Any, inputs: PredictInputs, predicted: list[list[tuple[list[int], float]]]
    ) -> Prediction:
        """`output  score  input` per n-best output (score: the output's log-probability per
        token, EOS included); rows (input, output, score)."""
        lines, rows = [], []
        several = any(len(hypotheses) > 1 for hypotheses in predicted)
        for name, hypotheses in zip(inputs.names, predicted, strict=True):
            texts = [(datamodule.decode_target(ids), score) for ids, score in hypotheses]
            width = max(len(t) for t, _ in texts)
            for rank, (text, score) in enumerate(texts, 1):
                shown = f"{name} (#{rank})" if several else name
                lines.append(f"{text:<{width}}  {score:.3f}  {shown}")
                rows.append((name, text, score))
        return Prediction(lines, rows)

    # -- steps -----------------------------------------------------------------------
    def training_step(self, batch: Seq2SeqBatch, batch_idx: int) -> Tensor:
        logits, _ = self(batch.source, batch.source_lengths, batch.target)
        loss = self.loss(logits, batch.target, self.hparams["label_smoothing"])
        self.train_loss.update(loss.detach(), int((batch.target != PAD).sum()))
        if self.writes_logs():
            self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def _evaluate(self, batch: Seq2SeqBatch, stage: str, beam_size: int) -> None:
        # One encoding for both: the teacher-forced loss and the search (the state is immutable).
        state = self.encode(batch.source, batch.source_lengths)
        logits, _ = self.teacher_forced(state, batch.target)
        tokens = int((batch.target != PAD).sum())
        getattr(self, f"{stage}_loss").update(self.loss(logits, batch.target), tokens)
        outputs = self.search(state, beam_size)
        getattr(self, f"{stage}_wer").update(outputs, batch.references)
        getattr(self, f"{stage}_per").update(outputs, batch.references)

    def validation_step(self, batch: Seq2SeqBatch, batch_idx: int) -> None:
        self._evaluate(batch, "val", beam_size=1)  # greedy: fast enough for every epoch

    def test_step(self, batch: Seq2SeqBatch, batch_idx: int) -> None:
        self._evaluate(batch, "test", beam_size=int(self.hparams["decode"]["beam_size"]))

    # -- logging ---------------------------------------------------------------------
    def _log_epoch(self, stage: str) -> None:
        self.log(f"{stage}/loss", getattr(self, f"{stage}_loss"), prog_bar=stage != "train")
        if stage != "train":
            self.log(f"{stage}/wer", getattr(self, f"{stage}_wer"), prog_bar=True)
            self.log(f"{stage}/per", getattr(self, f"{stage}_per"), prog_bar=True)

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def decoding(self) -> str:
        decode = self.hparams["decode"]
        held = "".join(
            f", {name.replace('_', ' ')} {value if isinstance(value, int) else list(value)}"
            for name, value in self.search_options().items()
            if value is not None
        )
        if int(decode["beam_size"]) == 1:
            return f"greedy search (max_len {decode['max_len']}{held})"
        return (
            f"beam search (beam {decode['beam_size']}, length penalty "
            f"{decode['length_penalty']}, max_len {decode['max_len']}{held})"
        )

    def on_test_epoch_start(self) -> None:
        rank_zero_info(f"test decoding: {self.decoding()}; validation decodes greedily")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")
        self.log("test/beam_size", float(self.hparams["decode"]["beam_size"]))

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")
        dm = self.datamodule
        writers = [lg.experiment for lg in self.loggers if isinstance(lg, TensorBoardLogger)]
        if not writers or not provides(dm, Transduction) or self.trainer.sanity_checking:
            return
        if not self.trainer.is_global_zero:
            return
        batch = dm.example_batch()  # the same sources every epoch
        with torch.no_grad():
            state = self.encode(batch.source.to(self.device), batch.source_lengths.to(self.device))
            max_len = int(self.hparams["decode"]["max_len"])
            found = greedy_search(
                self.decoder, state, max_len, bos=BOS, eos=EOS, **self.search_options()
            )
        images, rows = [], ["| source | output | references | |", "|---|---|---|---|"]
        weights = found.weights.float().cpu().numpy()
        for i, (output, refs) in enumerate(zip(found.tokens, batch.references, strict=True)):
            source = dm.source_tokens_of(batch.source[i])
            # With EOS (its row shows where the output ended) unless max_len cut it first.
            written = dm.target_tokens_of([*output, EOS])[: weights.shape[1]]
            images.append(
                attention_image(
                    weights[i, : len(written), : len(source)],
                    source,
                    written,
                    title=dm.decode_source(batch.source[i]),
                )
            )
            right = output in refs
            rows.append(
                f"| {dm.decode_source(batch.source[i])} | {dm.decode_target(output)} | "
                + " / ".join(dm.decode_target(r) for r in refs)
                + f" | {'right' if right else '**wrong**'} |"
            )
        image = stack(images)
        for writer in writers:
            writer.add_image("val/attention", image, self.media_step(), dataformats="HWC")
            writer.add_text("val/examples", "\n".join(rows), self.media_step())

    def charts(self) -> dict[str, dict[str, list[str]]]:
        return {
            "train vs validation": {
                "loss": ["train/loss", "val/loss"],
                "sequence error rate (WER)": ["val/wer", "test/wer"],
                "token error rate (PER)": ["val/per", "test/per"],
            },
            **super().charts(),
        }

    def gradient_flow(self, batch: Seq2SeqBatch) -> Tensor:
        def loss() -> Tensor:
            logits, _ = self(batch.source, batch.source_lengths, batch.target)
            return self.loss(logits, batch.target)

        return state_gradient_norms(self.encoder, loss, batch.source_lengths)


class EncoderProgram(nn.Module):
    """A Seq2Seq's encoder as an exported program: sources and lengths -> the decoder's
    starting state as tensors (keys, prepared, mask, state)."""

    def __init__(self, task: Seq2Seq) -> None:
        super().__init__()
        self.task = task

    def forward(self, ids: Tensor, lengths: Tensor) -> tuple[Tensor, ...]:
        start = self.task.encode(ids, lengths)
        return start.keys, start.prepared, start.mask, stacked(start, self.task.decoder)


class StepProgram(nn.Module):
    """A Seq2Seq's decoder step as an exported program: the previous token and the state
    -> logits, attention weights and the next state."""

    def __init__(self, task: Seq2Seq) -> None:
        super().__init__()
        self.task = task

    def forward(
        self, token: Tensor, keys: Tensor, prepared: Tensor, mask: Tensor, state: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        decoder = self.task.decoder
        parts = len(decoder.cell.state_names)
        cell = state[0] if parts == 1 else tuple(state[:parts].unbind(0))
        feed = state[parts] if decoder.input_feeding else state[0]  # unread without feeding
        logits, new, weights = decoder.step(token, DecoderState(cell, feed, keys, prepared, mask))
        return logits, weights, stacked(new, decoder)


def stacked(state: DecoderState, decoder: AttentionDecoder) -> Tensor:
    """The decoder's running state as one (P, B, H) tensor: the cell's, then h~ if fed back."""
    cell = state.cell if isinstance(state.cell, tuple) else (state.cell,)
    return torch.stack([*cell, *((state.feed,) if decoder.input_feeding else ())])
