"""LanguageModel: next-character prediction with truncated BPTT.

    embedding → recurrent encoder (seqmodels.nn) → dropout → per-step linear head

Batches come from `CharTextDataModule`: row b of batch i + 1 continues row b of
batch i, so the final state of one batch is the initial state of the next
(detached: gradients flow back `seq_len` steps only, which is what truncated
BPTT means). Lightning 2 dropped `truncated_bptt_steps`, so the module carries
the state itself; it resets at each epoch start, and validation carries its
own state the same way over the validation streams. The carried training
state travels in every checkpoint (`tbptt_state`), so a run resumed in the
middle of an epoch continues its streams from where they were.

Loss is in nats per character; `val/bpc` (bits per character) and `val/ppl`
(perplexity) are the same number in other units. Each validation epoch logs a
~300-character sample to TensorBoard (seqmodels.nn.generation: O(1) work per character).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor, nn
from torch.nn import functional as F
from torchmetrics import MeanMetric

from seqmodels.data import CharacterText, missing, provides
from seqmodels.errors import UserError
from seqmodels.nn.generation import default_prime, sample_text
from seqmodels.nn.gradflow import state_gradient_norms
from seqmodels.tasks.base import TaskModule
from seqmodels.tasks.encoder import build_encoder, encoder_output_size
from seqmodels.tasks.inference import EXAMPLE_BATCH, Program


def detach_state(state: Any) -> Any:
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


def state_batch_size(state: Any) -> int:
    return (state[0] if isinstance(state, tuple) else state).shape[1]


def state_to(state: Any, device: torch.device) -> Any:
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.to(device) for s in state)
    return state.to(device)


TBPTT_KEY = "tbptt_state"  # the checkpoint's entry for the carried training state


class LanguageModel(TaskModule):
    r"""Next-character prediction with truncated backpropagation through time.

    ``embedding -> recurrent encoder -> dropout -> per-step linear head``. Row b of
    one batch continues row b of the previous one, so the encoder's final state is
    carried (detached) into the next batch (see the module docstring). Loss in nats
    per character, with ``val/bpc`` and ``val/ppl``; a text sample in TensorBoard
    each validation epoch. The task of ``task=chargen``; ``seqmodels-sample``
    generates from it (``sample``).

    Args:
        encoder: a unidirectional ``seqmodels.nn`` layer whose ``input_size`` is
            ``embedding_dim``, or its config as a dict with ``_target_`` (filled in).
        vocab_size: number of distinct tokens V (characters).
        embedding_dim: size of the token embedding. Default: 64.
        dropout: on the embedding and on the encoder's output (the layer's own
            ``dropout`` acts between its stacked layers). Default: 0.
        optimizer: the optimizer's config (Adam, lr 2e-3 when ``None``).
        scheduler: an LR scheduler's config, or ``None``.
        sample_length: characters of the sample logged each validation epoch (0: none).
            Default: 300.
        sample_temperature: its softmax temperature. Default: 0.8.
        encoder_init: an init function's config applied to the encoder once built.

    Shape:
        - x: :math:`(B, T)` token ids; state: the encoder's state or ``None`` (zeros).
        - Output of ``forward``: logits :math:`(B, T, V)` and the final state.
        - ``step(token, state)``: token :math:`(B,)` -> logits :math:`(B, V)` and the
          new state.

    Example::

        >>> import torch
        >>> from seqmodels.tasks.language_model import LanguageModel
        >>> model = LanguageModel({"_target_": "seqmodels.nn.LSTM", "hidden_size": 32},
        ...                       vocab_size=60, embedding_dim=16)
        >>> logits, state = model(torch.randint(0, 60, (2, 10)))
        >>> logits.shape
        torch.Size([2, 10, 60])
        >>> next_logits, state = model.step(torch.tensor([5, 7]), state)  # carries on
        >>> next_logits.shape
        torch.Size([2, 60])
    """

    def __init__(
        self,
        encoder: nn.Module | Mapping[str, Any],
        vocab_size: int,
        embedding_dim: int = 64,
        dropout: float = 0.0,
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        sample_length: int = 300,
        sample_temperature: float = 0.8,
        encoder_init: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_plain_hyperparameters({"_target_": "torch.optim.Adam", "lr": 2e-3})

        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.encoder = build_encoder(encoder, embedding_dim, encoder_init)
        if getattr(self.encoder, "bidirectional", False):
            raise UserError(
                "a language model predicts the next character from the past only: "
                "set model.bidirectional=false"
            )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder_output_size(self.encoder), vocab_size)

        self.train_loss = MeanMetric()
        self.val_loss = MeanMetric()
        self.test_loss = MeanMetric()
        # Truncated BPTT: the detached final state of the previous batch, per stage.
        self._state: dict[str, Any] = {}

    # -- model ---------------------------------------------------------------
    def forward(self, x: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        """x (B, T) token ids → logits (B, T, V) and the encoder's final state."""
        out, state = self.encoder(self.dropout(self.embedding(x)), state)
        return self.head(self.dropout(out)), state

    def step(self, token: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        """One token per stream: ids (B,) and the state (None: zeros) -> the next token's
        logits (B, V) and the new state. The function seqmodels-export writes out
        (seqmodels.export); seqmodels.nn.generation steps the same cells with a faster
        batch-1 stepper."""
        logits, state = self(token[:, None], state)
        return logits[:, 0], state

    # -- inference (TaskModule's contract) ----------------------------------
    def inference_program(self, datamodule: Any) -> Program:
        """One step: (token (B,), h (L, B, H) [, c]) -> (logits (B, V), h_next [, c_next]);
        the characters (id -> text) as metadata."""
        meta: dict[str, Any] = {}
        if provides(datamodule, CharacterText):
            meta["characters"] = [datamodule.decode([i]) for i in range(datamodule.vocab_size)]
        B = EXAMPLE_BATCH
        enc: Any = self.encoder  # a seqmodels layer: num_layers, hidden_size are ints
        LD = int(enc.num_layers) * (2 if getattr(enc, "bidirectional", False) else 1)
        state = torch.zeros(LD, B, int(enc.hidden_size))
        inputs = {"token": torch.randint(0, int(self.hparams["vocab_size"]), (B,)), "h": state}
        outputs = ["logits", "h_next"]
        parts = int(getattr(enc, "state_size", 1))
        if parts > 2:
            raise UserError(
                f"seqmodels-export writes a language model's step with a state of h (and c); "
                f"this encoder's cells carry {parts} state tensors"
            )
        if parts == 2:  # (h, c): an LSTM, or a cell of one's own with a cell state
            inputs["c"] = state.clone()
            outputs.append("c_next")
        dynamic = {"token": {0: "batch"}, **{k: {1: "batch"} for k in inputs if k != "token"}}
        return Program(LanguageModelStep(self), inputs, outputs, dynamic, meta)

    def sample(
        self,
        datamodule: Any,
        prime: str | None = None,
        length: int = 1000,
        temperature: float = 1.0,
        top_k: int = 0,
        seed: int | None = None,
    ) -> Iterator[str]:
        """The prime (the datamodule's default when None; `\\n` and `\\t` typed on a
        command line are a newline and a tab unless the vocabulary has a backslash), then
        `length` sampled characters, each as it is made (seqmodels.nn.generation)."""
        if missing(datamodule, CharacterText):
            raise UserError(
                f"seqmodels-sample needs the characters of the text the model read; "
                f"{type(datamodule).__name__} has none (encode, decode, vocab_size)"
            )
        prime = default_prime(datamodule) if prime is None else str(prime)
        if "\\" not in datamodule.decode(range(datamodule.vocab_size)):
            # a command line cannot type a newline: accept \n and \t
            prime = prime.replace("\\n", "\n").replace("\\t", "\t")
        chars = sample_text(self, datamodule, prime, length, temperature, top_k, seed)
        yield prime
        yield from chars

    # -- steps ---------------------------------------------------------------
    def _step(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        x, y = batch
        state = self._state.get(stage)
        if state is not None and state_batch_size(state) != x.shape[0]:
            state = None  # another stream layout (should not happen within a split)
        state = state_to(state, x.device)  # a state loaded from a checkpoint sits on the CPU
        logits, state = self(x, state)
        self._state[stage] = detach_state(state)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        loss = self._step(batch, "train")
        self.train_loss.update(loss.detach(), weight=batch[1].numel())
        if self.writes_logs():  # the per-step view; train/loss is the epoch's mean
            self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        # Weighted by characters: the last batch of a split may be shorter.
        self.val_loss.update(self._step(batch, "val"), weight=batch[1].numel())

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self.test_loss.update(self._step(batch, "test"), weight=batch[1].numel())

    # Each pass over a split starts from a zero state: the streams restart there.
    def on_train_epoch_start(self) -> None:
        self._state.pop("train", None)

    def on_validation_epoch_start(self) -> None:
        self._state.pop("val", None)

    def on_test_epoch_start(self) -> None:
        self._state.pop("test", None)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self._state.get("train") is not None:
            checkpoint[TBPTT_KEY] = state_to(self._state["train"], torch.device("cpu"))

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Used when resuming mid-epoch; an epoch's start drops it (on_train_epoch_start).
        if checkpoint.get(TBPTT_KEY) is not None:
            self._state["train"] = checkpoint[TBPTT_KEY]

    def _log_nats(self, stage: str, metric: MeanMetric) -> None:
        nats = metric.compute()
        metric.reset()
        self.log(f"{stage}/loss", nats, prog_bar=stage != "train")
        self.log(f"{stage}/bpc", nats / math.log(2))
        self.log(f"{stage}/ppl", torch.exp(nats))

    def on_train_epoch_end(self) -> None:
        self._log_nats("train", self.train_loss)

    def on_validation_epoch_end(self) -> None:
        self._log_nats("val", self.val_loss)
        if not self.trainer.sanity_checking:
            self._log_sample()

    def on_test_epoch_end(self) -> None:
        self._log_nats("test", self.test_loss)

    # -- logging -------------------------------------------------------------
    def _log_sample(self) -> None:
        if not self.trainer.is_global_zero:  # one sample per run, not one per process
            return
        writers = [lg.experiment for lg in self.loggers if isinstance(lg, TensorBoardLogger)]
        dm = self.datamodule
        if not writers or not provides(dm, CharacterText) or self.hparams["sample_length"] <= 0:
            return
        prime = default_prime(dm)
        text = prime + "".join(
            sample_text(
                self,
                dm,
                prime,
                self.hparams["sample_length"],
                temperature=self.hparams["sample_temperature"],
                seed=self.global_step,
            )
        )
        # A fenced block keeps the line breaks in TensorBoard's markdown view.
        for writer in writers:
            writer.add_text("val/sample", "```\n" + text + "\n```", self.media_step())

    # -- TensorBoard ---------------------------------------------------------
    def charts(self) -> dict[str, dict[str, list[str]]]:
        return {
            "train vs validation": {
                "loss": ["train/loss", "val/loss"],  # nats per character
                "bits per character": ["train/bpc", "val/bpc"],
            },
            **super().charts(),
        }

    def gradient_flow(self, batch: tuple[Tensor, Tensor]) -> Tensor:
        x, y = batch  # from a zero state: the measurement sees this batch's steps only

        def loss() -> Tensor:
            logits, _ = self(x)
            return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

        return state_gradient_norms(self.encoder, loss)


class LanguageModelStep(nn.Module):
    """The exported program of a language model: one step, (token, h [, c]) -> (logits,
    h_next [, c_next])."""

    def __init__(self, task: LanguageModel) -> None:
        super().__init__()
        self.task = task

    def forward(self, token: Tensor, h: Tensor, c: Tensor | None = None):
        logits, state = self.task.step(token, h if c is None else (h, c))
        return (logits, *state) if isinstance(state, tuple) else (logits, state)
