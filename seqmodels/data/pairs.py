"""Any file of (source, target) pairs, one per line: `source<TAB>target`.

Columns after the second are ignored, so the Tatoeba/Anki sentence files
(`fra.txt`: English, French, attribution) read as they are. Blank lines are
skipped. Each side is a sequence of tokens: its characters (`char`) or its
whitespace-separated words (`space`). A source that appears on several lines
keeps every distinct target as a reference: training sees every pair, and
evaluation counts an output as right when it equals any of them.

A line without a tab, or with an empty side, and a file with no pairs at all,
is one UserError naming the file and the line.
"""

from __future__ import annotations

from pathlib import Path

import torch

from seqmodels.errors import UserError

TOKENS = ("char", "space")
Entries = dict[tuple[str, ...], list[tuple[str, ...]]]  # source tokens -> its targets


def tokens(text: str, kind: str) -> tuple[str, ...]:
    """A side of a pair as tokens: its characters, or its whitespace-separated words."""
    return tuple(text) if kind == "char" else tuple(text.split())


def check_kind(name: str, kind: str) -> None:
    if kind not in TOKENS:
        raise UserError(f"data.{name}={kind!r} must be one of {', '.join(TOKENS)}")


def read_pairs(
    path: str | Path, source_tokens: str = "char", target_tokens: str = "char"
) -> Entries:
    """Every source's distinct targets, in the file's order (see the module docstring)."""
    check_kind("source_tokens", source_tokens)
    check_kind("target_tokens", target_tokens)
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"data.path={path}: no such file; give a file of source<TAB>target lines")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text (byte offset {e.start})") from None
    entries: Entries = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if "\t" not in line:
            raise UserError(f"{path} line {number}: no tab; each line is source<TAB>target")
        source_text, target_text = line.split("\t")[:2]
        source = tokens(source_text.strip(), source_tokens)
        target = tokens(target_text.strip(), target_tokens)
        for side, toks in (("source", source), ("target", target)):
            if not toks:
                raise UserError(f"{path} line {number}: the {side} is empty")
        known = entries.setdefault(source, [])
        if target not in known:
            known.append(target)
    if not entries:
        raise UserError(f"{path} holds no pairs: give source<TAB>target lines")
    return entries


def split_by_source(
    sources: list[tuple[str, ...]], val_fraction: float, test_fraction: float, seed: int
) -> dict[tuple[str, ...], str]:
    """Each source's split, drawn with `seed`: every pair of a source lands in one split."""
    for name, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 < f < 1.0:
            raise UserError(f"data.{name}={f} must be between 0 and 1 (e.g. 0.05)")
    n = len(sources)
    n_val, n_test = max(1, round(n * val_fraction)), max(1, round(n * test_fraction))
    if n_val + n_test >= n:
        raise UserError(
            f"{n} distinct sources are too few for data.val_fraction={val_fraction} and "
            f"data.test_fraction={test_fraction}: each split needs at least one"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    split = {sources[i]: "val" for i in order[:n_val]}
    split.update({sources[i]: "test" for i in order[n_val : n_val + n_test]})
    split.update({sources[i]: "train" for i in order[n_val + n_test :]})
    return split
