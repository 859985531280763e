"""Sequence labelling (a tag per token) from CoNLL files, as a LightningDataModule.

Where the sentences come from:
- `data.train=`, `data.dev=`, `data.test=`: a corpus that comes split (CoNLL-2003,
  a UD treebank's three files) keeps its split.
- `data.path=`: one file, split by sentence with `data.split_seed`
  (`data.val_fraction`, `data.test_fraction`).
- neither: the Turkish web and Wikipedia treebank of Kayadelen et al. (LREC
  2020) from the `turkish-treebanks` package (`pip install "seqmodels[tagging]"`),
  `data/web.conllu` and `data/wiki.conllu`, with the package's own split: in
  each file, sentence index mod 10 = 0-7 train, 8 dev, 9 test.

The files are CoNLL-U or whitespace columns (conll.py: `data.format`,
`data.column`). Span tags in IOB1, BIO or BIOES are converted to `data.scheme`
(`auto`: BIO when every tag is a span tag, the tags as they are otherwise;
`none`: as they are).

What a batch holds per token (`TaggingBatch`): the word's id (lowercased when
`data.lowercase`; words seen fewer than `data.min_freq` times in training are
UNK), its characters' ids (case kept, for a character encoder; at most
`data.max_word_len` of them), its shape id (lowercase, Capitalised, UPPER,
digits, ...: the case information a lowercased word loses) and its tag id.
Ids: PAD 0 and UNK 1 for words and characters; tags have no padding id (the
lengths say where a sentence ends). Words are ranked by training frequency, so
the ids from `singletons_from` on are the words seen once (word dropout
replaces those with UNK, Lample et al. 2016).

Batches are bucketed by length and their order depends only on (seed, epoch),
resumable mid-epoch (batching.py). The vocabularies and tags travel in the
checkpoint (`state_dict()`), so seqmodels-predict needs no data file.
"""

from __future__ import annotations

import importlib.metadata
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import lightning as L
import torch
from torch.utils.data import Dataset

from seqmodels.data.batching import BucketedLoaders
from seqmodels.data.conll import Sentence, check_scheme, convert, is_span_tagging, read_conll
from seqmodels.data.vocab import PAD, UNK, Vocab
from seqmodels.errors import UserError

TREEBANK = "turkish-treebanks"
TREEBANK_FILES = ("data/web.conllu", "data/wiki.conllu")
SHAPES = ("<pad>", "lower", "Title", "UPPER", "mIxed", "digits", "digits+", "punct", "other")


class TaggingBatch(NamedTuple):
    words: torch.Tensor  # (B, T) word ids, PAD-padded
    chars: torch.Tensor  # (B, T, L) character ids of each word, PAD-padded
    shapes: torch.Tensor  # (B, T) shape ids
    tags: torch.Tensor  # (B, T) tag ids (0 after each length)
    lengths: torch.Tensor  # (B,)


def shape(token: str) -> int:
    """The id (in SHAPES) of a token's case and character classes."""
    if token.isalpha():
        if token.islower():
            return 1
        if token.istitle():
            return 2
        return 3 if token.isupper() else 4
    if token.isdigit():
        return 5
    if any(c.isdigit() for c in token):
        return 6
    if not any(c.isalnum() for c in token):
        return 7
    return 8


def treebank_files() -> list[Path]:
    """The turkish-treebanks package's two CoNLL-U files, found through its metadata."""
    try:
        files = importlib.metadata.files(TREEBANK) or []
    except importlib.metadata.PackageNotFoundError:
        raise UserError(
            f"the default data is the Turkish treebank of the {TREEBANK} package: "
            f'pip install "seqmodels[tagging]" (or give data.path= or data.train/dev/test=)'
        ) from None
    found = {str(f): Path(str(f.locate())) for f in files}
    missing = [name for name in TREEBANK_FILES if name not in found or not found[name].is_file()]
    if missing:
        raise UserError(
            f"the {TREEBANK} package lacks {', '.join(missing)}: reinstall it "
            f"(pip install --force-reinstall {TREEBANK}==1.0.0)"
        )
    return [found[name] for name in TREEBANK_FILES]


