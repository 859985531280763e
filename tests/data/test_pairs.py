"""Files of pairs: the Tatoeba/Anki layout, tokens by character or word, several targets per
source, the seeded split by source, and every bad file as one line naming file and line."""

from __future__ import annotations

import pytest

from seqmodels.data.pairs import read_pairs, split_by_source
from seqmodels.data.seq2seq import Seq2SeqDataModule
from seqmodels.errors import UserError

FRA = """\
Go.\tVa !\tCC-BY 2.0 (France) Attribution: tatoeba.org #2877272 (CM) & #1158250 (Wittydev)
Hi.\tSalut !\tCC-BY 2.0 (France) Attribution: tatoeba.org #538123 (CM) & #509819 (Aiji)
Hi.\tSalut.\tCC-BY 2.0 (France) Attribution: tatoeba.org #538123 (CM) & #4320462 (gillux)

Run!\tCours !\tCC-BY 2.0 (France) Attribution: tatoeba.org #906328 (papabear) & #906331 (sacredceltic)
"""


def test_extra_columns_are_ignored_and_a_source_keeps_every_target(tmp_path):
    path = tmp_path / "fra.txt"
    path.write_text(FRA, encoding="utf-8")
    entries = read_pairs(path, "space", "space")
    assert list(entries) == [("Go.",), ("Hi.",), ("Run!",)]
    assert entries[("Hi.",)] == [("Salut", "!"), ("Salut.",)]
    chars = read_pairs(path, "char", "char")
    assert chars[tuple("Go.")] == [tuple("Va !")]


@pytest.mark.parametrize(
    "text,message",
    [
        ("cat\tkat\ndog dog\n", "line 2: no tab"),
        ("cat\tkat\n\t dog\n", "line 2: the source is empty"),
        ("cat\tkat\nbird\tbird\ndog\t  \n", "line 3: the target is empty"),
        ("\n  \n", "holds no pairs"),
    ],
)
def test_each_bad_file_is_one_line_naming_the_file_and_line(tmp_path, text, message):
    path = tmp_path / "pairs.tsv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(UserError) as e:
        read_pairs(path, "char", "char")
    assert message in str(e.value) and str(path) in str(e.value)
    assert "\n" not in str(e.value)


def test_the_split_is_by_source_seeded_and_covers_every_source():
    sources = [(f"s{i}",) for i in range(200)]
    split = split_by_source(sources, 0.05, 0.1, seed=3)
    assert split == split_by_source(sources, 0.05, 0.1, seed=3)
    assert split != split_by_source(sources, 0.05, 0.1, seed=4)
    names = list(split.values())
    assert (names.count("val"), names.count("test"), names.count("train")) == (10, 20, 170)
    with pytest.raises(UserError, match="too few"):
        split_by_source(sources[:2], 0.05, 0.1, seed=0)


def test_the_datamodule_detects_a_pairs_file_by_its_tab(tmp_path):
    path = tmp_path / "reverse.tsv"
    words = [f"{a}{b}{c}" for a in "abcde" for b in "abcde" for c in "abcd"]
    path.write_text("".join(f"{w}\t{w[::-1]}\n" for w in words), encoding="utf-8")
    dm = Seq2SeqDataModule(path=str(path), split_seed=1)
    dm.setup()
    assert dm.resolved_format() == "pairs"
    assert sum(len(s) for s in dm.splits.values()) == len(words)
    x, lengths = dm.encode_texts(["abc"])
    assert dm.decode_source(x[0]) == "abc" and dm.decode_target([4, 5, 2, 6]) == "ab"
