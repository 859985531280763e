"""IMDB movie-review sentiment (Maas et al., ACL 2011) as a LightningDataModule.

The reviews come from a local aclImdb copy or the official archive, and are
tokenised once into a cache (see aclimdb.py): later runs load every review's
token ids in well under a second; `max_len`, the truncation side and the
validation split are applied on load, so changing them costs nothing.

Batches are `(x, y, lengths)`: x LongTensor (B, T) padded with PAD = 0 at the
end, T the longest review in the batch. Training batches group reviews of
similar length (little compute spent on padding) in an order drawn from
(seed, epoch); evaluation batches are sorted by length (see batching.py).
"""

from __future__ import annotations

import pathlib
import re
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from seqmodels.data import aclimdb
from seqmodels.data.batching import (
    TRUNCATION,
    BucketBatchSampler,
    Sequences,
    data_loader,
    pad_collate,
    split_sampler,
    truncate,
)
from seqmodels.data.splits import holdout
from seqmodels.data.vocab import Tokenizer, Vocab
from seqmodels.errors import UserError

CLASS_NAMES = ["negative", "positive"]


class IMDBDataModule(L.LightningDataModule):
    r"""IMDB movie reviews for sentiment classification, tokenised and length-bucketed.

    The official archive (aclImdb) is read from ``root`` or downloaded there;
    reviews are tokenised, a vocabulary is built from the training split, and
    the processed tensors are cached. Labels: 0 negative, 1 positive. The task of
    ``task=imdb``; ``seqmodels-predict text=...`` reads new reviews through
    ``encode_texts`` with the checkpoint's vocabulary.

    Args:
        root: folder holding `aclImdb/` (or the `aclImdb/` folder itself); the
            archive is downloaded and extracted here when neither is present.
        batch_size: training batch size; eval_batch_size for val/test (None: same).
        max_len: tokens kept per review (None: all); truncation: which ones,
            "first", "last" or "head+tail" (half from each end).
        max_vocab: vocabulary size including PAD and UNK; min_freq: a word must
            occur this often in the training split to get its own id.
        val_size: validation reviews carved from train (a count or a fraction),
            chosen with `split_seed`; test is the official test set.
        bucket: group training batches by length (False: plain shuffling).
        pool_batches: how many batches' worth of reviews are sorted together.
        download: fetch the official archive when no local copy is found.
        cache_dir: where processed tensors go (None: `<root>/cache`).
        lowercase, strip_html: tokeniser settings.
        num_workers: DataLoader worker processes.

    Shape:
        - Batches: ``(x, y, lengths)`` with token ids x :math:`(B, T)` (0 pads, 1 is
          unknown), labels y :math:`(B,)` and lengths :math:`(B,)`.
        - ``encode_texts(texts)``: a list of N strings -> ``(x, lengths)``.
        - ``model_kwargs``: ``{"num_classes": 2, "vocab_size": V}``.

    Example::

        from seqmodels.data.imdb import IMDBDataModule

        dm = IMDBDataModule(root="data/imdb", max_len=200)  # downloads 84 MB once
        dm.prepare_data()
        dm.setup()
        x, y, lengths = next(iter(dm.train_dataloader()))
        x, lengths = dm.encode_texts(["a wonderful, moving film"])
    """

    def __init__(
        self,
        root: str = "data/imdb",
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        max_len: int | None = 400,
        truncation: str = "head+tail",
        max_vocab: int | None = 20000,
        min_freq: int = 2,
        val_size: float | int = 0.1,
        split_seed: int = 0,
        bucket: bool = True,
        pool_batches: int = 50,
        num_workers: int = 0,
        download: bool = True,
        cache_dir: str | None = None,
        lowercase: bool = True,
        strip_html: bool = True,
    ):
        super().__init__()
        if truncation not in TRUNCATION:
            raise UserError(f"data.truncation={truncation!r} is not one of {', '.join(TRUNCATION)}")
        if max_len is not None and max_len < 1:
            raise UserError(f"data.max_len={max_len} must be at least 1 (or null for no limit)")
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.max_len, self.truncation = max_len, truncation
        self.max_vocab, self.min_freq = max_vocab, min_freq
        self.val_size, self.split_seed = val_size, split_seed
        self.bucket, self.pool_batches, self.num_workers = bucket, pool_batches, num_workers
        self.download, self.cache_dir = download, cache_dir
        self.root = pathlib.Path(root).expanduser()
        self.tokenizer = Tokenizer(lowercase=lowercase, strip_html=strip_html)
        self.vocab: Vocab | None = None
        self.class_names = list(CLASS_NAMES)
        self.splits: dict[str, Sequences] = {}

    # ---- files

    def _cache(self) -> tuple[pathlib.Path, pathlib.Path]:
        """(the aclImdb folder, its cache file path)."""
        folder = aclimdb.locate(self.root, self.download)
        cache_dir = (
            pathlib.Path(self.cache_dir).expanduser() if self.cache_dir else self.root / "cache"
        )
        return folder, aclimdb.cache_path(
            folder, cache_dir, self.tokenizer, self.max_vocab, self.min_freq
        )

    def prepare_data(self) -> None:
        """Download, extract and tokenise once; every step is skipped when done."""
        folder, path = self._cache()
        if not path.exists():
            aclimdb.build_cache(folder, path, self.tokenizer, self.max_vocab, self.min_freq)

    # ---- splits

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return  # idempotent: every split is built on the first call
        folder, path = self._cache()
        if not path.exists():
            self.prepare_data()
        cache = aclimdb.load_cache(path)
        self.vocab = Vocab(cache["vocab"])
        ids, labels, lengths = self._split(cache, "train")
        fit, val = holdout(len(ids), self.val_size, self.split_seed, "reviews")
        self.splits["train"] = Sequences([ids[i] for i in fit.tolist()], labels[fit], lengths[fit])
        self.splits["val"] = Sequences([ids[i] for i in val.tolist()], labels[val], lengths[val])
        self.splits["test"] = Sequences(*self._split(cache, "test"))
        # The validation reviews drawn in TensorBoard: the same ones every epoch.
        g = torch.Generator().manual_seed(self.split_seed)
        self.examples = torch.randperm(len(val), generator=g)[: self.EXAMPLES]
        files = [cache["train_files"][int(val[i])] for i in self.examples]
        self.example_texts = [aclimdb.read_review(folder, name) for name in files]

    def _split(self, cache: dict, split: str):
        """(ids per review, truncated; labels; lengths) of one split of the cache."""
        flat, offsets = cache[f"{split}_ids"].long(), cache[f"{split}_offsets"]
        max_len, side = self.max_len, self.truncation
        lengths = torch.diff(offsets)
        pieces = list(torch.split(flat, lengths.tolist()))
        if max_len is not None:
            for i in (lengths > max_len).nonzero().flatten().tolist():  # only the long ones
                pieces[i] = truncate(pieces[i], max_len, side)
            lengths = lengths.clamp(max=max_len)
        return pieces, cache[f"{split}_labels"].long(), lengths

    @property
    def model_kwargs(self) -> dict[str, int]:
        if self.vocab is None:
            raise RuntimeError("IMDBDataModule.model_kwargs is known after setup()")
        return {"num_classes": len(self.class_names), "vocab_size": len(self.vocab)}

    # ---- loaders

    def _loader(self, split: str) -> DataLoader:
        train = split == "train"
        dataset = self.splits[split]
        sampler = split_sampler(len(dataset), train, self.trainer)
        size = self.batch_size if train else (self.eval_batch_size or self.batch_size)
        common: dict[str, Any] = dict(collate_fn=pad_collate, num_workers=self.num_workers)
        if train and not self.bucket:
            return data_loader(dataset, batch_size=size, sampler=sampler, **common)
        batches = BucketBatchSampler(sampler, dataset.lengths, size, self.pool_batches)
        return data_loader(dataset, batch_sampler=batches, **common)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    # ---- checkpoints: what predict needs without the data folder

    def state_dict(self) -> dict:
        if self.vocab is None:
            return {}
        return {
            "vocab": list(self.vocab.itos),
            "tokenizer": self.tokenizer.state_dict(),
            "max_len": self.max_len,
            "truncation": self.truncation,
            "class_names": list(self.class_names),
        }

    def load_state_dict(self, state_dict: dict) -> None:
        if not state_dict:
            return
        self.vocab = Vocab(state_dict["vocab"])
        self.tokenizer = Tokenizer.from_state_dict(state_dict["tokenizer"])
        self.max_len = state_dict["max_len"]
        self.truncation = state_dict["truncation"]
        self.class_names = list(state_dict["class_names"])

    # ---- encoding new text (predict) and rendering validation examples (TensorBoard)

    def encode(self, text: str) -> torch.Tensor:
        """One review's token ids as the model sees them (tokenised, truncated)."""
        if self.vocab is None:
            raise RuntimeError(
                "IMDBDataModule.encode needs a vocabulary: setup() or load_state_dict()"
            )
        ids = self.vocab.encode(self.tokenizer(text))
        return truncate(torch.tensor(ids, dtype=torch.long), self.max_len, self.truncation)

    def decode(self, ids: torch.Tensor) -> str:
        assert self.vocab is not None
        return " ".join(self.vocab.decode(ids.tolist()))

    def encode_texts(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Reviews -> (x padded, lengths); a review without known words is one clear line."""
        encoded = []
        for i, t in enumerate(texts):
            ids = self.encode(t)
            if len(ids) == 0:
                raise UserError(
                    f"input {i + 1} has no words after tokenising ({t.strip()[:40]!r}): "
                    "give a review with words in it"
                )
            encoded.append(ids)
        x, _, lengths = pad_collate([(ids, torch.tensor(0)) for ids in encoded])
        return x, lengths

    EXAMPLES = 32  # validation reviews tracked in TensorBoard
    SHOWN = 6  # of them, misclassified ones written out per epoch

    def example_batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The tracked validation reviews as a batch (x, y, lengths)."""
        val = self.splits["val"]
        return pad_collate([val[int(i)] for i in self.examples])

    def log_examples(self, writer: Any, batch: Any, probs: torch.Tensor, global_step: int) -> None:
        """The tracked reviews the model gets wrong, as written, with its probability."""
        _, targets, _ = batch
        preds = probs.argmax(-1)
        wrong = (preds != targets).nonzero().flatten().tolist()
        rows = [
            f"**{len(wrong)} of {len(targets)}** tracked validation reviews are misclassified "
            "after this epoch (the same reviews every epoch, drawn with data.split_seed). "
            "A review is shown as written; **[…]** marks the words the model did not read "
            f"(data.max_len={self.max_len}, data.truncation={self.truncation})."
        ]
        for i in wrong[: self.SHOWN]:
            truth, guess = self.class_names[int(targets[i])], self.class_names[int(preds[i])]
            rows.append(
                f"**true {truth}, predicted {guess} ({float(probs[i, preds[i]]):.2f})**: "
                + self.render(self.example_texts[i])
            )
        writer.add_text("val/misclassified", "\n\n---\n\n".join(rows), global_step)

    def render(self, text: str) -> str:
        """A review as markdown, `**[…]**` where the model's window cut it."""
        spans = self.tokenizer.spans(text)
        n, keep = len(spans), self.max_len
        if keep is None or n <= keep:
            pieces = [text]
        elif self.truncation == "first":
            pieces = [text[: spans[keep - 1][1]], ""]
        elif self.truncation == "last":
            pieces = ["", text[spans[n - keep][0] :]]
        else:  # head+tail
            head = keep // 2
            pieces = [text[: spans[head - 1][1]], text[spans[n - (keep - head)][0] :]]
        return " **[…]** ".join(_markdown(p) for p in pieces).strip()


def _markdown(text: str) -> str:
    """Plain review text, safe in TensorBoard's markdown: no HTML breaks, no markup."""
    text = re.sub(r"<br\s*/?>", " ", text, flags=re.IGNORECASE)
    return re.sub(r"([\\`*_{}\[\]<>#|])", r"\\\1", " ".join(text.split()))
