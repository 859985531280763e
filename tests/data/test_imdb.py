"""IMDBDataModule, its files (aclimdb.py), tokeniser and vocabulary, on a tiny aclImdb
folder written here; real-data checks when SEQMODELS_TEST_DATA has imdb/."""

import hashlib
import io
import pathlib
import socket
import tarfile

import pytest
import torch
from support import compose_train, real_data, write_tiny_imdb

from seqmodels.data import aclimdb
from seqmodels.data.batching import PAD, truncate
from seqmodels.data.download import ChecksumError, DownloadError
from seqmodels.data.imdb import IMDBDataModule
from seqmodels.data.vocab import UNK, Tokenizer, Vocab
from seqmodels.errors import UserError


def make_archive(src_root: pathlib.Path, dest: pathlib.Path) -> str:
    with tarfile.open(dest, "w:gz") as tar:
        tar.add(src_root / "aclImdb", arcname="aclImdb")
    return hashlib.sha256(dest.read_bytes()).hexdigest()


def dm_for(root, **kw) -> IMDBDataModule:
    kw = {"batch_size": 4, "max_len": 20, "min_freq": 1, "val_size": 4, **kw}
    return IMDBDataModule(root=str(root), **kw)


# --------------------------------------------------------------- tokeniser, vocabulary


def test_tokenizer_lowercases_strips_breaks_keeps_apostrophes_and_marks():
    tok = Tokenizer()
    assert tok("Loved it!<br /><br />Costner's BEST film?<br/>Isn't it... 10/10") == [
        "loved",
        "it",
        "!",
        "costner's",
        "best",
        "film",
        "?",
        "isn't",
        "it",
        "10",
        "10",
    ]
    assert tok("<br />  ...  ") == []
    assert Tokenizer(lowercase=False)("The END") == ["The", "END"]


def test_vocab_pad_unk_frequency_order_and_limits():
    docs = [["b", "a", "b"], ["c", "b", "a"], ["d"]]
    v = Vocab.build(docs)
    assert v.itos == ["<pad>", "<unk>", "b", "a", "c", "d"]  # by count, ties alphabetical
    assert (v.stoi["<pad>"], v.stoi["<unk>"]) == (PAD, UNK)
    assert v.encode(["a", "never-seen"]) == [3, UNK]
    assert Vocab.build(docs, min_freq=2).itos == ["<pad>", "<unk>", "b", "a"]
    assert Vocab.build(docs, max_size=3).itos == ["<pad>", "<unk>", "b"]
    assert Vocab(v.itos).itos == v.itos  # rebuilt from a checkpoint's list
    assert v.lookup_table()["never-seen"] == UNK


def test_truncate_sides():
    ids = torch.arange(10)
    assert truncate(ids, 4, "first").tolist() == [0, 1, 2, 3]
    assert truncate(ids, 4, "last").tolist() == [6, 7, 8, 9]
    assert truncate(ids, 5, "head+tail").tolist() == [0, 1, 7, 8, 9]
    assert truncate(ids, 20, "last").tolist() == ids.tolist()
    assert truncate(ids, None, "first").tolist() == ids.tolist()


def test_bad_options_are_one_line_errors(tiny_imdb):
    with pytest.raises(UserError, match="data.truncation='middle' is not one of first, last"):
        dm_for(tiny_imdb, truncation="middle")
    with pytest.raises(UserError, match="data.max_len=0 must be at least 1"):
        dm_for(tiny_imdb, max_len=0)
    with pytest.raises(
        UserError, match="data.val_size=24 leaves no training or no validation reviews out of 24"
    ):
        dm_for(tiny_imdb, val_size=24).setup()
    with pytest.raises(UserError, match="data.val_size=0 leaves no training or no validation"):
        dm_for(tiny_imdb, val_size=0).setup()


# --------------------------------------------------------------- layouts and archives


