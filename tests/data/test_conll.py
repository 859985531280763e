"""CoNLL reading: CoNLL-U columns, ranges, empty nodes and comments; CoNLL-2003 columns and
-DOCSTART-; span schemes read by conlleval's rules and converted; one line per bad line;
TaggingDataModule's splits and vocabularies, and the Turkish treebank's split (resuming
mid-epoch: tests/data/test_resumable.py, for every task)."""

from __future__ import annotations

import importlib.metadata

import pytest

from seqmodels.data.conll import convert, read_conll, spans
from seqmodels.data.tagging import SHAPES, TaggingDataModule, shape
from seqmodels.errors import UserError

CONLLU = """# sent_id = 1
# text = Vámonos al mar.
1-2\tVámonos\t_\t_\t_\t_\t_\t_\t_\t_
1\tVamos\tir\tVERB\tVMM\t_\t0\troot\t_\t_
2\tnos\tnosotros\tPRON\tPP\t_\t1\tobj\t_\t_
3-4\tal\t_\t_\t_\t_\t_\t_\t_\t_
3\ta\ta\tADP\tSPS\t_\t5\tcase\t_\t_
4\tel\tel\tDET\tDA\t_\t5\tdet\t_\t_
4.1\tvoy\tir\tVERB\tVMI\t_\t_\t_\t1:conj\t_
5\tmar\tmar\tNOUN\tNC\t_\t1\tobl\t_\t_

1\tSí\tsí\tINTJ\tI\t_\t0\troot\t_\t_
"""


