"""Character-level text as B contiguous streams, for truncated BPTT.

Any UTF-8 file (`data.path=...`); by default Tiny Shakespeare, fetched through
`download.py`. The text is split by position (first 90% train, then 5%
validation, then 5% test, held out as char-rnn does), each split is cut into `batch_size` contiguous streams, and batch i holds, for
every stream b, the next `seq_len` characters of stream b. So row b of batch
i + 1 continues row b of batch i: a language model can carry its hidden state
from one batch to the next (truncated BPTT) and still see the text in order.
Karpathy's min-char-rnn walked one stream 25 characters at a time; B streams
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

from seqmodels.data.batching import Resumable, data_loader, process_share
from seqmodels.data.download import download
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
    nul = raw.find(b"\x00", 0, 1 << 20)  # text never holds NUL bytes; binary files do
    if nul >= 0:
        raise UserError(
            f"{path} is a binary file (a NUL byte at offset {nul}), not text: "
            "point data.path= at a UTF-8 text file"
        )
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


class InOrder(Resumable, IterableDataset):
    """The batches of a StreamBatches, in order.

    Iterable rather than indexable so that Lightning never puts a
    DistributedSampler in front of it: that would deal batch i to process
    i % world_size, and no process would see its streams in order.
    Resumable mid-epoch (batching.Resumable): a resumed pass starts at the next batch.
    """

    def __init__(self, batches: StreamBatches):
        self.batches = batches
        self.epoch = 0  # the order is the same every epoch; counted for the resume state

    def _set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        return (self.batches[i] for i in self._pass(range(len(self.batches))))

    def __len__(self) -> int:
        return len(self.batches)


class CharTextDataModule(L.LightningDataModule):
    r"""The characters of one text file as contiguous streams, for a character language
    model.

    The text is split by position (train, then validation, then test); its sorted
    characters are the vocabulary. Each split is cut into ``batch_size`` streams,
    and row b of batch i + 1 continues row b of batch i, so a model can carry its
    state from batch to batch (truncated BPTT; see the module docstring). The task of
    ``task=chargen``.

    Args:
        path: a UTF-8 text file; None downloads Tiny Shakespeare into `root`.
        root: folder for the downloaded Tiny Shakespeare (`input.txt`).
        batch_size: number of contiguous streams B per batch (training).
        seq_len: characters per stream per batch (the truncated-BPTT length).
        val_fraction, test_fraction: the text is split by position: training
            first, then validation, then test (held out, read only by the test).
        val_batch_size: streams for validation and test; None = batch_size
            (fewer if the split is too short for that many).
        encoding_errors: "replace" or "strict" (see the module docstring).

    Shape:
        - Batches: ``(x, y)``, both :math:`(B, \text{seq\_len})` token ids, y the
          next character of each x.
        - ``encode(text)`` -> ids :math:`(N,)`; ``decode(ids)`` -> text.
        - ``model_kwargs``: ``{"vocab_size": V}``.

    Example::

        >>> import pathlib, tempfile
        >>> from seqmodels.data.text import CharTextDataModule
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "text.txt"
        >>> _ = path.write_text("to be or not to be, that is the question. " * 50)
        >>> dm = CharTextDataModule(path=str(path), batch_size=4, seq_len=16)
        >>> dm.setup()
        >>> x, y = next(iter(dm.train_dataloader()))
        >>> x.shape, dm.vocab_size, dm.decode(dm.encode("to be"))
        (torch.Size([4, 16]), 15, 'to be')
    """

    def __init__(
        self,
        path: str | None = None,
        root: str = "data/tinyshakespeare",
        batch_size: int = 64,
        seq_len: int = 128,
        val_fraction: float = 0.05,
        test_fraction: float = 0.05,
        val_batch_size: int | None = None,
        encoding_errors: str = "replace",
    ):
        super().__init__()
        self.path, self.root = path, root
        self.batch_size, self.seq_len, self.val_batch_size = batch_size, seq_len, val_batch_size
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.encoding_errors = encoding_errors
        for name, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0.0 < f < 1.0:
                raise UserError(f"data.{name}={f} must be between 0 and 1 (e.g. 0.05)")
        if val_fraction + test_fraction >= 1.0:
            raise UserError(
                f"data.val_fraction={val_fraction} and data.test_fraction={test_fraction} leave "
                "no training text: keep their sum below 1"
            )
        if batch_size < 1 or seq_len < 1:
            raise UserError(f"data.batch_size={batch_size} and data.seq_len={seq_len} must be >= 1")
        self.chars: str | None = None  # the sorted characters; index = token id
        self.stoi: dict[str, int] = {}
        self.splits: dict[str, torch.Tensor] = {}  # each split's text as ids

    # -- files -------------------------------------------------------------
    @property
    def text_path(self) -> pathlib.Path:
        if self.path is not None:
            return pathlib.Path(self.path).expanduser()
        return pathlib.Path(self.root).expanduser() / "input.txt"

    def prepare_data(self) -> None:
        if self.path is not None:
            return  # a local file: nothing to fetch (setup reports a missing one)
        download(
            TINY_SHAKESPEARE_URL,
            self.text_path,
            md5=TINY_SHAKESPEARE_MD5,
            override="data.path=/path/to/input.txt (or data.root=<folder holding input.txt>)",
        )

    # -- vocabulary --------------------------------------------------------
    def _set_chars(self, chars: str) -> None:
        self.chars = chars
        self.stoi = {ch: i for i, ch in enumerate(chars)}

    @property
    def vocab_size(self) -> int:
        if self.chars is None:
            raise RuntimeError("vocabulary unknown: call setup() or load_state_dict() first")
        return len(self.chars)

    @property
    def model_kwargs(self) -> dict[str, int]:
        return {"vocab_size": self.vocab_size}

    def encode(self, text: str) -> torch.Tensor:
        """Characters -> LongTensor of ids; a UserError lists characters outside the vocabulary."""
        if self.chars is None:
            raise RuntimeError("vocabulary unknown: call setup() or load_state_dict() first")
        unknown = sorted({ch for ch in text if ch not in self.stoi})
        if unknown:
            shown = " ".join(repr(ch) for ch in unknown[:20])
            more = f" (and {len(unknown) - 20} more)" if len(unknown) > 20 else ""
            raise UserError(
                f"{text[:20]!r} has {len(unknown)} character(s) outside the model's vocabulary: "
                f"{shown}{more}; use only characters of the training text"
            )
        return torch.tensor([self.stoi[ch] for ch in text], dtype=torch.long)

    def decode(self, ids) -> str:
        assert self.chars is not None
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else ids
        return "".join(self.chars[i] for i in ids)

    # -- splits ------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return  # idempotent; loaders cut the streams per process
        text = read_text(self.text_path, self.encoding_errors)
        n = len(text)
        val_at = int(n * (1.0 - self.val_fraction - self.test_fraction))
        test_at = int(n * (1.0 - self.test_fraction))
        if min(val_at, test_at - val_at, n - test_at) < 2:
            raise UserError(
                f"{self.text_path} has only {n} characters: too short for train/val/test splits "
                f"with data.val_fraction={self.val_fraction} and "
                f"data.test_fraction={self.test_fraction} (use a longer text)"
            )
        chars = "".join(sorted(set(text)))
        if self.chars is not None and self.chars != chars:
            raise UserError(
                f"{self.text_path} has a different character set than the checkpoint's "
                "vocabulary; use the text the checkpoint was trained on"
            )
        self._set_chars(chars)
        ids = torch.tensor([self.stoi[ch] for ch in text], dtype=torch.long)
        self.splits = {"train": ids[:val_at], "val": ids[val_at:test_at], "test": ids[test_at:]}

    def _loader(self, split: str) -> DataLoader:
        # Under DDP each process reads its own contiguous share of the split (see shard()).
        rank, world = process_share(self.trainer)
        ids = shard(self.splits[split], rank, world)
        b = self.batch_size
        if split != "train":
            b = min(self.val_batch_size or b, len(ids) - 1)
        # batch_size=None: each item is already a batch, and they come in order.
        return data_loader(InOrder(StreamBatches(ids, b, self.seq_len)), batch_size=None)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    # -- checkpoint --------------------------------------------------------
    def state_dict(self) -> dict:
        return {"vocab": self.chars}

    def load_state_dict(self, state_dict: dict) -> None:
        chars = state_dict.get("vocab")
        if chars is None:
            return
        if self.chars is not None and self.chars != chars:
            raise UserError(
                "the checkpoint's vocabulary differs from this text's: use the same text"
            )
        self._set_chars(chars)