def test_root_may_hold_aclimdb_or_be_it(tiny_imdb):
    a, b = dm_for(tiny_imdb), dm_for(tiny_imdb / "aclImdb")
    a.setup("fit")
    b.setup("fit")
    assert a.vocab.itos == b.vocab.itos
    assert [len(a.splits[k]) for k in ("train", "val", "test")] == [20, 4, 24]
    assert a.model_kwargs == {"num_classes": 2, "vocab_size": len(a.vocab)}
    # Vocabulary from the training split only: a test-only word is unknown.
    assert "zyzzyva" not in a.vocab.stoi


def test_folder_without_layout_names_what_was_expected(tiny_imdb):
    missing = tiny_imdb / "aclImdb" / "test" / "neg"
    for f in missing.iterdir():
        f.unlink()
    missing.rmdir()
    with pytest.raises(UserError) as info:
        dm_for(tiny_imdb).prepare_data()
    msg = str(info.value)
    assert "{train,test}/{pos,neg}/<id>_<rating>.txt" in msg and str(missing) in msg
    assert "is missing" in msg and "data.root=" in msg and "\n" not in msg


def test_unrelated_folder_is_not_a_download_target(tmp_path):
    (tmp_path / "notes.txt").write_text("not imdb")
    with pytest.raises(UserError, match=r"has no aclImdb data: expected .*aclImdb/\{train,test\}"):
        dm_for(tmp_path).prepare_data()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_archive_is_checked_and_extracted_once(tiny_imdb, tmp_path, monkeypatch):
    root = tmp_path / "fresh"
    root.mkdir()
    monkeypatch.setattr(aclimdb, "SHA256", make_archive(tiny_imdb, root / aclimdb.ARCHIVE))
    (root / ".aclImdb.killed.tmp").mkdir()  # what a killed extraction leaves: not in the way
    dm = dm_for(root, download=False)
    dm.prepare_data()
    assert (root / "aclImdb" / "train" / "pos" / "0_9.txt").exists()
    # Second run: the extracted folder is used as it is.
    monkeypatch.setattr(aclimdb, "extract", lambda *a: pytest.fail("extracted twice"))
    dm2 = dm_for(root, download=False)
    dm2.setup()
    assert len(dm2.splits["test"]) == 24
    assert [p.name for p in root.iterdir() if p.name.startswith(".")] == [".aclImdb.killed.tmp"]


def test_corrupt_archive_checksum_mismatch(tiny_imdb, tmp_path):
    root = tmp_path / "fresh"
    root.mkdir()
    make_archive(tiny_imdb, root / aclimdb.ARCHIVE)  # not the official bytes
    with pytest.raises(ChecksumError) as info:
        dm_for(root).prepare_data()
    assert f"expected {aclimdb.SHA256}" in str(info.value)
    assert sorted(p.name for p in root.iterdir()) == [aclimdb.ARCHIVE]  # nothing extracted


def test_truncated_archive_leaves_nothing_half_extracted(tiny_imdb, tmp_path, monkeypatch):
    root = tmp_path / "fresh"
    root.mkdir()
    archive = root / aclimdb.ARCHIVE
    make_archive(tiny_imdb, archive)
    archive.write_bytes(archive.read_bytes()[:-200])
    monkeypatch.setattr(aclimdb, "SHA256", hashlib.sha256(archive.read_bytes()).hexdigest())
    with pytest.raises(UserError, match="is corrupt or not a tar.gz"):
        dm_for(root).prepare_data()
    assert sorted(p.name for p in root.iterdir()) == [aclimdb.ARCHIVE]


def test_download_from_mirror_then_extract(tiny_imdb, tmp_path, monkeypatch):
    served = tmp_path / "served.tar.gz"
    monkeypatch.setattr(aclimdb, "SHA256", make_archive(tiny_imdb, served))
    monkeypatch.setattr(aclimdb, "URLS", ("http://127.0.0.1:1/aclImdb_v1.tar.gz", served.as_uri()))
    root = tmp_path / "data" / "imdb"
    dm = dm_for(root)
    dm.setup()
    assert len(dm.splits["test"]) == 24
    assert sorted(p.name for p in root.iterdir()) == ["aclImdb", "aclImdb_v1.tar.gz", "cache"]