class TagDataset(Dataset):
    """One encoded sentence per item, with its tokens kept for display."""

    def __init__(self, items: list[tuple[torch.Tensor, ...]], tokens: list[list[str]]) -> None:
        self.items, self.tokens = items, tokens
        self.lengths = torch.tensor([len(t) for t in tokens], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        return self.items[i]


def collate(items: Sequence[tuple[torch.Tensor, ...]]) -> TaggingBatch:
    """Pad (words, chars, shapes, tags) per sentence into a TaggingBatch."""
    lengths = torch.tensor([len(w) for w, _, _, _ in items], dtype=torch.long)
    B, T = len(items), int(lengths.max())
    L = max(int(c.shape[1]) for _, c, _, _ in items)
    words = torch.full((B, T), PAD, dtype=torch.long)
    chars = torch.full((B, T, L), PAD, dtype=torch.long)
    shapes = torch.zeros(B, T, dtype=torch.long)
    tags = torch.zeros(B, T, dtype=torch.long)
    for b, (w, c, s, t) in enumerate(items):
        n = len(w)
        words[b, :n], shapes[b, :n], tags[b, :n] = w, s, t
        chars[b, :n, : c.shape[1]] = c
    return TaggingBatch(words, chars, shapes, tags, lengths)


class TaggingDataModule(BucketedLoaders, L.LightningDataModule):
    """Tagged sentences for task=tagging (see the module docstring).

    Args:
        path: one CoNLL file, split by sentence; None with no train/dev/test: the
            Turkish treebank.
        train, dev, test: the three files of a corpus that comes split.
        format: auto, conllu or columns (conll.py); column: the tags' column
            (upos, xpos or a 1-based number; None: UPOS in CoNLL-U, the last otherwise).
        scheme: auto, none, iob1, bio (iob2) or bioes: the span scheme tags are
            converted to.
        val_fraction, test_fraction, split_seed: the split of `path`, by sentence.
        min_freq: training words seen fewer times read as UNK.
        lowercase: lowercase the words (the characters and shape keep the case).
        max_word_len: characters per word given to the character encoder.
        batch_size, eval_batch_size, pool_batches: sentences per batch (batching.py).
        examples: validation sentences run every epoch for TensorBoard's examples.
    """

    collate = staticmethod(collate)  # a batch from items (BucketedLoaders' loaders)

    def __init__(
        self,
        path: str | None = None,
        train: str | None = None,
        dev: str | None = None,
        test: str | None = None,
        format: str = "auto",
        column: str | int | None = None,
        scheme: str = "auto",
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
        min_freq: int = 1,
        lowercase: bool = True,
        max_word_len: int = 30,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        pool_batches: int = 50,
        examples: int = 32,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        given = [name for name, v in (("train", train), ("dev", dev), ("test", test)) if v]
        if given and (len(given) != 3 or path):
            raise UserError(
                "give data.train=, data.dev= and data.test= together (a corpus that comes "
                f"split), or data.path= alone (split by sentence); got {', '.join(given)}"
                + (" and path" if path else "")
            )
        if scheme.lower() not in ("auto", "none"):
            check_scheme(scheme)
        if batch_size < 1 or (eval_batch_size is not None and eval_batch_size < 1):
            raise UserError(f"data.batch_size={batch_size} and eval_batch_size must be >= 1")
        if max_word_len < 1 or min_freq < 1:
            raise UserError("data.max_word_len and data.min_freq must be >= 1")
        for name, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0.0 < f < 1.0:
                raise UserError(f"data.{name}={f} must be between 0 and 1 (e.g. 0.1)")
        self.path, self.files = path, (train, dev, test) if given else None
        self.format, self.column, self.scheme_option = format, column, scheme
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.split_seed, self.min_freq, self.lowercase = split_seed, min_freq, lowercase
        self.max_word_len = max_word_len
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.pool_batches, self.examples, self.num_workers = pool_batches, examples, num_workers
        self.words: Vocab | None = None
        self.chars: Vocab | None = None
        self.tags: list[str] = []
        self.scheme: str | None = None  # the span scheme of the tags, None for plain tags
        self.singletons_from = 0
        self.splits: dict[str, TagDataset] = {}

    # -- reading -------------------------------------------------------------------
    def read(self) -> dict[str, list[Sentence]]:
        """The sentences of train, val and test, as the options say."""
        fmt, column = self.format, self.column
        if self.files is not None:
            return {
                name: read_conll(str(file), fmt, column)
                for name, file in zip(("train", "val", "test"), self.files, strict=True)
            }
        if self.path:
            return self.split_by_sentence(read_conll(self.path, fmt, column))
        parts: dict[str, list[Sentence]] = {"train": [], "val": [], "test": []}
        for file in treebank_files():  # the package's own split, file by file
            for i, sentence in enumerate(read_conll(file, "conllu", column or "upos")):
                parts["train" if i % 10 < 8 else "val" if i % 10 == 8 else "test"].append(sentence)
        return parts

    def split_by_sentence(self, sentences: list[Sentence]) -> dict[str, list[Sentence]]:
        n = len(sentences)
        n_val = max(1, round(n * self.val_fraction))
        n_test = max(1, round(n * self.test_fraction))
        if n_val + n_test >= n:
            raise UserError(
                f"{self.path} has {n} sentences: too few for data.val_fraction="
                f"{self.val_fraction} and data.test_fraction={self.test_fraction}"
            )
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.split_seed))
        part = order.tolist()
        return {
            "val": [sentences[i] for i in sorted(part[:n_val])],
            "test": [sentences[i] for i in sorted(part[n_val : n_val + n_test])],
            "train": [sentences[i] for i in sorted(part[n_val + n_test :])],
        }

    def resolve_scheme(self, tags: Sequence[str]) -> str | None:
        option = self.scheme_option.lower()
        if option == "none" or not is_span_tagging(tags):
            if option not in ("auto", "none"):
                odd = next(t for t in tags if not is_span_tagging([t]))
                raise UserError(
                    f"data.scheme={self.scheme_option} converts span tags (O, B-X, I-X, ...), "
                    f"but the data has the tag {odd!r}: use data.scheme=none"
                )
            return None
        return "BIO" if option == "auto" else check_scheme(option)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return  # idempotent
        parts = self.read()
        for name, sentences in parts.items():
            if not sentences:
                raise UserError(f"the {name} split is empty: use more data")
        every = [t for sentences in parts.values() for _, tags in sentences for t in tags]
        scheme = self.resolve_scheme(sorted(set(every)))
        if scheme is not None:
            parts = {
                name: [(toks, convert(tags, scheme)) for toks, tags in sentences]
                for name, sentences in parts.items()
            }
        train_words = [self.word_form(w) for toks, _ in parts["train"] for w in toks]
        counts = Counter(train_words)
        words = Vocab.build([train_words], min_freq=self.min_freq)
        chars = Vocab.build([[c for toks, _ in parts["train"] for w in toks for c in w]])
        tags = sorted({t for sentences in parts.values() for _, ts in sentences for t in ts})
        if "O" in tags:
            tags = ["O"] + [t for t in tags if t != "O"]
        if self.words is not None and (self.words.itos, self.tags) != (words.itos, tags):
            raise UserError(
                "this data's words or tags differ from the checkpoint's: use the data the "
                "checkpoint was trained on"
            )
        self.words, self.chars, self.tags, self.scheme = words, chars, tags, scheme
        self.singletons_from = next(
            (i for i, w in enumerate(words.itos) if i > UNK and counts[w] == 1), len(words)
        )
        index = {t: i for i, t in enumerate(tags)}
        self.splits = {
            name: TagDataset(
                [self.encode(toks, [index[t] for t in ts]) for toks, ts in sentences],
                [toks for toks, _ in sentences],
            )
            for name, sentences in parts.items()
        }

    def word_form(self, token: str) -> str:
        return token.lower() if self.lowercase else token

    def encode(self, tokens: Sequence[str], tag_ids: Sequence[int]) -> tuple[torch.Tensor, ...]:
        """(words, chars, shapes, tags) tensors of one sentence."""
        assert self.words is not None and self.chars is not None
        words = torch.tensor(self.words.encode(self.word_form(t) for t in tokens))
        L = min(self.max_word_len, max(len(t) for t in tokens))
        chars = torch.zeros(len(tokens), L, dtype=torch.long)
        for i, token in enumerate(tokens):
            ids = self.chars.encode(token[: self.max_word_len])
            chars[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        shapes = torch.tensor([shape(t) for t in tokens], dtype=torch.long)
        return words, chars, shapes, torch.tensor(list(tag_ids), dtype=torch.long)

    @property
    def model_kwargs(self) -> dict[str, Any]:
        if self.words is None or self.chars is None:
            raise RuntimeError("TaggingDataModule.model_kwargs is known after setup()")
        return {
            "vocab_size": len(self.words),
            "char_vocab_size": len(self.chars),
            "num_shapes": len(SHAPES),
            "tags": list(self.tags),
            "scheme": self.scheme,
            "singletons_from": self.singletons_from,
        }

    @property
    def class_names(self) -> list[str]:
        return list(self.tags)

    # -- checkpoints ---------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        if self.words is None or self.chars is None:
            return {}
        return {
            "words": list(self.words.itos),
            "chars": list(self.chars.itos),
            "tags": list(self.tags),
            "scheme": self.scheme,
            "lowercase": self.lowercase,
            "max_word_len": self.max_word_len,
            "singletons_from": self.singletons_from,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        self.words, self.chars = Vocab(state_dict["words"]), Vocab(state_dict["chars"])
        self.tags, self.scheme = list(state_dict["tags"]), state_dict["scheme"]
        self.lowercase, self.max_word_len = state_dict["lowercase"], state_dict["max_word_len"]
        self.singletons_from = state_dict["singletons_from"]

    # -- new inputs and examples (predict, TensorBoard) ------------------------------
    def encode_sentences(self, sentences: Sequence[Sequence[str]]) -> TaggingBatch:
        """Tokenised sentences -> a batch (tags 0); unknown words read as UNK."""
        if self.words is None:
            raise RuntimeError("TaggingDataModule.encode_sentences needs setup() or a checkpoint")
        if not sentences or any(not s for s in sentences):
            raise UserError("an empty sentence: give one sentence per line")
        return collate([self.encode(s, [0] * len(s)) for s in sentences])

    def example_sentences(self) -> tuple[TaggingBatch, list[list[str]]]:
        """The same few validation sentences every epoch, spread over the split, with
        their tokens."""
        val = self.splits["val"]
        n = min(self.examples, len(val))
        picks = [round(i * (len(val) - 1) / max(n - 1, 1)) for i in range(n)]
        return collate([val[i] for i in picks]), [val.tokens[i] for i in picks]
