"""SequenceClassifier: many-to-one classification of token or feature sequences.

    input adapter → recurrent encoder (seqmodels.nn) → pooling → dropout → head

The input adapter is an embedding for token ids (`vocab_size=`, PAD id 0) or a
linear projection for real-valued features (`input_size=`; `embedding_dim=None`
feeds the features to the encoder as they are). Pooling respects `lengths`:

- `last`: the final hidden state of the top layer (both directions when
  bidirectional). With lengths it is the state after each sequence's own last
  step, and the backward direction's state after reading step 0.
- `mean` / `max`: over valid steps only. `meanmax`: both, concatenated.

`embedding_init_range=r` draws the embedding from U(-r, r) (Keras' default is
0.05) instead of torch's N(0, 1): a small embedding (the classic Keras IMDB
example's has 2 dimensions) initialised at unit scale barely moves under Adam's ~1e-3 steps.

`input_dropout` drops whole feature channels of the encoder's input, with the
same mask at every step of a sequence (variational or "locked" dropout, Keras'
SpatialDropout1D): a mask drawn anew per step would mostly be averaged away by
the recurrence. `dropout` applies to the pooled features before the head.

`encoder_init` applies an init function to the encoder once built, e.g.
`{_target_: seqmodels.nn.init.chrono_, max_steps: 784}` for pixel MNIST, whose
default-initialised LSTM forgets too fast to learn at all (seqmodels.nn.init).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from seqmodels.data import (
    Classification,
    ImageInputs,
    RendersExamples,
    TextInputs,
    missing,
    provides,
)
from seqmodels.errors import UserError
from seqmodels.nn.gradflow import state_gradient_norms
from seqmodels.tasks.base import TaskModule
from seqmodels.tasks.encoder import build_encoder, encoder_output_size
from seqmodels.tasks.inference import (
    EXAMPLE_BATCH,
    PredictInputs,
    Prediction,
    Program,
    read_request,
)

POOLINGS = ("last", "mean", "max", "meanmax")
STAGES = ("train", "val", "test")


class SequenceClassifier(TaskModule):
    r"""Many-to-one classification of a sequence of token ids or of feature vectors.

    ``input adapter -> recurrent encoder -> pooling -> dropout -> linear head``: the
    input adapter is an embedding for token ids (``vocab_size=``, id 0 pads) or a
    linear projection of real-valued features (``input_size=``); pooling reads the
    encoder's output with each sequence's own length (see the module docstring).
    Trained with cross-entropy; logs loss and accuracy per stage. The task of
    ``task=parity``, ``task=imdb`` and ``task=mnist``.

    Args:
        encoder: a ``seqmodels.nn`` layer (``LSTM``, ``GRU``, ``RNN``, ``Recurrent``)
            whose ``input_size`` is ``embedding_dim`` (or ``input_size`` when
            ``embedding_dim=None``), or its config as a dict with ``_target_``
            (``input_size`` is then filled in).
        num_classes: number of classes C.
        vocab_size: number of token ids (with PAD 0) for token inputs; give exactly one
            of ``vocab_size`` and ``input_size``.
        input_size: features per step F for real-valued inputs.
        embedding_dim: size of the embedding (token inputs) or of the projection
            (features; ``None`` feeds the features to the encoder as they are).
            Default: 64.
        embedding_init_range: draw the embedding from U(-r, r) instead of torch's
            N(0, 1). Default: ``None``.
        pooling: ``"last"`` (final state of the top layer), ``"mean"``, ``"max"`` or
            ``"meanmax"`` (both, concatenated), over valid steps only. Default: ``"last"``.
        dropout: on the pooled features before the head. Default: 0.
        input_dropout: on the encoder's input, whole channels with one mask per
            sequence (Keras' SpatialDropout1D). Default: 0.
        optimizer: the optimizer's config (``{"_target_": "torch.optim.Adam", "lr":
            1e-3}`` when ``None``); see ``seqmodels.tasks.optim``.
        scheduler: an LR scheduler's config, or ``None``.
        encoder_init: an init function's config applied to the encoder once built,
            e.g. ``{"_target_": "seqmodels.nn.init.chrono_", "max_steps": 784}``.

    Shape:
        - x: :math:`(B, T)` token ids (int64) or :math:`(B, T, F)` features.
        - lengths: :math:`(B,)` valid steps of each sequence, or ``None`` (all T).
        - Output of ``forward``: :math:`(B, C)` logits; ``class_probabilities``
          gives their softmax.

    Example::

        >>> import torch
        >>> from seqmodels.tasks.classifier import SequenceClassifier
        >>> model = SequenceClassifier(
        ...     {"_target_": "seqmodels.nn.LSTM", "hidden_size": 32},
        ...     num_classes=2,
        ...     vocab_size=100,
        ...     pooling="mean",
        ... )
        >>> ids = torch.randint(1, 100, (4, 12))
        >>> model(ids, lengths=torch.tensor([12, 9, 5, 1])).shape
        torch.Size([4, 2])
    """

    def __init__(
        self,
        encoder: nn.Module | Mapping[str, Any],
        num_classes: int,
        vocab_size: int | None = None,
        input_size: int | None = None,
        embedding_dim: int | None = 64,
        embedding_init_range: float | None = None,
        pooling: str = "last",
        dropout: float = 0.0,
        input_dropout: float = 0.0,
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        encoder_init: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if (vocab_size is None) == (input_size is None):
            raise UserError(
                "SequenceClassifier needs exactly one of vocab_size (token ids) or "
                f"input_size (real-valued features); got vocab_size={vocab_size}, "
                f"input_size={input_size}"
            )
        if pooling not in POOLINGS:
            raise UserError(f"task.pooling must be one of {', '.join(POOLINGS)}; got {pooling!r}")
        for name, p in (("dropout", dropout), ("input_dropout", input_dropout)):
            if not 0.0 <= p < 1.0:
                raise UserError(f"task.{name} must be in [0, 1); got {p}")
        if vocab_size is not None and not embedding_dim:
            raise UserError("task.embedding_dim must be a positive integer for token inputs")
        self.save_plain_hyperparameters({"_target_": "torch.optim.Adam", "lr": 1e-3})

        self.input_adapter: nn.Module
        if vocab_size is not None and embedding_dim:
            embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=0)
            if embedding_init_range:  # Keras' U(-0.05, 0.05) instead of torch's N(0, 1)
                with torch.no_grad():
                    embedding.weight.uniform_(-embedding_init_range, embedding_init_range)
                    embedding.weight[0].zero_()  # PAD stays zero
            self.input_adapter, encoder_input = embedding, embedding_dim
        elif input_size is not None and embedding_dim:
            self.input_adapter, encoder_input = nn.Linear(input_size, embedding_dim), embedding_dim
        else:
            assert input_size is not None  # checked above: features fed as they are
            self.input_adapter, encoder_input = nn.Identity(), input_size
        self.input_dropout = nn.Dropout1d(input_dropout)
        self.encoder = build_encoder(encoder, encoder_input, encoder_init)
        features = encoder_output_size(self.encoder) * (2 if pooling == "meanmax" else 1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(features, num_classes)

        # Per stage, a running mean of the loss and the accuracy, updated every batch
        # and logged once per epoch. validate_args=False: the inputs are argmax ids and
        # labels that cross-entropy has already checked.
        for (
            stage
        ) in STAGES:  # train_loss, train_acc, val_loss, ... (a ModuleDict key cannot be "train")
            setattr(self, f"{stage}_loss", MeanMetric())
            setattr(
                self,
                f"{stage}_acc",
                MulticlassAccuracy(num_classes, average="micro", validate_args=False),
            )

    # -- model ---------------------------------------------------------------
    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        inputs = self.input_adapter(x)
        if self.input_dropout.p and self.training:  # (B, T, C) -> channels over (B, C, T)
            inputs = self.input_dropout(inputs.transpose(1, 2)).transpose(1, 2)
        output, state = self.encoder(inputs, lengths=lengths)
        return self.head(self.dropout(self._pool(output, state, lengths)))

    def _pool(self, output: Tensor, state: Any, lengths: Tensor | None) -> Tensor:
        pooling = self.hparams["pooling"]
        if pooling == "last":
            h = state[0] if isinstance(state, tuple) else state  # LSTM: (h, c)
            directions = 2 if getattr(self.encoder, "bidirectional", False) else 1
            return torch.cat(list(h[-directions:]), dim=-1)  # top layer, (B, D*H)
        if lengths is None:
            mean, top = output.mean(dim=1), output.amax(dim=1)
        else:
            steps = torch.arange(output.size(1), device=output.device)
            valid = (steps[None, :] < lengths[:, None]).unsqueeze(-1)  # (B, T, 1)
            mean = (output * valid).sum(1) / lengths.clamp(min=1)[:, None].to(output.dtype)
            top = output.masked_fill(~valid, float("-inf")).amax(dim=1)
        if pooling == "mean":
            return mean
        if pooling == "max":
            return top
        return torch.cat([mean, top], dim=-1)

    # -- steps ---------------------------------------------------------------
    @staticmethod
    def _unpack(batch: Any) -> tuple[Tensor, Tensor, Tensor | None]:
        x, y, *rest = batch
        return x, y, (rest[0] if rest else None)

    def _step(self, batch: Any, stage: str) -> tuple[Tensor, Tensor]:
        x, y, lengths = self._unpack(batch)
        logits = self(x, lengths)
        loss = nn.functional.cross_entropy(logits, y)
        preds = logits.argmax(dim=-1)
        getattr(self, f"{stage}_loss").update(loss.detach(), y.size(0))
        getattr(self, f"{stage}_acc").update(preds, y)
        return loss, preds

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        loss, _ = self._step(batch, "train")
        # One self.log costs ~1 ms in Lightning 2.6 (it re-walks its result object),
        # a quarter of a small model's step: log the step loss only on the steps
        # whose logs are written (trainer.log_every_n_steps); the epoch means
        # come from the metrics above.
        if self.writes_logs():
            self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int = 0) -> Tensor:
        x, lengths = batch
        return self.class_probabilities(x, lengths)

    def class_probabilities(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """(B, num_classes) probabilities: the inference path that seqmodels-predict runs
        and seqmodels-export writes out (seqmodels.export)."""
        return self(x, lengths).softmax(dim=-1)

    # -- inference (TaskModule's contract) ----------------------------------
    def inference_program(self, datamodule: Any) -> Program:
        """Class probabilities from raw pixels (an ImageInputs datamodule, its own encoding
        inside) or from token ids and lengths; the class names (and the vocabulary) as
        metadata."""
        meta: dict[str, Any] = {}
        if provides(datamodule, Classification):
            meta["class_names"] = list(datamodule.class_names)
        B = EXAMPLE_BATCH
        if provides(datamodule, ImageInputs):
            h, w = datamodule.image_shape
            images = torch.randint(0, 256, (B, h, w), dtype=torch.uint8)
            module = ImageClassifier(self, datamodule.encode_images)  # as predict reads
            return Program(
                module, {"images": images}, ["probabilities"], {"images": {0: "batch"}}, meta
            )
        if not self.hparams.get("vocab_size"):
            return super().inference_program(datamodule)  # features of one's own: no reader
        vocab = getattr(datamodule, "vocab", None)
        if vocab is not None and hasattr(vocab, "itos"):
            meta["vocabulary"] = list(vocab.itos)  # id -> word; 0 pads, 1 is unknown
        T, V = 5, int(self.hparams["vocab_size"])
        ids = torch.randint(1, V, (B, T))
        lengths = torch.tensor([T, T - 2])
        ids[1, T - 2 :] = 0  # padding after each sequence's length
        return Program(
            TokenClassifier(self),
            {"ids": ids, "lengths": lengths},
            ["probabilities"],
            {"ids": {0: "batch", 1: "time"}, "lengths": {0: "batch"}},
            meta,
        )

    def read_request(self, datamodule: Any, request: Mapping[str, Any]) -> PredictInputs:
        """text=/file= through the datamodule's `encode_texts`, image= through its
        `encode_images` (seqmodels.tasks.inference.read_request)."""
        if missing(datamodule, Classification) or not (
            provides(datamodule, TextInputs) or provides(datamodule, ImageInputs)
        ):
            raise UserError(
                f"seqmodels-predict reads text or images; this {type(datamodule).__name__} "
                "has no encoder for either (encode_texts, encode_images)"
            )
        x, lengths, names = read_request(datamodule, request)
        return PredictInputs((x, lengths), names)

    def predict_request(self, inputs: PredictInputs, request: Mapping[str, Any]) -> Tensor:
        """(N, num_classes) class probabilities, in batches of request["batch_size"]."""
        x, lengths = inputs.batch
        batch_size = int(request.get("batch_size") or 256)
        probs = []
        with torch.inference_mode():
            for i in range(0, len(x), batch_size):
                piece = lengths[i : i + batch_size] if lengths is not None else None
                probs.append(self.predict_step((x[i : i + batch_size], piece)))
        return torch.cat(probs)

    def format_prediction(
        self, datamodule: Any, inputs: PredictInputs, predicted: Tensor
    ) -> Prediction:
        """`label  probability  input` per input; with more than two classes a second line
        with every class's probability. Rows: (input, label, probability)."""
        p, label = predicted.max(dim=-1)
        class_names = datamodule.class_names
        rows = [
            (n, class_names[int(k)], float(q))
            for n, k, q in zip(inputs.names, label, p, strict=True)
        ]
        width = max(len(c) for c in class_names)
        lines = []
        for (name, lab, q), row in zip(rows, predicted, strict=True):
            lines.append(f"{lab:<{width}}  {q:.3f}  {name}")
            if len(class_names) > 2:  # with two, the top one says it all
                lines.append(
                    "  "
                    + "  ".join(
                        f"{c}:{float(r):.3f}" for c, r in zip(class_names, row, strict=True)
                    )
                )
        return Prediction(lines, rows)

    # -- logging -------------------------------------------------------------
    def _log_epoch(self, stage: str) -> None:
        # Logging the metric objects: Lightning computes them at the epoch's end and resets them.
        # train/loss is the epoch's mean, the curve to compare with val/loss; the
        # per-step view is train/loss_step.
        self.log(f"{stage}/loss", getattr(self, f"{stage}_loss"), prog_bar=stage != "train")
        self.log(f"{stage}/acc", getattr(self, f"{stage}_acc"), prog_bar=True)

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")
        dm = self.datamodule
        writers = [lg.experiment for lg in self.loggers if isinstance(lg, TensorBoardLogger)]
        if not writers or not provides(dm, RendersExamples) or self.trainer.sanity_checking:
            return
        if not self.trainer.is_global_zero:
            return
        x, y, lengths = self._unpack(dm.example_batch())  # the same examples every epoch
        probs = self.predict_step(
            (x.to(self.device), None if lengths is None else lengths.to(self.device))
        ).cpu()
        for writer in writers:
            dm.log_examples(writer, (x, y, lengths), probs, global_step=self.media_step())

    # -- TensorBoard ---------------------------------------------------------
    def charts(self) -> dict[str, dict[str, list[str]]]:
        return {
            "train vs validation": {
                "loss": ["train/loss", "val/loss"],
                "accuracy": ["train/acc", "val/acc"],
            },
            **super().charts(),
        }

    def gradient_flow(self, batch: Any) -> Tensor:
        x, y, lengths = self._unpack(batch)
        loss = lambda: nn.functional.cross_entropy(self(x, lengths), y)  # noqa: E731
        return state_gradient_norms(self.encoder, loss, lengths)


class TokenClassifier(nn.Module):
    """The exported program of a classifier of token ids: (ids, lengths) -> probabilities."""

    def __init__(self, task: SequenceClassifier) -> None:
        super().__init__()
        self.task = task

    def forward(self, ids: Tensor, lengths: Tensor) -> Tensor:
        return self.task.class_probabilities(ids, lengths)


class ImageClassifier(nn.Module):
    """The exported program of an image classifier: uint8 images -> probabilities, the
    datamodule's encoding of pixels inside (the file reads images as they are)."""

    def __init__(self, task: SequenceClassifier, encode_images: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.task, self.encode_images = task, encode_images

    def forward(self, images: Tensor) -> Tensor:
        return self.task.class_probabilities(self.encode_images(images))
