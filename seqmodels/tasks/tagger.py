"""Tagger: a tag for every token (part of speech, entities, chunks), BiLSTM-CRF style.

    word embedding ⊕ character encoder ⊕ shape embedding → dropout
        → bidirectional encoder (any seqmodels.nn layer, with lengths) → dropout
        → linear emissions → CRF (Viterbi) or softmax (argmax)

as Lample et al. (2016): a character BiLSTM (or a CNN, Ma & Hovy 2016) reads
each word's characters, case kept, and its final states join the word's
embedding; the words are lowercased, so a small shape embedding (Capitalised,
UPPER, digits, ...) gives the case back. `word_dropout` replaces each word seen
once in training with UNK with that probability while training, so UNK's
embedding learns to stand for a word the model does not know.

`head=crf` scores whole tag sequences (seqmodels.nn.CRF; with span tags its
transitions are constrained to the scheme's valid ones); `head=softmax` picks
each token's tag alone with cross-entropy.

Metrics per stage: token accuracy (`acc`), and with span tags (BIO, BIOES,
IOB1) entity precision, recall and F1 by conlleval's rules (`f1`,
`precision`, `recall`, `f1/<type>`; span_f1.py). Every validation epoch
TensorBoard also gets each tag's F1 (`val/tag_f1/<tag>`), the confusion
matrix as an image (`val/confusion`) and, as a table, a few validation
sentences whose predicted tags differ from the gold ones (`val/examples`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
)

from seqmodels.data.conll import spans
from seqmodels.data.tagging import TaggingBatch
from seqmodels.data.vocab import PAD, UNK
from seqmodels.errors import UserError
from seqmodels.nn import CRF, LSTM
from seqmodels.nn.crf import allowed_transitions
from seqmodels.nn.gradflow import state_gradient_norms
from seqmodels.tasks.attention_plots import attention_image
from seqmodels.tasks.base import TaskModule
from seqmodels.tasks.encoder import build_encoder, encoder_output_size
from seqmodels.tasks.inference import PredictInputs, Prediction, Program, given_keys, read_lines
from seqmodels.tasks.span_f1 import SpanF1

STAGES = ("train", "val", "test")
HEADS = ("crf", "softmax")
CHAR_ENCODERS = ("lstm", "cnn", "none")


class CharEncoder(nn.Module):
    """Per word, features from its characters: a BiLSTM's final states or a CNN's max.

    Shape: chars (N, L) int64, PAD 0 after each word's characters -> (N, output_size).
    """

    def __init__(
        self, vocab_size: int, embedding_dim: int, hidden_size: int, kind: str, kernel_size: int
    ) -> None:
        super().__init__()
        self.kind = kind
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=PAD)
        if kind == "lstm":
            self.rnn = LSTM(embedding_dim, hidden_size, bidirectional=True)
            self.output_size = 2 * hidden_size
        else:
            self.conv = nn.Conv1d(embedding_dim, hidden_size, kernel_size, padding=kernel_size // 2)
            self.output_size = hidden_size

    def forward(self, chars: Tensor) -> Tensor:
        present = chars != PAD
        x = self.embedding(chars)
        if self.kind == "lstm":
            lengths = present.sum(1).clamp(min=1)  # a padding word: one PAD character
            _, (h, _) = self.rnn(x, lengths=lengths)
            return torch.cat([h[-2], h[-1]], dim=-1)  # forward's last step, backward's first
        y = self.conv(x.transpose(1, 2)).transpose(1, 2)  # (N, L, H)
        y = y.masked_fill(~present.unsqueeze(-1), float("-inf")).amax(dim=1)
        return torch.where(torch.isfinite(y), y, torch.zeros_like(y))  # no character: 0


class TaggerProgram(nn.Module):
    """The exported inference path: (words, chars, shapes, lengths) -> emissions (B, T, K)."""

    def __init__(self, task: Tagger) -> None:
        super().__init__()
        self.task = task

    def forward(self, words: Tensor, chars: Tensor, shapes: Tensor, lengths: Tensor) -> Tensor:
        return self.task.emissions(words, chars, shapes, lengths)


class Tagger(TaskModule):
    """A tag for every token: words, characters and shapes through a bidirectional
    encoder, then a CRF (Viterbi decoding) or a softmax per token (see the module doc).

    The task of ``task=tagging``; the datamodule (``TaggingDataModule``) gives the
    vocabulary sizes, the tags and their scheme, so a config names none of them.

    Args:
        encoder: a ``seqmodels.nn`` layer or its config (``model=``); made bidirectional.
        vocab_size: words in the vocabulary (PAD 0, UNK 1 first).
        tags: the tag names, in id order.
        char_vocab_size: characters in the character vocabulary (0 without a char encoder).
        num_shapes: word shapes (0: no shape embedding).
        scheme: the span scheme of the tags (``bio``, ``bioes``, ``iob1``), or None for
            tags that are not spans (part of speech): spans get entity F1 and, with a CRF,
            transitions constrained to the scheme's valid ones.
        singletons_from: the first word id of the words seen once in training (the ids
            ``word_dropout`` may replace with UNK).
        embedding_dim: the word embedding's size.
        char_encoder: ``lstm`` (a character BiLSTM, Lample et al. 2016), ``cnn`` (Ma &
            Hovy 2016) or ``none``.
        char_embedding_dim: the character embedding's size.
        char_hidden_size: per direction of the character BiLSTM, or the CNN's filters.
        char_kernel_size: the CNN's width.
        shape_dim: the shape embedding's size (0: none).
        head: ``crf`` or ``softmax``.
        dropout: on the encoder's input and output.
        word_dropout: the probability that a word seen once in training reads as UNK,
            while training.
        optimizer, scheduler, encoder_init: as every task (config dicts).

    Shape:
        - batch: a ``TaggingBatch``: words (B, T), chars (B, T, L), shapes (B, T),
          tags (B, T), lengths (B,).
        - output of ``forward``: emissions (B, T, number of tags).
        - ``decode(emissions, lengths)``: tag ids (B, T), 0 after each length.
    """

    def __init__(
        self,
        encoder: nn.Module | Mapping[str, Any],
        vocab_size: int,
        tags: Sequence[str],
        char_vocab_size: int = 0,
        num_shapes: int = 0,
        scheme: str | None = None,
        singletons_from: int | None = None,
        embedding_dim: int = 100,
        char_encoder: str = "lstm",
        char_embedding_dim: int = 25,
        char_hidden_size: int = 25,
        char_kernel_size: int = 3,
        shape_dim: int = 4,
        head: str = "crf",
        dropout: float = 0.5,
        word_dropout: float = 0.0,
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        encoder_init: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if head not in HEADS:
            raise UserError(f"task.head must be one of {', '.join(HEADS)}; got {head!r}")
        if char_encoder not in CHAR_ENCODERS:
            raise UserError(
                f"task.char_encoder must be one of {', '.join(CHAR_ENCODERS)}; got {char_encoder!r}"
            )
        for name, p in (("dropout", dropout), ("word_dropout", word_dropout)):
            if not 0.0 <= p < 1.0:
                raise UserError(f"task.{name} must be in [0, 1); got {p}")
        if char_encoder != "none" and char_vocab_size < 2:
            raise UserError("a character encoder needs char_vocab_size from the datamodule")
        self.save_plain_hyperparameters({"_target_": "torch.optim.SGD", "lr": 0.01})
        self.tag_names = [str(t) for t in tags]
        self.hparams["tags"] = self.tag_names  # plain data (instantiate hands a ListConfig)
        K = len(self.tag_names)

        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=PAD)
        features = embedding_dim
        self.chars: CharEncoder | None = None
        if char_encoder != "none":
            self.chars = CharEncoder(
                char_vocab_size,
                char_embedding_dim,
                char_hidden_size,
                char_encoder,
                char_kernel_size,
            )
            features += self.chars.output_size
        self.shapes = nn.Embedding(num_shapes, shape_dim) if shape_dim and num_shapes else None
        features += shape_dim if self.shapes is not None else 0
        if isinstance(encoder, Mapping):
            encoder = {**encoder, "bidirectional": True}  # the future matters as much as the past
        self.encoder = build_encoder(encoder, features, encoder_init)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder_output_size(self.encoder), K)
        self.crf: CRF | None = None
        if head == "crf":
            allowed = allowed_transitions(self.tag_names, scheme) if scheme else None
            self.crf = CRF(K, allowed)

        self.types = sorted({kind for kind, _, _ in spans(self.tag_names)}) if scheme else []
        for stage in STAGES:  # a ModuleDict key cannot be "train": attributes per stage
            setattr(self, f"{stage}_loss", MeanMetric())
            setattr(self, f"{stage}_acc", MulticlassAccuracy(K, average="micro"))
            if self.types:
                setattr(self, f"{stage}_spans", SpanF1(self.types))
        self.val_tag_f1 = MulticlassF1Score(K, average=None)
        self.val_confusion = MulticlassConfusionMatrix(K)

    # -- model -----------------------------------------------------------------------
    def emissions(self, words: Tensor, chars: Tensor, shapes: Tensor, lengths: Tensor) -> Tensor:
        """(B, T, K) per-token tag scores from a batch's words, characters and shapes."""
        if self.training and self.hparams["word_dropout"] and self.hparams["singletons_from"]:
            rare = words >= int(self.hparams["singletons_from"])
            drop = torch.rand(words.shape, device=words.device) < self.hparams["word_dropout"]
            words = words.masked_fill(rare & drop, UNK)
        parts = [self.embedding(words)]
        if self.chars is not None:
            B, T, L = chars.shape
            parts.append(self.chars(chars.reshape(B * T, L)).reshape(B, T, -1))
        if self.shapes is not None:
            parts.append(self.shapes(shapes))
        output, _ = self.encoder(self.dropout(torch.cat(parts, dim=-1)), lengths=lengths)
        return self.head(self.dropout(output))

    def forward(self, batch: TaggingBatch) -> Tensor:
        return self.emissions(batch.words, batch.chars, batch.shapes, batch.lengths)

    def loss(self, emissions: Tensor, tags: Tensor, lengths: Tensor) -> Tensor:
        """CRF: the mean negative log-likelihood per sentence; softmax: cross-entropy
        per token."""
        if self.crf is not None:
            return self.crf(emissions, tags, lengths).mean()
        valid = self.valid(lengths, tags.shape[1])
        return nn.functional.cross_entropy(emissions[valid], tags[valid])

    def decode(self, emissions: Tensor, lengths: Tensor) -> Tensor:
        """(B, T) the predicted tag ids: Viterbi for a CRF, each token's argmax otherwise."""
        if self.crf is not None:
            return self.crf.decode(emissions, lengths)[0]
        return emissions.argmax(-1).masked_fill(~self.valid(lengths, emissions.shape[1]), 0)

    @staticmethod
    def valid(lengths: Tensor, T: int) -> Tensor:
        return torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]

    def tag(self, batch: TaggingBatch) -> list[list[str]]:
        """Each sentence's predicted tag names: the inference path of seqmodels-predict."""
        predicted = self.decode(self(batch), batch.lengths)
        return self.names(predicted, batch.lengths)

    # -- inference (TaskModule's contract) --------------------------------------------
    def read_request(self, datamodule: Any, request: Mapping[str, Any]) -> PredictInputs:
        """text= (one sentence) or file= (one sentence per line), tokens split on whitespace."""
        given = given_keys(request)
        if given not in (["text"], ["file"]):
            raise UserError(
                'this model tags sentences: give text="a sentence" or file=sentences.txt '
                "(one sentence per line, tokens separated by spaces; file=- for stdin)"
            )
        if request.get("text") is not None:
            numbered = [(0, str(request["text"]))]
        else:
            lines = read_lines(str(request["file"]))
            numbered = [(i, t) for i, t in enumerate(lines, 1) if t.strip()]
            if not numbered:
                raise UserError(f"{request['file']} has nothing to tag: put one sentence per line")
        tokens = [text.split() for _, text in numbered]
        if not all(tokens):
            raise UserError("text= has no tokens to tag: give a sentence, tokens split by spaces")
        names = [f"line {i}" if i else "text" for i, _ in numbered]
        return PredictInputs((datamodule.encode_sentences(tokens), tokens), names)

    def predict_request(self, inputs: PredictInputs, request: Mapping[str, Any]) -> Any:
        """Each sentence's tags, in batches of `batch_size` sentences."""
        batch, _ = inputs.batch
        size = int(request.get("batch_size") or 256)
        found: list[list[str]] = []
        with torch.inference_mode():
            for i in range(0, len(batch.lengths), size):
                found += self.tag(TaggingBatch(*(t[i : i + size] for t in batch)))
        return found

    def format_prediction(
        self, datamodule: Any, inputs: PredictInputs, predicted: Any
    ) -> Prediction:
        """`token<TAB>tag` per line as CoNLL writes a sentence, a blank line after each
        (`# line N` before each sentence of a file); rows are (name, tokens, tags)."""
        _, tokens = inputs.batch
        lines, rows = [], []
        for name, words, tags in zip(inputs.names, tokens, predicted, strict=True):
            if name != "text":
                lines.append(f"# {name}")
            lines += [f"{w}\t{t}" for w, t in zip(words, tags, strict=True)] + [""]
            rows.append((name, words, tags))
        return Prediction(lines, rows)

    def inference_program(self, datamodule: Any) -> Program:
        """What seqmodels-export writes: the emissions from a batch's words, characters,
        shapes and lengths. Viterbi runs beside the file, not inside it: its metadata
        carries the CRF's start, transition and end scores (constraints applied), so a
        runtime decodes the emissions with them (softmax head: the argmax per token)."""
        B, T, L = 2, 5, int(getattr(datamodule, "max_word_len", 30))
        hp = self.hparams
        words = torch.randint(2, int(hp["vocab_size"]), (B, T))
        chars = torch.randint(2, max(int(hp["char_vocab_size"]), 3), (B, T, L))
        shapes = torch.randint(1, max(int(hp["num_shapes"]), 2), (B, T))
        lengths = torch.tensor([T, T - 2])
        meta: dict[str, Any] = {"tags": list(self.tag_names), "scheme": hp["scheme"]}
        meta["decoding"] = "argmax per token" if self.crf is None else "viterbi"
        if self.crf is not None:
            start, transitions, end = (x.detach().tolist() for x in self.crf.scores())
            meta["crf"] = {"start": start, "transitions": transitions, "end": end}
        if getattr(datamodule, "words", None) is not None:
            meta["vocabulary"] = list(datamodule.words.itos)
            meta["characters"] = list(datamodule.chars.itos)
            meta["lowercase"] = bool(datamodule.lowercase)
            meta["max_word_len"] = L
        time = {0: "batch", 1: "time"}
        return Program(
            TaggerProgram(self),
            {"words": words, "chars": chars, "shapes": shapes, "lengths": lengths},
            ["emissions"],
            {"words": time, "chars": time, "shapes": time, "lengths": {0: "batch"}},
            meta,
        )

    def names(self, ids: Tensor, lengths: Tensor) -> list[list[str]]:
        return [
            [self.tag_names[k] for k in row[:n]]
            for row, n in zip(ids.tolist(), lengths.tolist(), strict=True)
        ]

    # -- steps -----------------------------------------------------------------------
    def _step(self, batch: TaggingBatch, stage: str) -> Tensor:
        emissions = self(batch)
        loss = self.loss(emissions, batch.tags, batch.lengths)
        getattr(self, f"{stage}_loss").update(loss.detach(), batch.lengths.numel())
        if stage == "train" and self.crf is not None:
            predicted = emissions.detach().argmax(-1)  # Viterbi every step costs; argmax tells
        else:
            predicted = self.decode(emissions.detach(), batch.lengths)
        valid = self.valid(batch.lengths, batch.tags.shape[1])
        getattr(self, f"{stage}_acc").update(predicted[valid], batch.tags[valid])
        if stage != "train" and self.types:
            getattr(self, f"{stage}_spans").update(
                self.names(predicted, batch.lengths), self.names(batch.tags, batch.lengths)
            )
        if stage == "val":
            self.val_tag_f1.update(predicted[valid], batch.tags[valid])
            self.val_confusion.update(predicted[valid], batch.tags[valid])
        return loss

    def training_step(self, batch: TaggingBatch, batch_idx: int) -> Tensor:
        loss = self._step(batch, "train")
        if self.writes_logs():
            self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def validation_step(self, batch: TaggingBatch, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: TaggingBatch, batch_idx: int) -> None:
        self._step(batch, "test")

    # -- logging ---------------------------------------------------------------------
    def _log_epoch(self, stage: str) -> None:
        self.log(f"{stage}/loss", getattr(self, f"{stage}_loss"), prog_bar=stage != "train")
        self.log(f"{stage}/acc", getattr(self, f"{stage}_acc"), prog_bar=True)
        if stage != "train" and self.types:
            metric = getattr(self, f"{stage}_spans")
            for name, value in metric.compute().items():
                self.log(f"{stage}/{name}", value, prog_bar=name == "f1")
            metric.reset()

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")
        per_tag = self.val_tag_f1.compute()
        confusion = self.val_confusion.compute()
        self.val_tag_f1.reset()
        self.val_confusion.reset()
        for name, value in zip(self.tag_names, per_tag, strict=True):
            self.log(f"val/tag_f1/{name}", value)
        dm = self.datamodule
        writers = [lg.experiment for lg in self.loggers if isinstance(lg, TensorBoardLogger)]
        if not writers or self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        if not hasattr(dm, "example_sentences"):
            return
        image = self.confusion_image(confusion.cpu())
        table = self.examples_table(*dm.example_sentences())
        for writer in writers:
            writer.add_image("val/confusion", image, self.media_step(), dataformats="HWC")
            writer.add_text("val/examples", table, self.media_step())

    def confusion_image(self, confusion: Tensor) -> Any:
        """The confusion matrix, each gold row divided by its count, as an RGB image."""
        rows = confusion.double()
        share = (rows / rows.sum(1, keepdim=True).clamp(min=1)).numpy()
        return attention_image(
            share,
            [f"{t}" for t in self.tag_names],
            [f"{t} ({int(n)})" for t, n in zip(self.tag_names, rows.sum(1), strict=True)],
            title="validation: gold tag (rows, count) vs predicted tag (columns), share of row",
            cell=max(24, 7 * max(len(t) for t in self.tag_names) + 8),  # room for the labels
        )

    def examples_table(self, batch: TaggingBatch, tokens: list[list[str]], shown: int = 5) -> str:
        """A markdown table of the first few sentences whose predicted tags differ."""
        with torch.no_grad():
            batch = TaggingBatch(*(x.to(self.device) for x in batch))
            predicted = self.tag(batch)
        gold = self.names(batch.tags, batch.lengths)
        rows = ["| sentence (token/gold→predicted where they differ) |", "|---|"]
        for words, g, p in zip(tokens, gold, predicted, strict=True):
            if g == p:
                continue
            cells = [
                w if a == b else f"**{w}/{a}→{b}**" for w, a, b in zip(words, g, p, strict=True)
            ]
            rows.append("| " + " ".join(cells).replace("|", "\\|") + " |")
            if len(rows) - 2 == shown:
                break
        if len(rows) == 2:
            rows.append(f"| all {len(tokens)} example sentences are tagged right |")
        return "\n".join(rows)

    def charts(self) -> dict[str, dict[str, list[str]]]:
        charts = {"loss": ["train/loss", "val/loss"], "token accuracy": ["train/acc", "val/acc"]}
        if self.types:
            charts["entity F1 (conlleval)"] = ["val/f1", "test/f1"]
        return {"train vs validation": charts, **super().charts()}

    def gradient_flow(self, batch: TaggingBatch) -> Tensor:
        def loss() -> Tensor:
            return self.loss(self(batch), batch.tags, batch.lengths)

        return state_gradient_norms(self.encoder, loss, batch.lengths)