def test_offline_error_names_url_and_data_root(tmp_path, monkeypatch):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{s.getsockname()[1]}/aclImdb_v1.tar.gz"
    s.close()
    monkeypatch.setattr(aclimdb, "URLS", (url,))
    root = tmp_path / "imdb"
    with pytest.raises(DownloadError) as info:
        dm_for(root).prepare_data()
    msg = str(info.value)
    assert "aclImdb_v1.tar.gz" in msg and url in msg and "data.root=" in msg
    assert list(root.iterdir()) == []


def test_no_data_and_download_disabled(tmp_path):
    with pytest.raises(UserError, match="data.download=false"):
        dm_for(tmp_path / "empty", download=False).prepare_data()


# --------------------------------------------------------------- cache


def test_cache_is_reused_and_keyed_by_options(tiny_imdb, monkeypatch):
    dm_for(tiny_imdb).setup()
    cache = tiny_imdb / "cache"
    assert len(list(cache.glob("imdb-*.pt"))) == 1
    calls = []
    real_build = aclimdb.build_cache
    monkeypatch.setattr(aclimdb, "build_cache", lambda *a: calls.append(a) or real_build(*a))
    # Truncation and split options are applied on load: no new tokenising.
    dm = dm_for(tiny_imdb, max_len=3, truncation="last", val_size=0.5, split_seed=7)
    dm.setup()
    assert calls == [] and int(dm.splits["train"].lengths.max()) == 3
    # A vocabulary option changes the ids: a second cache file.
    dm_for(tiny_imdb, max_vocab=10).setup()
    assert len(calls) == 1 and len(list(cache.glob("imdb-*.pt"))) == 2


def test_a_review_edited_in_place_is_not_served_from_the_cache(tiny_imdb):
    dm = dm_for(tiny_imdb, max_len=None)
    dm.setup()
    review = tiny_imdb / "aclImdb" / "test" / "pos" / "3_9.txt"
    review.write_text(review.read_text() + " wonderful wonderful")  # same folder mtime or not
    edited = dm_for(tiny_imdb, max_len=None)
    edited.setup()
    assert len(list((tiny_imdb / "cache").glob("imdb-*.pt"))) == 2
    before, after = (int(d.splits["test"].lengths.sum()) for d in (dm, edited))
    assert after == before + 2


def test_a_killed_cache_write_leaves_no_temporary_behind(tiny_imdb):
    dm_for(tiny_imdb).setup()
    (built,) = (tiny_imdb / "cache").iterdir()
    built.unlink()  # as if the process was killed while saving it:
    dead = 2**22 + 12345  # no such process
    (built.parent / f".{built.name}.{dead}.x1y2.tmp").write_bytes(b"half a cache")
    dm_for(tiny_imdb).setup()
    assert [p.name for p in built.parent.iterdir()] == [built.name]


def test_failed_cache_write_leaves_no_file(tiny_imdb, monkeypatch):
    def broken_save(obj, f):
        f.write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(UserError, match="cannot write the token cache .*No space left"):
        dm_for(tiny_imdb).prepare_data()
    assert list((tiny_imdb / "cache").iterdir()) == []


