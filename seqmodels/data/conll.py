"""CoNLL files: one token per line, a blank line between sentences.

Two layouts (`read_conll(path, format=...)`; `auto` picks CoNLL-U for a
`.conllu` file or one whose first token line has 10 tab-separated fields):

- CoNLL-U (Universal Dependencies): 10 tab-separated fields, the word form
  second; the tag comes from `column` (`upos`, `xpos`, or a 1-based column
  number: 4 is UPOS, 5 XPOS). `#` comment lines, multiword-token ranges
  (`1-2`) and empty nodes (`1.1`) are skipped: the tags belong to the words.
- columns (CoNLL-2003 and the like): whitespace-separated fields, the token
  first and the tag last (`column` may pick another one); `-DOCSTART-` lines
  are skipped.

Span tags (`B-PER`, `I-PER`, `E-`, `S-`, `O`) in IOB1, IOB2/BIO or BIOES are
read into spans with conlleval's rules (`spans`) and can be written back in any
of those schemes (`convert`): a file's own scheme need not be named.

Every malformed line is one UserError naming the file and the line number.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from seqmodels.errors import UserError

FORMATS = ("auto", "conllu", "columns")
CONLLU_COLUMNS = {"upos": 4, "xpos": 5}
SCHEMES = ("IOB1", "BIO", "BIOES")
Sentence = tuple[list[str], list[str]]  # (tokens, tags)
Span = tuple[str, int, int]  # (type, first token, last token), both ends inclusive


def column_number(column: str | int | None, conllu: bool) -> int | None:
    """The 1-based column of the tags; None: the last one (columns layout)."""
    if column is None or column == "last":
        return CONLLU_COLUMNS["upos"] if conllu else None
    if isinstance(column, str) and column.lower() in CONLLU_COLUMNS:
        return CONLLU_COLUMNS[column.lower()]
    try:
        number = int(column)
    except (TypeError, ValueError):
        number = 0
    if number < 2:
        raise UserError(
            f"data.column={column!r}: give upos, xpos or a column number (1-based, >= 2; "
            "column 1 holds the ids in CoNLL-U, the tokens otherwise)"
        )
    return number


def detect_format(path: Path, lines: Sequence[str]) -> str:
    if path.suffix.lower() == ".conllu":
        return "conllu"
    first = next((x for x in lines if x.strip() and not x.startswith("#")), "")
    return "conllu" if len(first.rstrip("\n").split("\t")) == 10 else "columns"


def read_lines(path: str | Path) -> tuple[Path, list[str]]:
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"{path}: no such file; give a CoNLL file (one token per line)")
    try:
        return path, path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text (byte offset {e.start})") from None


def read_conll(
    path: str | Path, format: str = "auto", column: str | int | None = None
) -> list[Sentence]:
    """The sentences of a CoNLL file as (tokens, tags); see the module docstring."""
    if format not in FORMATS:
        raise UserError(f"data.format={format!r} must be one of {', '.join(FORMATS)}")
    path, lines = read_lines(path)
    conllu = (detect_format(path, lines) if format == "auto" else format) == "conllu"
    number = column_number(column, conllu)
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []

    def close() -> None:
        if tokens:
            sentences.append((list(tokens), list(tags)))
        tokens.clear()
        tags.clear()

    for n, line in enumerate(lines, 1):
        if not line.strip():
            close()
            continue
        if conllu:
            if line.startswith("#"):
                continue
            fields = line.split("\t")
            if len(fields) != 10:
                raise UserError(
                    f"{path} line {n}: {len(fields)} tab-separated fields; a CoNLL-U token "
                    "line has 10 (or give data.format=columns for whitespace columns)"
                )
            ident = fields[0]
            if "-" in ident or "." in ident:  # a multiword token's range, an empty node
                continue
            if not ident.isdigit():
                raise UserError(f"{path} line {n}: the id {ident!r} is not a number")
            assert number is not None
            if number > 10:
                raise UserError(f"data.column={number}: CoNLL-U has 10 columns")
            token, tag = fields[1], fields[number - 1]
            if tag in ("", "_"):
                raise UserError(f"{path} line {n}: no tag in column {number} ({tag!r})")
        else:
            fields = line.split()
            if fields[0] == "-DOCSTART-":
                close()
                continue
            if len(fields) < 2:
                raise UserError(
                    f"{path} line {n}: one field ({fields[0]!r}); a line holds a token "
                    "and its tag (the last column), separated by whitespace"
                )
            if number is not None and number > len(fields):
                raise UserError(
                    f"{path} line {n}: {len(fields)} columns, no column {number} (data.column)"
                )
            token, tag = fields[0], fields[-1 if number is None else number - 1]
        tokens.append(token)
        tags.append(tag)
    close()
    if not sentences:
        raise UserError(f"{path} holds no sentences: one token and its tag per line")
    return sentences


# -- span schemes ----------------------------------------------------------------------


def split_tag(tag: str) -> tuple[str, str]:
    """("B", "PER") for "B-PER", ("O", "") for "O"; ("", tag) for a tag of no scheme.

    (seqmodels.nn.crf reads tags the same way for its constraints; data and nn
    import nothing of each other.)"""
    if tag == "O":
        return "O", ""
    prefix, dash, kind = tag.partition("-")
    if dash and kind and prefix in ("B", "I", "E", "S"):
        return prefix, kind
    return "", tag


def is_span_tagging(tags: Sequence[str]) -> bool:
    """Whether every tag is O or a scheme prefix and a type (B-X, I-X, E-X, S-X)."""
    return bool(tags) and all(split_tag(t)[0] for t in tags)


def spans(tags: Sequence[str]) -> list[Span]:
    """The spans of a tag sequence in IOB1, BIO or BIOES, by conlleval's rules.

    A span starts at B-X or S-X, or at I-X/E-X that does not continue a span of
    type X; it ends at E-X or S-X, or before a tag that does not continue it.
    """
    found: list[Span] = []
    kind, first = "", -1
    previous = "O"
    for i, tag in enumerate(tags):
        prefix, x = split_tag(tag)
        continues = kind == x and prefix in ("I", "E") and previous in ("B", "I")
        if kind and not continues:
            found.append((kind, first, i - 1))
            kind = ""
        if prefix in ("B", "S", "I", "E") and not continues:
            kind, first = x, i
        if prefix in ("E", "S") and kind:
            found.append((kind, first, i))
            kind = ""
        previous = prefix if prefix in ("B", "I") else "O"
    if kind:
        found.append((kind, first, len(tags) - 1))
    return found


def render(found: Sequence[Span], length: int, scheme: str) -> list[str]:
    """Tags in `scheme` for the given spans over `length` tokens."""
    tags = ["O"] * length
    previous_end: dict[str, int] = {}
    for kind, first, last in sorted(found, key=lambda s: s[1]):
        for i in range(first, last + 1):
            tags[i] = f"I-{kind}"
        if scheme == "BIO":
            tags[first] = f"B-{kind}"
        elif scheme == "BIOES":
            if first == last:
                tags[first] = f"S-{kind}"
            else:
                tags[first], tags[last] = f"B-{kind}", f"E-{kind}"
        elif previous_end.get(kind) == first - 1:  # IOB1: B only between two spans of a type
            tags[first] = f"B-{kind}"
        previous_end[kind] = last
    return tags


def convert(tags: Sequence[str], scheme: str) -> list[str]:
    """A span tag sequence (any of IOB1, BIO, BIOES) written in `scheme`."""
    return render(spans(tags), len(tags), scheme)


def check_scheme(scheme: str) -> str:
    """The scheme's canonical name (IOB2 is BIO); a UserError for an unknown one."""
    name = scheme.upper()
    name = "BIO" if name == "IOB2" else name
    if name not in SCHEMES:
        raise UserError(f"data.scheme={scheme!r} must be auto, none, iob1, bio (iob2) or bioes")
    return name
