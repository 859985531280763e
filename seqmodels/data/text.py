"""Character-level text as B contiguous streams, for truncated BPTT.

Any UTF-8 file (`data.path=...`); by default Tiny Shakespeare, fetched through
`download.py`. The text is split by position (first 90% train, last 10% val),
each split is cut into `batch_size` contiguous streams, and batch i holds, for
every stream b, the next `seq_len` characters of stream b. So row b of batch
i + 1 continues row b of batch i: a language model can carry its hidden state
from one batch to the next (truncated BPTT) and still see the text in order.
The seed (min-char-rnn) walked one stream 25 characters at a time; B streams
give the same continuity with a batch's worth of parallelism.

Invalid UTF-8 policy (`encoding_errors=`):
- "replace" (default): each invalid byte sequence becomes U+FFFD, and one
  warning says how many there were and where the first one is. A large corpus
  with a few bad bytes should still train.
- "strict": refuse the file with one line naming the byte offset.

Under DDP each process takes its own contiguous share of each split (the
first 1/world_size to rank 0, ...) and cuts it into B streams, so the
processes read different text and each one's streams stay in order.

The vocabulary is the sorted set of characters of the whole file; it travels
in `state_dict()` (Lightning stores it in every checkpoint), so sampling needs
no text file.
"""

from __future__ import annotations

import math
import os
import pathlib
import warnings

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from seqmodels.errors import UserError

TINY_SHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)
TINY_SHAKESPEARE_MD5 = "6fb458f1232090904fb40fe944165e91"
REPLACEMENT = "\ufffd"


def read_text(path: str | os.PathLike, encoding_errors: str = "replace") -> str:
    """Read a UTF-8 file under the policy above; one-line UserError for bad input."""
    path = pathlib.Path(path)
    if encoding_errors not in ("replace", "strict"):
        raise UserError(
            f"data.encoding_errors={encoding_errors!r} is not a policy: use 'replace' or 'strict'"
        )
    if not path.is_file():
        raise UserError(f"text file not found: {path}; point data.path= at a UTF-8 text file")
    raw = path.read_bytes()
    if not raw:
        raise UserError(f"{path} is empty: point data.path= at a UTF-8 text file with some text")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        if encoding_errors == "strict":
            raise UserError(
                f"{path} is not valid UTF-8: byte 0x{raw[e.start]:02x} at offset {e.start} "
                "(fix or re-encode the file, or set data.encoding_errors=replace)"
            ) from None
        text = raw.decode("utf-8", errors="replace")
        # U+FFFD already in the file is text, not a decoding error: do not count it.
        bad = text.count(REPLACEMENT) - raw.count(REPLACEMENT.encode())
        warnings.warn(
            f"{path}: {bad} invalid UTF-8 sequence(s), the first at byte offset {e.start}; "
            f"each was replaced by U+FFFD (set data.encoding_errors=strict to refuse the file)",
            stacklevel=2,
        )
        return text


class StreamBatches(Dataset):
    """Batch i: for each of `batch_size` streams, the next `seq_len` characters.

    One item is a whole batch `(x, y)` of shape (B, T), y = x shifted by one
    character; use it with `DataLoader(batch_size=None)` and no shuffling, or
    the streams lose their order. The last batch may be shorter than seq_len
    (no text is dropped but the B - 1 characters that do not fill a stream).
    """

    def __init__(self, ids: torch.Tensor, batch_size: int, seq_len: int):
        if batch_size < 1 or seq_len < 1:
            raise UserError(
                f"data.batch_size={batch_size} and data.seq_len={seq_len} must both be >= 1"
            )
        n = (len(ids) - 1) // batch_size  # characters per stream (+1 for the last target)
        if n < 1:
            raise UserError(
                f"a split of {len(ids)} characters is too short for {batch_size} streams: "
                "lower data.batch_size or use a longer text"
            )
        self.seq_len = seq_len
        self.x = ids[: batch_size * n].view(batch_size, n)
        self.y = ids[1 : batch_size * n + 1].view(batch_size, n)

    def __len__(self) -> int:
        return math.ceil(self.x.shape[1] / self.seq_len)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        s = slice(i * self.seq_len, (i + 1) * self.seq_len)
        return self.x[:, s], self.y[:, s]