def test_unwritable_cache_folder_is_one_clear_line(tiny_imdb, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(
        UserError, match=r"cannot write the token cache to .*a_file.*data\.cache_dir="
    ):
        dm_for(tiny_imdb, cache_dir=str(blocker / "cache")).prepare_data()


# --------------------------------------------------------------- splits and batches


def test_val_split_is_fixed_by_seed_and_disjoint(tiny_imdb):
    def val_ids(seed):
        dm = dm_for(tiny_imdb, split_seed=seed, max_len=None)
        dm.setup()
        return [tuple(t.tolist()) for t in dm.splits["val"].ids], dm

    a, dm = val_ids(0)
    assert a == val_ids(0)[0]
    assert a != val_ids(1)[0]
    val, train = dm.splits["val"], dm.splits["train"]
    assert len(val) == 4 and len(train) == 20
    # Both splits hold views of the same cached reviews: no review is in both.
    assert not {id(t) for t in val.ids} & {id(t) for t in train.ids}
    assert len({id(t) for t in val.ids + train.ids}) == 24


def test_batches_are_padded_at_the_end_with_lengths(tiny_imdb):
    dm = dm_for(tiny_imdb)
    dm.setup()
    seen = 0
    for x, y, lengths in dm.train_dataloader():
        assert x.dtype == torch.long and y.dtype == torch.long and lengths.dtype == torch.long
        assert x.shape == (len(y), int(lengths.max()))
        for row, n in zip(x, lengths, strict=True):
            assert (row[:n] != PAD).all() and (row[n:] == PAD).all()
        seen += len(y)
    assert seen == len(dm.splits["train"])
    x, y, lengths = next(iter(dm.test_dataloader()))
    assert lengths.tolist() == sorted(lengths.tolist())  # eval batches sorted by length
    assert set(y.tolist()) <= {0, 1}


# --------------------------------------------------------------- checkpoint state, predict


def restored(tiny_imdb) -> tuple[IMDBDataModule, IMDBDataModule]:
    dm = dm_for(tiny_imdb, max_len=5, truncation="head+tail")
    dm.setup()
    fresh = IMDBDataModule(root="/nonexistent/folder")  # predict never reads the data folder
    fresh.load_state_dict(dm.state_dict())
    return dm, fresh


def test_state_dict_carries_vocab_and_tokeniser(tiny_imdb):
    dm, fresh = restored(tiny_imdb)
    assert fresh.vocab.itos == dm.vocab.itos
    assert fresh.max_len == 5 and fresh.truncation == "head+tail"
    text = "Great<br />film, AWFUL script and zyzzyva!"
    assert torch.equal(fresh.encode(text), dm.encode(text))
    assert len(fresh.encode(text)) == 5
    assert fresh.class_names == ["negative", "positive"]


def test_encode_texts_pads_and_refuses_reviews_without_words(tiny_imdb):
    _, dm = restored(tiny_imdb)
    x, lengths = dm.encode_texts(["a great film", "awful"])
    assert x.shape == (2, 3) and lengths.tolist() == [3, 1]
    assert x[0].tolist() == dm.vocab.encode(["a", "great", "film"])
    assert x[1].tolist() == dm.vocab.encode(["awful"]) + [PAD, PAD]
    with pytest.raises(UserError, match=r"input 2 has no words after tokenising \('<br />...'\)"):
        dm.encode_texts(["good", "<br />..."])


class _Writer:
    def __init__(self):
        self.texts = []

    def add_text(self, tag, text, global_step):
        self.texts.append((tag, text, global_step))


def test_tracked_reviews_are_the_same_and_shown_as_written(tiny_imdb):
    dm = dm_for(tiny_imdb, val_size=6, max_len=6, truncation="head+tail")
    dm.setup()
    again = dm_for(tiny_imdb, val_size=6, max_len=6, truncation="head+tail")
    again.setup()
    x, y, lengths = dm.example_batch()
    assert torch.equal(x, again.example_batch()[0])  # the same reviews, run after run
    assert len(y) == 6 and lengths.max() <= 6
    probs = torch.nn.functional.one_hot(1 - y, 2).float() * 0.9 + 0.05  # all wrong, p = 0.95
    w = _Writer()
    dm.log_examples(w, (x, y, lengths), probs, global_step=7)
    ((tag, text, step),) = w.texts
    assert tag == "val/misclassified" and step == 7
    assert text.startswith("**6 of 6** tracked validation reviews are misclassified")
    assert text.count("(0.95)**") == 6
    long = max(dm.example_texts, key=len)  # e.g. "wonderful, moving and funny" x 5
    assert dm.tokenizer(long)[:3] == dm.decode(dm.encode(long)[:3]).split()
    shown = dm.render(long)
    # As written (capitals, punctuation), the middle the model skipped marked once.
    assert shown.count("**[…]**") == (len(dm.tokenizer(long)) > 6)
    assert shown.replace(" **[…]** ", " ").split()[0] == long.split()[0]


def test_token_spans_match_the_tokens():
    tok = Tokenizer()
    text = "Loved it!<br /><br />Costner's BEST film?<br/>Isn't it... 10/10"
    assert [text[a:b].lower() for a, b in tok.spans(text)] == tok(text)


# --------------------------------------------------------------- real data


def test_real_archive_counts_and_tokeniser_on_a_known_file():
    # Streams the archive (about 2 s) instead of extracting 50,000 files.
    counts: dict[str, int] = {}
    known = None
    with tarfile.open(real_data("imdb", "aclImdb_labeled.tar.gz"), "r:gz") as tar:
        for m in tar:
            if m.isfile() and m.name.endswith(".txt"):
                key = "/".join(m.name.split("/")[1:3])
                counts[key] = counts.get(key, 0) + 1
                if m.name == "aclImdb/train/pos/0_9.txt":
                    known = tar.extractfile(m).read().decode()
    assert counts == {"train/pos": 12500, "train/neg": 12500, "test/pos": 12500, "test/neg": 12500}
    tokens = Tokenizer()(known)
    assert tokens[:8] == ["bromwell", "high", "is", "a", "cartoon", "comedy", "it", "ran"]
    assert "teachers'" not in tokens and "teachers" in tokens and "i'm" in tokens
    assert tokens[-4:] == ["that", "it", "isn't", "!"]
    # 140 whitespace-separated pieces, less two runs of dots, plus the final "!".
    assert len(tokens) == 139


@pytest.mark.slow
def test_real_data_end_to_end(tmp_path):
    with tarfile.open(real_data("imdb", "aclImdb_labeled.tar.gz"), "r:gz") as tar:
        tar.extractall(tmp_path, filter="data")
    dm = IMDBDataModule(root=str(tmp_path), val_size=2500)
    dm.setup()
    train, val, test = (dm.splits[k] for k in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (22500, 2500, 25000)
    assert test.labels.sum() == 12500
    assert train.labels.sum() + val.labels.sum() == 12500
    assert dm.model_kwargs == {"num_classes": 2, "vocab_size": 20000}


# --------------------------------------------------------------- through the framework


def imdb_cfg(root, out, *overrides, experiment="imdb"):
    return compose_train(
        f"experiment={experiment}", f"data.root={root}", *overrides, output_dir=out
    )


SMALL = (
    "data.batch_size=4",
    "data.eval_batch_size=4",
    "data.val_size=8",
    "data.min_freq=1",
    "model.hidden_size=8",
    "task.embedding_dim=8",
)  # the recipes' sizes are for real runs
ONE_EPOCH = (
    "trainer=cpu",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=3",
    "trainer.num_sanity_val_steps=0",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
)


def test_fast_dev_run_of_the_imdb_recipe(tiny_imdb, tmp_path):
    from seqmodels.train import train

    metrics = train(imdb_cfg(tiny_imdb, tmp_path / "run", "trainer=debug", *SMALL))
    assert {"test/acc", "test/loss"} <= metrics.keys()


@pytest.fixture(scope="module")
def imdb_checkpoint(tmp_path_factory):
    """A checkpoint from one short epoch on a tiny folder, the folder then removed."""
    import shutil

    from seqmodels.train import train

    tmp = tmp_path_factory.mktemp("imdb_ckpt")
    root = tmp / "imdb"
    write_tiny_imdb(root / "aclImdb")
    calls = []
    real = IMDBDataModule.log_examples
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(
            IMDBDataModule,
            "log_examples",
            lambda self, *a, **kw: calls.append(a) or real(self, *a, **kw),
        )
        train(imdb_cfg(root, tmp / "run", *ONE_EPOCH, *SMALL, "data.max_len=6"))
    # The classifier hands the tracked reviews and its probabilities to the datamodule.
    ((writer, (x, y, lengths), probs),) = calls
    assert hasattr(writer, "add_text") and x.shape[0] == lengths.shape[0] == probs.shape[0]
    torch.testing.assert_close(probs.sum(-1), torch.ones(len(y)))
    shutil.rmtree(root)  # predict must not need the data folder
    return tmp / "run" / "checkpoints" / "last.ckpt"


def predict_cfg(ckpt, **request):
    return {"ckpt_path": str(ckpt), "text": None, "file": None, "image": None, **request}


def test_predict_from_checkpoint_without_the_data_folder(imdb_checkpoint, tmp_path):
    from seqmodels.predict import predict

    out = io.StringIO()
    ((name, label, p),) = predict(predict_cfg(imdb_checkpoint, text="A great film!"), out=out)
    assert label in ("negative", "positive") and 0.5 <= p <= 1.0
    assert out.getvalue().split() == [label, f"{p:.3f}", "text:", "A", "great", "film!"]
    f = tmp_path / "reviews.txt"
    f.write_text("awful, boring film\nwonderful acting and a great story\n")
    results = predict(predict_cfg(imdb_checkpoint, file=str(f)), out=io.StringIO())
    assert [r[0].split(":")[0] for r in results] == ["line 1", "line 2"]
    # Probabilities are the model's softmax on the same encoding.
    from seqmodels.checkpoint import load_run

    _, module, dm = load_run(imdb_checkpoint)
    ids = dm.encode("awful, boring film")
    with torch.no_grad():
        probs = module(ids[None], torch.tensor([len(ids)])).softmax(-1)[0]
    assert results[0][2] == pytest.approx(float(probs.max()), abs=1e-6)
    assert results[0][1] == dm.class_names[int(probs.argmax())]


def test_predict_bad_input_through_the_checkpoint(imdb_checkpoint):
    from seqmodels.predict import predict

    with pytest.raises(UserError, match="input 1 has no words"):
        predict(predict_cfg(imdb_checkpoint, text="   "), out=io.StringIO())
    with pytest.raises(UserError, match="reads text"):
        predict(predict_cfg(imdb_checkpoint, image="digit.png"), out=io.StringIO())


def test_predict_refuses_a_language_model_checkpoint(tmp_path):
    from seqmodels.predict import predict
    from seqmodels.train import train

    text = tmp_path / "text.txt"
    text.write_text("to be or not to be, that is the question.\n" * 40)
    train(
        compose_train(
            "task=chargen",
            f"data.path={text}",
            "data.batch_size=2",
            "data.seq_len=8",
            "model.hidden_size=8",
            "task.embedding_dim=4",
            "logger=none",
            *ONE_EPOCH,
            "trainer.limit_val_batches=1",
            "test=false",
            output_dir=tmp_path / "lm",
        )
    )
    ckpt = tmp_path / "lm" / "checkpoints" / "last.ckpt"
    with pytest.raises(UserError, match="does not classify inputs.*seqmodels-sample"):
        predict(predict_cfg(ckpt, text="hello"), out=io.StringIO())


def test_predict_command_line(imdb_checkpoint, monkeypatch, capsys, tmp_path):
    import sys

    from seqmodels import cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        sys, "argv", ["seqmodels-predict", f"ckpt_path={imdb_checkpoint}", "text=a great film"]
    )
    cli.predict()
    label, p, *name = capsys.readouterr().out.split()
    assert label in ("negative", "positive") and 0.5 <= float(p) <= 1.0
    assert name == ["text:", "a", "great", "film"]
    monkeypatch.setattr(
        sys, "argv", ["seqmodels-predict", f"ckpt_path={imdb_checkpoint}", "text=..."]
    )
    with pytest.raises(SystemExit) as info:
        cli.predict()
    assert info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: input 1 has no words") and "\n" not in err


def test_under_ddp_each_process_reads_its_own_reviews(tiny_imdb):
    from types import SimpleNamespace

    dm = dm_for(tiny_imdb, val_size=5)
    dm.setup()
    seen = {"train": [], "val": []}
    for rank in range(2):
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=2)
        for split, loader in (("train", dm.train_dataloader()), ("val", dm.val_dataloader())):
            for batch in loader.batch_sampler:
                seen[split] += batch
    assert len(seen["train"]) == len(set(seen["train"])) == 18  # 19 reviews: 9 each, disjoint
    assert sorted(seen["val"]) == list(range(5))  # 5 reviews, 2 processes: each once