def write(tmp_path, text, name="data.txt"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_conllu_words_and_columns(tmp_path):
    path = write(tmp_path, CONLLU, "ud.conllu")
    sentences = read_conll(path)
    assert sentences == [
        (["Vamos", "nos", "a", "el", "mar"], ["VERB", "PRON", "ADP", "DET", "NOUN"]),
        (["Sí"], ["INTJ"]),
    ]
    assert read_conll(path, column="xpos")[0][1] == ["VMM", "PP", "SPS", "DA", "NC"]
    assert read_conll(path, column=5) == read_conll(path, column="xpos")
    # detected by its 10 tab-separated fields whatever the name
    assert read_conll(write(tmp_path, CONLLU, "ud.txt")) == sentences


def test_conll2003_columns(tmp_path):
    text = (
        "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n"
        "German JJ B-NP B-MISC\n\n-DOCSTART- -X- -X- O\n\nPeter NNP B-NP B-PER\n"
    )
    sentences = read_conll(write(tmp_path, text))
    assert sentences == [
        (["EU", "rejects", "German"], ["B-ORG", "O", "B-MISC"]),
        (["Peter"], ["B-PER"]),
    ]
    assert read_conll(write(tmp_path, text), column=2)[0][1] == ["NNP", "VBZ", "JJ"]


@pytest.mark.parametrize(
    ("text", "fmt", "where"),
    [
        ("EU B-ORG\nrejects\n", "columns", "line 2"),
        ("1\tVamos\tir\tVERB\n", "conllu", "line 1"),
        ("# c\n1\tVamos\tir\t_\tV\t_\t0\troot\t_\t_\n", "conllu", "line 2"),
        ("x\tVamos\tir\tVERB\tV\t_\t0\troot\t_\t_\n", "conllu", "line 1"),
    ],
)
def test_a_bad_line_is_one_line_naming_file_and_line(tmp_path, text, fmt, where):
    path = write(tmp_path, text)
    with pytest.raises(UserError) as err:
        read_conll(path, format=fmt)
    message = str(err.value)
    assert "\n" not in message and str(path) in message and where in message


def test_no_file_no_sentences_and_bad_options(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        read_conll(tmp_path / "missing.conll")
    with pytest.raises(UserError, match="no sentences"):
        read_conll(write(tmp_path, "\n\n"))
    with pytest.raises(UserError, match="column"):
        read_conll(write(tmp_path, "a B-X\n"), column="lemma")
    with pytest.raises(UserError, match="data.train"):
        TaggingDataModule(train=str(tmp_path / "a"))


def test_spans_follow_conlleval():
    # BIO, I- after O starts a span (conlleval), B- splits two spans of a type
    assert spans(["B-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-LOC"]) == [
        ("PER", 0, 1),
        ("LOC", 3, 3),
        ("LOC", 4, 5),
    ]
    assert spans(["B-PER", "I-LOC"]) == [("PER", 0, 0), ("LOC", 1, 1)]
    # IOB1: I- starts a span, B- only between two of a type
    assert spans(["I-PER", "I-PER", "B-PER", "O", "I-ORG"]) == [
        ("PER", 0, 1),
        ("PER", 2, 2),
        ("ORG", 4, 4),
    ]
    # BIOES
    assert spans(["S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]) == [
        ("PER", 0, 0),
        ("LOC", 1, 3),
        ("LOC", 4, 4),
    ]


def test_schemes_convert_both_ways():
    iob1 = ["I-PER", "I-PER", "B-PER", "O", "I-LOC", "O"]
    bio = ["B-PER", "I-PER", "B-PER", "O", "B-LOC", "O"]
    bioes = ["B-PER", "E-PER", "S-PER", "O", "S-LOC", "O"]
    assert convert(iob1, "BIO") == bio
    assert convert(bio, "BIOES") == bioes
    assert convert(bioes, "IOB1") == iob1
    assert convert(bioes, "BIO") == bio


def test_shapes():
    assert [SHAPES[shape(t)] for t in ("ev", "Ankara", "NATO", "iPhone", "1923", "3.5", ",")] == [
        "lower",
        "Title",
        "UPPER",
        "mIxed",
        "digits",
        "digits+",
        "punct",
    ]


def test_datamodule_splits_vocabulary_and_scheme(small_data):
    dm = TaggingDataModule(path=str(small_data / "ner.conll"), scheme="bioes", batch_size=4)
    dm.setup()
    sizes = {k: len(v) for k, v in dm.splits.items()}
    assert sizes == {"train": 48, "val": 6, "test": 6}
    assert dm.scheme == "BIOES" and dm.tags[0] == "O"
    assert {"B-PER", "E-PER", "S-LOC", "S-PER"} <= set(dm.tags)
    kw = dm.model_kwargs
    assert kw["tags"] == dm.tags and kw["vocab_size"] == len(dm.words.itos)
    # words are lowercased, ranked by frequency; the singletons come last
    assert "mr" in dm.words.stoi and "Smith" not in dm.words.stoi
    assert kw["singletons_from"] <= kw["vocab_size"]
    # the same split with the same seed, another with another
    again = TaggingDataModule(path=str(small_data / "ner.conll"))
    again.setup()
    assert again.splits["val"].tokens == dm.splits["val"].tokens and again.scheme == "BIO"
    other = TaggingDataModule(path=str(small_data / "ner.conll"), split_seed=1)
    other.setup()
    assert other.splits["val"].tokens != dm.splits["val"].tokens
    # a checkpoint's state encodes new sentences alike
    fresh = TaggingDataModule(path=str(small_data / "ner.conll"))
    fresh.load_state_dict(again.state_dict())
    batch = fresh.encode_sentences([["mr", "Zork", "lives"]])
    assert batch.words[0, 1] == 1  # unknown word: UNK
    assert batch.chars.shape[:2] == (1, 3) and batch.shapes[0, 1] == SHAPES.index("Title")


def test_turkish_treebank_split():
    try:
        importlib.metadata.files("turkish-treebanks")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip('turkish-treebanks is not installed (pip install "seqmodels[tagging]")')
    dm = TaggingDataModule()
    dm.setup()
    sizes = {k: (len(v), int(v.lengths.sum())) for k, v in dm.splits.items()}
    assert sizes == {"train": (3881, 64707), "val": (485, 8638), "test": (485, 8025)}
    assert dm.scheme is None and dm.tags == sorted(
        "ADJ ADP ADV AFFIX CONJ DET NOUN NUM ONOM PRON PRT PUNCT VERB X".split()
    )
