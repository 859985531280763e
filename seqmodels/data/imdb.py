"""IMDB movie-review sentiment (Maas et al., ACL 2011) as a LightningDataModule.

Where the data comes from, in order:
1. `root/aclImdb/` or `root` itself when it already has the aclImdb layout
   (`{train,test}/{pos,neg}/<id>_<rating>.txt`): a local copy, never modified.
2. `root/aclImdb_v1.tar.gz`, downloaded from Stanford when missing (sha256
   checked), then extracted once (only the labelled reviews) into `root/aclImdb`.

The first run tokenises all 50,000 reviews, builds the vocabulary from the
training split only, and caches the token ids of every review, untruncated, in
`<cache_dir>/<hash>.pt`, the hash taken over the options that change those ids
(tokeniser, vocabulary size and minimum frequency, the source folder). Later
runs load that file in well under a second; `max_len`, the truncation side and
the validation split are applied on load, so changing them costs nothing.

Batches are `(x, y, lengths)`: x LongTensor (B, T) padded with PAD = 0 at the
end, T the longest review in the batch. Training batches group reviews of
similar length (little compute spent on padding) and come in a new random
order every epoch; evaluation batches are sorted by length.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import pathlib
import shutil
import sys
import tarfile
import tempfile
import zlib
from collections.abc import Iterator, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from seqmodels.data.download import check_checksum, current_umask, download
from seqmodels.data.vocab import PAD, UNK_TOKEN, Tokenizer, Vocab
from seqmodels.errors import UserError

# The official archive and its published checksum (also checked by torchtext,
# MLDatasets.jl and others; md5 7c2ac02c03563afcf9b574c7e56c153a, 84,125,825 bytes).
URLS = (
    "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
    "http://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
)
ARCHIVE = "aclImdb_v1.tar.gz"
SHA256 = "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"

SPLITS = ("train", "test")
LABELS = ("neg", "pos")  # label id = index: neg 0, pos 1
CLASS_NAMES = ["negative", "positive"]
TRUNCATION = ("first", "last", "head+tail")
CACHE_VERSION = 1  # bump when the cached format or the tokeniser's regex changes
LAYOUT = "{train,test}/{pos,neg}/<id>_<rating>.txt"


# --------------------------------------------------------------------------- files


def _has_layout(folder: pathlib.Path) -> bool:
    return (folder / "train").is_dir() or (folder / "test").is_dir()


def check_layout(folder: pathlib.Path) -> None:
    """Raise a one-line UserError naming the first missing piece of the aclImdb layout."""
    for split in SPLITS:
        for label in LABELS:
            d = folder / split / label
            if not d.is_dir() or next(d.glob("*.txt"), None) is None:
                what = "has no .txt files" if d.is_dir() else "is missing"
                raise UserError(
                    f"{folder} does not have the aclImdb layout: expected {folder}/{LAYOUT}, "
                    f"but {d} {what}; set data.root= to the folder holding aclImdb/ "
                    "or to aclImdb/ itself"
                )


def extract(archive: pathlib.Path, root: pathlib.Path) -> pathlib.Path:
    """Extract the labelled reviews of `archive` into `root/aclImdb`, atomically.

    The files go to a temporary folder first and are renamed into place at the
    end, so a killed extraction never leaves a half-filled aclImdb/ behind.
    """
    wanted = tuple(f"aclImdb/{s}/{lab}/" for s in SPLITS for lab in LABELS)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=".aclImdb.", suffix=".tmp", dir=root))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = (m for m in tar if m.isfile() and m.name.startswith(wanted))
            tar.extractall(tmp, members=members, filter="data")
        check_layout(tmp / "aclImdb")
        os.replace(tmp / "aclImdb", root / "aclImdb")
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise UserError(
            f"{archive} is corrupt or not a tar.gz ({type(e).__name__}: {e}); delete it to "
            "download it again, or set data.root= to an extracted aclImdb copy"
        ) from None
    except UserError:
        raise UserError(
            f"{archive} does not hold the reviews in aclImdb/{LAYOUT}; delete it to download "
            "the official archive again, or set data.root= to an extracted aclImdb copy"
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root / "aclImdb"


def read_split(folder: pathlib.Path, split: str) -> tuple[list[str], list[int]]:
    """All reviews of one split as (texts, labels), in a fixed order (label, then file id)."""
    texts, labels = [], []
    for y, label in enumerate(LABELS):
        files = sorted((folder / split / label).glob("*.txt"), key=_file_order)
        for f in files:
            texts.append(f.read_text(encoding="utf-8", errors="replace"))
            labels.append(y)
    return texts, labels


def _file_order(path: pathlib.Path) -> tuple[int, str]:
    stem = path.stem.split("_")[0]
    return (int(stem), path.name) if stem.isdigit() else (sys.maxsize, path.name)


# --------------------------------------------------------------------------- batching


def truncate(ids: torch.Tensor, max_len: int | None, side: str) -> torch.Tensor:
    """Keep at most max_len tokens: the first, the last, or half from each end."""
    if max_len is None or len(ids) <= max_len:
        return ids
    if side == "first":
        return ids[:max_len]
    if side == "last":
        return ids[-max_len:]
    head = max_len // 2
    return torch.cat([ids[:head], ids[len(ids) - (max_len - head) :]])


class Reviews(Dataset):
    """Token-id tensors (variable length) and their labels."""

    def __init__(self, ids: Sequence[torch.Tensor], labels: torch.Tensor,
                 lengths: torch.Tensor | None = None):
        self.ids, self.labels = list(ids), labels
        if lengths is None:
            lengths = torch.tensor([len(t) for t in self.ids], dtype=torch.long)
        self.lengths = lengths

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.ids[i], self.labels[i]


def pad_collate(batch: Sequence[tuple[torch.Tensor, torch.Tensor]]):
    """Pad at the end with PAD to the longest review in the batch: (x, y, lengths)."""
    ids, ys = zip(*batch, strict=True)
    lengths = torch.tensor([len(t) for t in ids], dtype=torch.long)
    x = torch.full((len(ids), int(lengths.max())), PAD, dtype=torch.long)
    for i, t in enumerate(ids):
        x[i, : len(t)] = t
    return x, torch.stack(ys), lengths


class BucketBatchSampler(Sampler[list[int]]):
    """Batches of indices whose sequences have similar lengths.

    shuffle=True (training): each epoch, shuffle all indices, cut them into pools
    of `batch_size * pool_batches`, sort each pool by length, cut it into batches
    and shuffle the order of all batches. Batches stay random, padding stays small.
    shuffle=False (evaluation): one sort by length, deterministic.
    Lightning calls `set_epoch` before each epoch; without it the epoch counter
    advances on every pass, so the order still changes.
    """

    def __init__(
        self,
        lengths: torch.Tensor,
        batch_size: int,
        shuffle: bool = True,
        pool_batches: int = 50,
        seed: int = 0,
        drop_last: bool = False,
    ):
        self.lengths = torch.as_tensor(lengths)
        self.batch_size, self.shuffle, self.pool_batches = batch_size, shuffle, pool_batches
        self.seed, self.drop_last, self.epoch = seed, drop_last, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.lengths)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _chunks(self, order: torch.Tensor) -> list[list[int]]:
        batches = [c.tolist() for c in torch.split(order, self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        if not self.shuffle:
            batches = self._chunks(torch.argsort(self.lengths, stable=True))
        else:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            perm = torch.randperm(len(self.lengths), generator=g)
            batches = []
            pool = self.batch_size * self.pool_batches
            for chunk in torch.split(perm, pool):
                order = chunk[torch.argsort(self.lengths[chunk], stable=True)]
                batches += [c.tolist() for c in torch.split(order, self.batch_size)]
            # drop_last drops at most one short batch per pool; simpler: filter them all.
            if self.drop_last:
                batches = [b for b in batches if len(b) == self.batch_size]
            batches = [batches[i] for i in torch.randperm(len(batches), generator=g)]
        self.epoch += 1
        yield from batches


# --------------------------------------------------------------------------- datamodule


class IMDBDataModule(L.LightningDataModule):
    """IMDB reviews, tokenised, length-bucketed; labels: 0 negative, 1 positive.

    Args:
        root: folder holding `aclImdb/` (or the `aclImdb/` folder itself); the
            archive is downloaded and extracted here when neither is present.
        batch_size: training batch size; eval_batch_size for val/test (None: same).
        max_len: tokens kept per review (None: all); truncation: which ones,
            "first", "last" or "head+tail" (half from each end).
        max_vocab: vocabulary size including PAD and UNK; min_freq: a word must
            occur this often in the training split to get its own id.
        val_size: validation reviews carved from train (a fraction or a count),
            chosen with `split_seed`; test is the official test set.
        bucket: group training batches by length (False: plain shuffling).
        pool_batches: how many batches' worth of reviews are sorted together.
        download: fetch the official archive when no local copy is found.
        cache_dir: where processed tensors go (None: `<root>/cache`).
        lowercase, strip_html: tokeniser settings.
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
        self.save_hyperparameters()
        self.root = pathlib.Path(root).expanduser()
        self.tokenizer = Tokenizer(lowercase=lowercase, strip_html=strip_html)
        self.vocab: Vocab | None = None
        self.class_names = list(CLASS_NAMES)
        self.train_set = self.val_set = self.test_set = None

    # ---- locating, downloading, caching

    def _source(self) -> pathlib.Path:
        """The aclImdb folder to read, downloading and extracting it if needed."""
        root = self.root
        if (root / "aclImdb").is_dir():
            folder = root / "aclImdb"
        elif _has_layout(root):
            folder = root
        else:
            folder = self._fetch()
        check_layout(folder)
        return folder

    def _fetch(self) -> pathlib.Path:
        root, archive = self.root, self.root / ARCHIVE
        ours = {ARCHIVE, "cache"}
        # Ignored: hidden names (a killed extraction's .aclImdb.*.tmp) and download parts.
        names = [p.name for p in root.iterdir()] if root.is_dir() else []
        stray = [n for n in names if n not in ours and not n.startswith(".")
                 and not (n.startswith(ARCHIVE) and n.endswith(".part"))]
        if stray:
            # A folder with other things in it is meant to be a local copy: say
            # what it lacks rather than download 84 MB into it.
            raise UserError(
                f"{root} has no aclImdb data: expected {root}/aclImdb/{LAYOUT} (or {root}/{LAYOUT}, "
                f"or the archive {archive}); set data.root= to the folder holding aclImdb/"
            )
        if archive.exists():
            check_checksum(archive, sha256=SHA256)  # a corrupt local archive: say so
        elif self.hparams.download:
            download(URLS, archive, sha256=SHA256, override="data.root=/path/to/folder/with/aclImdb")
        else:
            raise UserError(
                f"no IMDB data in {root} and data.download=false: put aclImdb/ or {ARCHIVE} "
                "there, or set data.root= to the folder holding aclImdb/"
            )
        return extract(archive, root)

    def _cache_key(self, folder: pathlib.Path) -> str:
        # A folder's mtime changes when files are added, removed or renamed in it:
        # a cheap stand-in for listing 50,000 files on every run.
        stamps = {f"{s}/{lab}": (folder / s / lab).stat().st_mtime_ns
                  for s in SPLITS for lab in LABELS}
        opts = {
            "version": CACHE_VERSION,
            "source": str(folder.resolve()),
            "folders": stamps,
            "tokenizer": self.tokenizer.state_dict(),
            "max_vocab": self.hparams.max_vocab,
            "min_freq": self.hparams.min_freq,
        }
        return hashlib.sha256(json.dumps(opts, sort_keys=True).encode()).hexdigest()[:16]

    def _cache_path(self, folder: pathlib.Path) -> pathlib.Path:
        cache_dir = self.hparams.cache_dir
        cache_dir = pathlib.Path(cache_dir).expanduser() if cache_dir else self.root / "cache"
        return cache_dir / f"imdb-{self._cache_key(folder)}.pt"

    def prepare_data(self) -> None:
        """Download, extract and tokenise once; every step is skipped when done."""
        folder = self._source()
        path = self._cache_path(folder)
        if not path.exists():
            build_cache(folder, path, self.tokenizer, self.hparams.max_vocab, self.hparams.min_freq)

    def _load_cache(self) -> dict:
        folder = self._source()
        path = self._cache_path(folder)
        if not path.exists():
            self.prepare_data()
        return torch.load(path, weights_only=True)

    # ---- splits

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return  # idempotent: train.py calls setup once, Lightning again
        cache = self._load_cache()
        self.vocab = Vocab(cache["vocab"])
        train, test = (self._split(cache, s) for s in SPLITS)
        n = len(train[0])
        val_size = self.hparams.val_size
        n_val = int(round(val_size * n)) if isinstance(val_size, float) else int(val_size)
        if not 0 <= n_val < n:
            raise UserError(f"data.val_size={val_size} leaves no training reviews out of {n}")
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.hparams.split_seed))
        ids, labels, lengths = train
        val, fit = perm[:n_val], perm[n_val:]
        self.val_set = Reviews([ids[i] for i in val.tolist()], labels[val], lengths[val])
        self.train_set = Reviews([ids[i] for i in fit.tolist()], labels[fit], lengths[fit])
        self.test_set = Reviews(*test)

    def _split(self, cache: dict, split: str):
        """(ids per review, truncated; labels; lengths) of one split of the cache."""
        flat, offsets = cache[f"{split}_ids"].long(), cache[f"{split}_offsets"]
        max_len, side = self.hparams.max_len, self.hparams.truncation
        lengths = torch.diff(offsets)
        pieces = torch.split(flat, lengths.tolist())
        if max_len is not None:
            long = (lengths > max_len).nonzero().flatten().tolist()
            pieces = list(pieces)
            for i in long:  # only the long ones: most reviews need no work
                pieces[i] = truncate(pieces[i], max_len, side)
            lengths = lengths.clamp(max=max_len)
        return pieces, cache[f"{split}_labels"].long(), lengths

    @property
    def model_kwargs(self) -> dict:
        if self.vocab is None:
            raise RuntimeError("IMDBDataModule.model_kwargs is known after setup('fit')")
        return {"num_classes": len(self.class_names), "vocab_size": len(self.vocab)}

    # ---- loaders

    def _loader(self, dataset: Reviews, train: bool) -> DataLoader:
        hp = self.hparams
        batch_size = hp.batch_size if train else (hp.eval_batch_size or hp.batch_size)
        if train and not hp.bucket:
            return DataLoader(dataset, batch_size=batch_size, shuffle=True,
                              collate_fn=pad_collate, num_workers=hp.num_workers)
        sampler = BucketBatchSampler(dataset.lengths, batch_size, shuffle=train,
                                     pool_batches=hp.pool_batches, seed=hp.split_seed)
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=pad_collate,
                          num_workers=hp.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)

    # ---- checkpoints: what predict needs without the data folder

    def state_dict(self) -> dict:
        if self.vocab is None:
            return {}
        return {
            "vocab": list(self.vocab.itos),
            "tokenizer": self.tokenizer.state_dict(),
            "max_len": self.hparams.max_len,
            "truncation": self.hparams.truncation,
            "class_names": list(self.class_names),
        }

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        self.vocab = Vocab(state["vocab"])
        self.tokenizer = Tokenizer.from_state_dict(state["tokenizer"])
        self.hparams.max_len = state["max_len"]
        self.hparams.truncation = state["truncation"]
        self.class_names = list(state["class_names"])

    # ---- predict and TensorBoard

    def encode(self, text: str) -> torch.Tensor:
        ids = self.vocab.encode(self.tokenizer(text))
        return truncate(torch.tensor(ids, dtype=torch.long), self.hparams.max_len,
                        self.hparams.truncation)

    def decode(self, ids: torch.Tensor) -> str:
        return " ".join(self.vocab.decode(ids.tolist()))

    def encode_for_predict(self, request) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        """Reviews from `text=` or `file=` (one per line, `-` for stdin) -> (x, lengths, names)."""
        if self.vocab is None:
            raise UserError("this IMDB checkpoint carries no vocabulary; train it again")
        text, file, image = (request.get(k) for k in ("text", "file", "image"))
        if image is not None:
            raise UserError('an IMDB sentiment model reads text: give text="..." or '
                            "file=reviews.txt (one review per line), not image=")
        if (text is None) == (file is None):
            raise UserError('give exactly one of text="a review" or file=reviews.txt '
                            "(one review per line, file=- for stdin)")
        if text is not None:
            texts, names = [str(text)], ["text"]
        else:
            lines = _read_lines(str(file))
            numbered = [(i, t) for i, t in enumerate(lines, 1) if t.strip()]
            if not numbered:
                raise UserError(f"{file} has no reviews to predict: put one review per line")
            names = [f"line {i}" for i, _ in numbered]
            texts = [t for _, t in numbered]
        encoded = []
        for name, t in zip(names, texts, strict=True):
            ids = self.encode(t)
            if len(ids) == 0:
                where = "text is empty" if name == "text" else f"{file} {name} is empty"
                raise UserError(f"{where} (no words after tokenising {t.strip()[:40]!r}): "
                                "give a review with words in it")
            encoded.append(ids)
        names = [f"{n}: {_snippet(t)}" for n, t in zip(names, texts, strict=True)]
        x, _, lengths = pad_collate([(ids, torch.tensor(0)) for ids in encoded])
        return x, lengths, names

    def log_examples(self, writer, x, lengths, preds, targets, global_step: int, k: int = 5):
        """A few misclassified validation reviews as text, with their true and predicted labels."""
        wrong = (preds != targets).nonzero().flatten()[:k].tolist()
        if not wrong or self.vocab is None:
            return
        rows = []
        for i in wrong:
            words = self.decode(x[i, : int(lengths[i])])
            rows.append(f"**true {self.class_names[int(targets[i])]}, predicted "
                        f"{self.class_names[int(preds[i])]}**: {words}")
        writer.add_text("val/misclassified", "\n\n".join(rows), global_step)


