"""Word tokeniser and vocabulary for text classification.

The tokeniser is deliberately simple and fast (one regex over the whole review):
lowercase, HTML line breaks (`<br />`) turned into spaces, then words — runs of
letters and digits with inner apostrophes kept ("isn't", "costner's") — and
`!`/`?` as tokens of their own, because they carry sentiment. Everything else
(punctuation, markup) is dropped.

`Vocab` maps words to ids: PAD = 0 (what batches are padded with), UNK = 1 (any
word not in the vocabulary), then words by decreasing frequency in the training
split (ties broken alphabetically, so a vocabulary is reproducible).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

PAD, UNK = 0, 1
PAD_TOKEN, UNK_TOKEN = "<pad>", "<unk>"

_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*|[!?]")


class Tokenizer:
    """Lowercase, strip `<br />`, split into words; settings travel in checkpoints."""

    def __init__(self, lowercase: bool = True, strip_html: bool = True):
        self.lowercase = lowercase
        self.strip_html = strip_html
        # Without lowercasing the word pattern must accept capitals too.
        self._word = _WORD if lowercase else re.compile(_WORD.pattern.replace("a-z", "a-zA-Z"))

    def __call__(self, text: str) -> list[str]:
        if self.strip_html:
            text = _BREAK.sub(" ", text)
        if self.lowercase:
            text = text.lower()
        return self._word.findall(text)

    def spans(self, text: str) -> list[tuple[int, int]]:
        """(start, end) in `text` of each token __call__ returns (for showing a review as
        the model read it). Breaks are blanked rather than removed so offsets hold."""
        if self.strip_html:
            text = _BREAK.sub(lambda m: " " * len(m.group()), text)
        word = re.compile(self._word.pattern, re.IGNORECASE) if self.lowercase else self._word
        return [m.span() for m in word.finditer(text)]

    def state_dict(self) -> dict:
        return {"lowercase": self.lowercase, "strip_html": self.strip_html}

    @classmethod
    def from_state_dict(cls, state: dict) -> Tokenizer:
        return cls(**state)


class Vocab:
    """Word <-> id table with PAD = 0 and UNK = 1."""

    def __init__(self, words: Sequence[str]):
        words = list(words)
        if words[:2] != [PAD_TOKEN, UNK_TOKEN]:
            words = [PAD_TOKEN, UNK_TOKEN] + words
        self.itos = words
        self.stoi = {w: i for i, w in enumerate(words)}

    @classmethod
    def build(
        cls, token_lists: Iterable[Sequence[str]], max_size: int | None = None, min_freq: int = 1
    ) -> Vocab:
        """Most frequent words first; `max_size` counts PAD and UNK."""
        counts: Counter[str] = Counter()
        for tokens in token_lists:
            counts.update(tokens)
        ranked = sorted(
            (w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w)
        )
        if max_size is not None:
            ranked = ranked[: max(max_size - 2, 0)]
        return cls(ranked)

    def __len__(self) -> int:
        return len(self.itos)

    def lookup_table(self) -> dict[str, int]:
        """word -> id as a dict that answers UNK for unknown words (fast with map())."""
        return _Lookup(self.stoi)

    def encode(self, tokens: Iterable[str]) -> list[int]:
        get = self.stoi.get
        return [get(t, UNK) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[i] for i in ids]


class _Lookup(dict):
    # dict.__getitem__ calls __missing__ in C: map(table.__getitem__, words) is
    # about twice as fast as a comprehension with stoi.get(w, UNK).
    def __missing__(self, key: str) -> int:
        return UNK