def shard(ids: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Process `rank`'s contiguous 1/world_size of ids, plus the next id (the last target).

    Every shard has the same length, so every process runs the same number of
    batches (DDP waits for all of them at every step).
    """
    if world_size == 1:
        return ids
    n = (len(ids) - 1) // world_size
    return ids[rank * n : rank * n + n + 1]


class InOrder(IterableDataset):
    """The batches of a StreamBatches, in order.

    Iterable rather than indexable so that Lightning never puts a
    DistributedSampler in front of it: that would deal batch i to process
    i % world_size, and no process would see its streams in order.
    """

    def __init__(self, batches: StreamBatches):
        self.batches = batches

    def __iter__(self):
        return (self.batches[i] for i in range(len(self.batches)))

    def __len__(self) -> int:
        return len(self.batches)


class CharTextDataModule(L.LightningDataModule):
    """Characters of one text file as contiguous streams (see the module docstring).

    Args:
        path: a UTF-8 text file; None downloads Tiny Shakespeare into `root`.
        root: folder for the downloaded Tiny Shakespeare (`input.txt`).
        batch_size: number of contiguous streams B per batch (training).
        seq_len: characters per stream per batch (the truncated-BPTT length).
        val_fraction: the last fraction of the text (by position) is validation.
        val_batch_size: streams for validation; None = batch_size (fewer if
            the validation text is too short for that many).
        encoding_errors: "replace" or "strict" (see the module docstring).
    """

    def __init__(
        self,
        path: str | None = None,
        root: str = "data/tinyshakespeare",
        batch_size: int = 64,
        seq_len: int = 128,
        val_fraction: float = 0.1,
        val_batch_size: int | None = None,
        encoding_errors: str = "replace",
    ):
        super().__init__()
        self.save_hyperparameters()
        if not 0.0 < val_fraction < 1.0:
            raise UserError(f"data.val_fraction={val_fraction} must be between 0 and 1 (e.g. 0.1)")
        self.vocab: str | None = None  # the sorted characters; index = token id
        self.stoi: dict[str, int] = {}
        self.train_set: StreamBatches | None = None
        self.val_set: StreamBatches | None = None
        self._ids: torch.Tensor | None = None  # the whole text as ids, read once
        self._split = 0  # where validation starts
        self._built_for = (0, 1)  # (rank, world size) the splits were cut for

    # -- files -------------------------------------------------------------
    @property
    def text_path(self) -> pathlib.Path:
        if self.hparams.path is not None:
            return pathlib.Path(self.hparams.path).expanduser()
        return pathlib.Path(self.hparams.root).expanduser() / "input.txt"

    def prepare_data(self) -> None:
        if self.hparams.path is not None:
            return  # a local file: nothing to fetch (setup reports a missing one)
        from seqmodels.data.download import download

        download(
            TINY_SHAKESPEARE_URL,
            self.text_path,
            md5=TINY_SHAKESPEARE_MD5,
            override="data.path=/path/to/input.txt (or data.root=<folder holding input.txt>)",
        )

    # -- vocabulary --------------------------------------------------------
    def _set_vocab(self, vocab: str) -> None:
        self.vocab = vocab
        self.stoi = {ch: i for i, ch in enumerate(vocab)}

    @property
    def vocab_size(self) -> int:
        if self.vocab is None:
            raise RuntimeError("vocabulary unknown: call setup() or load_state_dict() first")
        return len(self.vocab)

    @property
    def model_kwargs(self) -> dict:
        return {"vocab_size": self.vocab_size}

    def encode(self, text: str, what: str = "text") -> torch.Tensor:
        """Characters → LongTensor of ids; a UserError lists characters outside the vocabulary."""
        if self.vocab is None:
            raise RuntimeError("vocabulary unknown: call setup() or load_state_dict() first")
        unknown = sorted({ch for ch in text if ch not in self.stoi})
        if unknown:
            shown = " ".join(repr(ch) for ch in unknown[:20])
            more = f" (and {len(unknown) - 20} more)" if len(unknown) > 20 else ""
            raise UserError(
                f"{what} has {len(unknown)} character(s) outside the model's vocabulary: "
                f"{shown}{more}; use only characters of the training text"
            )
        return torch.tensor([self.stoi[ch] for ch in text], dtype=torch.long)

    def decode(self, ids) -> str:
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else ids
        return "".join(self.vocab[i] for i in ids)

    # -- splits ------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        # Under DDP each process trains on its own contiguous share of the text (see
        # shard()); train.py calls setup once before the trainer exists, so the splits
        # are rebuilt when Lightning's call comes from a process of a larger world.
        rank, world = (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)
        if self.train_set is not None and self._built_for == (rank, world):
            return
        if self._ids is None:
            text = read_text(self.text_path, self.hparams.encoding_errors)
            split = int(len(text) * (1.0 - self.hparams.val_fraction))
            if split < 2 or len(text) - split < 2:
                raise UserError(
                    f"{self.text_path} has only {len(text)} characters: too short for a "
                    f"train/val split with data.val_fraction={self.hparams.val_fraction} "
                    "(use a longer text)"
                )
            vocab = "".join(sorted(set(text)))
            if self.vocab is not None and self.vocab != vocab:
                raise UserError(
                    f"{self.text_path} has a different character set than the checkpoint's "
                    "vocabulary; train on the same text the checkpoint was trained on"
                )
            self._set_vocab(vocab)
            self._ids = torch.tensor([self.stoi[ch] for ch in text], dtype=torch.long)
            self._split = split
        b, t = self.hparams.batch_size, self.hparams.seq_len
        self.train_set = StreamBatches(shard(self._ids[: self._split], rank, world), b, t)
        val = shard(self._ids[self._split :], rank, world)
        vb = min(self.hparams.val_batch_size or b, len(val) - 1)
        self.val_set = StreamBatches(val, vb, t)
        self._built_for = (rank, world)

    def train_dataloader(self) -> DataLoader:
        # batch_size=None: each item is already a batch, and they come in order.
        return DataLoader(InOrder(self.train_set), batch_size=None)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(InOrder(self.val_set), batch_size=None)

    def test_dataloader(self) -> DataLoader:
        # Tiny Shakespeare has no test split of its own: evaluation reports the validation text.
        return self.val_dataloader()

    # -- checkpoint --------------------------------------------------------
    def state_dict(self) -> dict:
        return {"vocab": self.vocab}

    def load_state_dict(self, state_dict: dict) -> None:
        vocab = state_dict.get("vocab")
        if vocab is None:
            return
        if self.vocab is not None and self.vocab != vocab:
            raise UserError(
                "the checkpoint's vocabulary differs from this text's: resume on the same text"
            )
        self._set_vocab(vocab)