def build_cache(folder: pathlib.Path, path: pathlib.Path, tokenizer: Tokenizer,
                max_vocab: int | None, min_freq: int) -> None:
    """Tokenise both splits, build the vocabulary from train, save atomically."""
    tokens, labels = {}, {}
    for split in SPLITS:
        texts, labels[split] = read_split(folder, split)
        # Never an empty review: one that tokenises to nothing becomes [UNK].
        tokens[split] = [tokenizer(t) or [UNK_TOKEN] for t in texts]
    vocab = Vocab.build(tokens["train"], max_size=max_vocab, min_freq=min_freq)
    to_id = vocab.lookup_table()
    cache: dict = {"vocab": vocab.itos}
    for split in SPLITS:
        # One flat int32 array + offsets: 12M tokens load in a fraction of a second.
        flat = itertools.chain.from_iterable(tokens[split])
        ids = np.fromiter(map(to_id.__getitem__, flat), dtype=np.int32)
        lengths = torch.tensor([0] + [len(t) for t in tokens[split]], dtype=torch.long)
        cache[f"{split}_ids"] = torch.from_numpy(ids)
        cache[f"{split}_offsets"] = torch.cumsum(lengths, 0)
        cache[f"{split}_labels"] = torch.tensor(labels[split], dtype=torch.uint8)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    except OSError as e:  # a read-only data.root, say
        raise UserError(
            f"cannot write the token cache to {path.parent} ({e.strerror or e}): "
            "set data.cache_dir= to a writable folder"
        ) from None
    os.close(fd)
    try:
        torch.save(cache, tmp)
        os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp makes it owner-only
        os.replace(tmp, path)
    finally:
        pathlib.Path(tmp).unlink(missing_ok=True)


def _read_lines(file: str) -> list[str]:
    if file == "-":
        return sys.stdin.read().splitlines()
    try:
        return pathlib.Path(file).expanduser().read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UserError(f"file={file} does not exist: give a text file with one review per line") from None
    except (UnicodeDecodeError, IsADirectoryError) as e:
        raise UserError(f"file={file} is not a UTF-8 text file ({type(e).__name__})") from None


def _snippet(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"
