"""The aclImdb files (Maas et al., ACL 2011): archive, layout, and the token cache.

Where the reviews come from, in order:
1. `root/aclImdb/`, or `root` itself when it has the aclImdb layout
   (`{train,test}/{pos,neg}/<id>_<rating>.txt`): a local copy, never modified.
2. `root/aclImdb_v1.tar.gz`, downloaded from Stanford when missing (sha256
   checked), then extracted once (only the labelled reviews) into `root/aclImdb`.

The token cache holds, for both splits, every review's token ids
(untruncated, as one flat int32 array plus offsets), its label and its file
name, and the vocabulary built from the training split. It is keyed by the
options that change the ids and by every review file's name, size and
modification time, so an edited review is never served stale.
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

import numpy as np
import torch

from seqmodels.data.download import check_checksum, download
from seqmodels.data.files import torch_save
from seqmodels.data.vocab import UNK_TOKEN, Tokenizer, Vocab
from seqmodels.errors import CannotWrite, UserError

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
CACHE_VERSION = 2  # bump when the cached format or the tokeniser's regex changes
LAYOUT = "{train,test}/{pos,neg}/<id>_<rating>.txt"


# --------------------------------------------------------------------------- where


def has_layout(folder: pathlib.Path) -> bool:
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


def locate(root: pathlib.Path, allow_download: bool) -> pathlib.Path:
    """The aclImdb folder under `root`, downloading and extracting it if needed."""
    if (root / "aclImdb").is_dir():
        folder = root / "aclImdb"
    elif has_layout(root):
        folder = root
    else:
        folder = fetch(root, allow_download)
    check_layout(folder)
    return folder


def fetch(root: pathlib.Path, allow_download: bool) -> pathlib.Path:
    archive = root / ARCHIVE
    # Ignored: hidden names (temporary files and folders of a killed download or extraction).
    names = [p.name for p in root.iterdir()] if root.is_dir() else []
    stray = [n for n in names if n not in (ARCHIVE, "cache") and not n.startswith(".")]
    if stray:
        # A folder with other things in it is meant to be a local copy: say
        # what it lacks rather than download 84 MB into it.
        raise UserError(
            f"{root} has no aclImdb data: expected {root}/aclImdb/{LAYOUT} (or {root}/{LAYOUT}, "
            f"or the archive {archive}); set data.root= to the folder holding aclImdb/"
        )
    if archive.exists():
        check_checksum(archive, sha256=SHA256)  # a corrupt local archive: say so
    elif allow_download:
        download(URLS, archive, sha256=SHA256, override="data.root=/path/to/folder/with/aclImdb")
    else:
        raise UserError(
            f"no IMDB data in {root} and data.download=false: put aclImdb/ or {ARCHIVE} "
            "there, or set data.root= to the folder holding aclImdb/"
        )
    return extract(archive, root)


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


# --------------------------------------------------------------------------- reading


def review_files(folder: pathlib.Path, split: str) -> list[tuple[str, int]]:
    """(path relative to folder, label) of every review of a split, in a fixed order."""
    files = []
    for y, label in enumerate(LABELS):
        names = sorted(
            (e.name for e in os.scandir(folder / split / label) if e.name.endswith(".txt")),
            key=_file_order,
        )
        files += [(f"{split}/{label}/{name}", y) for name in names]
    return files


def _file_order(name: str) -> tuple[int, str]:
    stem = name.split("_")[0]
    return (int(stem), name) if stem.isdigit() else (sys.maxsize, name)


def read_review(folder: pathlib.Path, name: str) -> str:
    return (folder / name).read_text(encoding="utf-8", errors="replace")


def fingerprint(folder: pathlib.Path) -> str:
    """A digest of every review file's name, size and modification time."""
    h = hashlib.sha256()
    for split in SPLITS:
        for label in LABELS:
            entries = sorted(os.scandir(folder / split / label), key=lambda e: e.name)
            for e in entries:
                st = e.stat()
                h.update(f"{split}/{label}/{e.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


# --------------------------------------------------------------------------- cache


def cache_path(
    folder: pathlib.Path,
    cache_dir: pathlib.Path,
    tokenizer: Tokenizer,
    max_vocab: int | None,
    min_freq: int,
) -> pathlib.Path:
    opts = {
        "version": CACHE_VERSION,
        "files": fingerprint(folder),
        "tokenizer": tokenizer.state_dict(),
        "max_vocab": max_vocab,
        "min_freq": min_freq,
    }
    key = hashlib.sha256(json.dumps(opts, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir / f"imdb-{key}.pt"


def build_cache(
    folder: pathlib.Path,
    path: pathlib.Path,
    tokenizer: Tokenizer,
    max_vocab: int | None,
    min_freq: int,
) -> None:
    """Tokenise both splits, build the vocabulary from train, save atomically."""
    tokens, labels, names = {}, {}, {}
    for split in SPLITS:
        files = review_files(folder, split)
        names[split] = [n for n, _ in files]
        labels[split] = [y for _, y in files]
        # Never an empty review: one that tokenises to nothing becomes [UNK].
        tokens[split] = [tokenizer(read_review(folder, n)) or [UNK_TOKEN] for n in names[split]]
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
        cache[f"{split}_files"] = names[split]
    try:
        torch_save(cache, path)
    except (OSError, CannotWrite) as e:  # a read-only data.root, a full disk
        raise UserError(
            f"cannot write the token cache to {path} ({e.strerror or e}): "
            "set data.cache_dir= to a writable folder with room"
        ) from None


def load_cache(path: pathlib.Path) -> dict:
    return torch.load(path, weights_only=True)
