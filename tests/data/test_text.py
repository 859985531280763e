"""CharTextDataModule: stream batching, vocabulary, split, bad files, Tiny Shakespeare."""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import pytest
import torch
from support import real_data

from seqmodels.data import text as text_mod
from seqmodels.data.text import CharTextDataModule, StreamBatches, read_text
from seqmodels.errors import UserError

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n" * 3


def write(tmp_path, content, name="input.txt"):
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return p


def test_stream_batches_keep_text_order_across_batch_boundaries():
    ids = torch.arange(103)
    ds = StreamBatches(ids, batch_size=4, seq_len=7)
    n = 102 // 4  # characters per stream
    loader = torch.utils.data.DataLoader(ds, batch_size=None, shuffle=False)
    batches = list(loader)
    assert len(batches) == len(ds) == -(-n // 7)
    assert all(x.shape == (4, 7) for x, _ in batches[:-1])
    assert batches[-1][0].shape == (4, n - 7 * (len(ds) - 1))  # shorter last batch, no text lost
    x = torch.cat([b[0] for b in batches], dim=1)
    y = torch.cat([b[1] for b in batches], dim=1)
    for b in range(4):
        # Row b of the concatenated batches is one contiguous stretch of the text...
        assert torch.equal(x[b], ids[b * n : (b + 1) * n])
        # ...and its targets are the next characters, across batch boundaries too.
        assert torch.equal(y[b], ids[b * n + 1 : (b + 1) * n + 1])
    # Batch i + 1 of stream b starts right where batch i ended.
    for (x0, _), (x1, _) in zip(batches, batches[1:], strict=False):
        assert torch.equal(x1[:, 0], x0[:, -1] + 1)


def test_stream_batches_refuse_too_many_streams():
    with pytest.raises(UserError, match="too short for 8 streams"):
        StreamBatches(torch.arange(5), batch_size=8, seq_len=4)


def test_datamodule_vocab_split_and_batches(tmp_path):
    path = write(tmp_path, TEXT)
    dm = CharTextDataModule(
        path=str(path), batch_size=3, seq_len=5, val_fraction=0.1, test_fraction=0.1
    )
    dm.prepare_data()
    dm.setup()
    dm.setup()  # idempotent
    assert dm.chars == "".join(sorted(set(TEXT)))
    assert dm.model_kwargs == {"vocab_size": len(set(TEXT))}
    val_at, test_at = int(len(TEXT) * 0.8), int(len(TEXT) * 0.9)
    n_train = (val_at - 1) // 3
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (3, 5) and x.dtype == torch.long
    assert dm.decode(x[0]) == TEXT[:5] and dm.decode(y[0]) == TEXT[1:6]
    assert dm.decode(x[1]) == TEXT[n_train : n_train + 5]
    # Validation, then test, follow the training text: held out by position.
    xv, _ = next(iter(dm.val_dataloader()))
    assert dm.decode(xv[0]) == TEXT[val_at : val_at + 5]
    xt, _ = next(iter(dm.test_dataloader()))
    assert dm.decode(xt[0]) == TEXT[test_at : test_at + 5]
    assert sum(b[0].numel() for b in dm.train_dataloader()) == 3 * n_train


def test_split_fractions_are_checked(tmp_path):
    with pytest.raises(UserError, match="data.test_fraction=0 must be between 0 and 1"):
        CharTextDataModule(path="x.txt", test_fraction=0)
    with pytest.raises(UserError, match="leave no training text"):
        CharTextDataModule(path="x.txt", val_fraction=0.5, test_fraction=0.5)


def test_each_ddp_process_reads_its_own_contiguous_share(tmp_path):
    """Rank r's streams cover the r-th share of each split, in order; all ranks run alike."""
    path = write(tmp_path, TEXT)
    dm = CharTextDataModule(
        path=str(path),
        batch_size=2,
        seq_len=4,
        val_batch_size=1,
        val_fraction=0.1,
        test_fraction=0.1,
    )
    dm.setup()  # as train.py does, before the trainer exists
    whole = [dm.decode(x[0]) for x, _ in dm.train_dataloader()]
    split, end = int(len(TEXT) * 0.8), int(len(TEXT) * 0.9)
    shares = []
    for rank in range(2):
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=2)
        dm.setup("fit")  # Lightning's call in each process: nothing to redo
        n = (split - 1) // 2
        share = TEXT[rank * n : rank * n + n + 1]
        per_stream = (len(share) - 1) // 2
        x_rows = ["".join(dm.decode(x[b]) for x, _ in dm.train_dataloader()) for b in range(2)]
        y_last = dm.decode(list(dm.train_dataloader())[-1][1][1])[-1]
        assert x_rows == [share[:per_stream], share[per_stream : 2 * per_stream]]
        assert y_last == share[2 * per_stream]  # targets run one character ahead
        shares.append((len(dm.train_dataloader()), len(dm.val_dataloader())))
        xv, _ = next(iter(dm.val_dataloader()))
        vn = (end - split - 1) // 2
        assert dm.decode(xv[0]) == TEXT[split + rank * vn :][:4]
    assert shares[0] == shares[1]  # every process runs the same number of batches
    assert len(whole) > shares[0][0]


def test_vocabulary_survives_a_checkpoint_without_the_file(tmp_path):
    dm = CharTextDataModule(path=str(write(tmp_path, TEXT)))
    dm.setup("fit")
    state = dm.state_dict()
    fresh = CharTextDataModule(path=str(tmp_path / "gone.txt"))
    fresh.load_state_dict(state)
    assert fresh.model_kwargs == dm.model_kwargs
    ids = fresh.encode("Speak, speak.")
    assert torch.equal(ids, dm.encode("Speak, speak.")) and fresh.decode(ids) == "Speak, speak."


def test_encode_lists_characters_outside_the_vocabulary(tmp_path):
    dm = CharTextDataModule(path=str(write(tmp_path, TEXT)))
    dm.setup("fit")
    with pytest.raises(UserError, match=r"'QZQ Speak' has 2 character\(s\) outside .*'Q' 'Z'"):
        dm.encode("QZQ Speak")


def test_binary_file_is_refused(tmp_path):
    dm = CharTextDataModule(path=str(write(tmp_path, TEXT.encode() + b"\x00\x01\x02")))
    with pytest.raises(UserError, match=r"is a binary file \(a NUL byte at offset \d+\), not text"):
        dm.setup()


def test_empty_file_is_one_clear_error(tmp_path):
    dm = CharTextDataModule(path=str(write(tmp_path, b"")))
    with pytest.raises(UserError, match=r"input.txt is empty: point data.path="):
        dm.setup("fit")


def test_missing_file_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="text file not found: .*nope.txt"):
        CharTextDataModule(path=str(tmp_path / "nope.txt")).setup("fit")


def test_too_short_text_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="has only 5 characters: too short"):
        CharTextDataModule(path=str(write(tmp_path, "abcde"))).setup("fit")


def test_invalid_utf8_is_replaced_with_one_warning(tmp_path):
    raw = TEXT.encode() + b"\xff ok \xc3 \xef\xbf\xbd"  # 2 bad sequences + a real U+FFFD
    path = write(tmp_path, raw)
    with pytest.warns(
        UserWarning,
        match=r"2 invalid UTF-8 sequence\(s\), the first at byte offset " + str(len(TEXT.encode())),
    ):
        text = read_text(path)
    assert text.count("\ufffd") == 3 and text.endswith(" ok \ufffd \ufffd")
    dm = CharTextDataModule(path=str(path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dm.setup("fit")
        dm.setup("fit")
    assert len([w for w in caught if "invalid UTF-8" in str(w.message)]) == 1  # warned once
    assert "\ufffd" in dm.chars


def test_invalid_utf8_strict_names_the_byte_offset(tmp_path):
    path = write(tmp_path, b"good text\n\x80bad")
    dm = CharTextDataModule(path=str(path), encoding_errors="strict")
    with pytest.raises(UserError, match=r"not valid UTF-8: byte 0x80 at offset 10 "):
        dm.setup("fit")


def test_unknown_encoding_policy(tmp_path):
    with pytest.raises(UserError, match="'ignore' is not a policy"):
        read_text(write(tmp_path, TEXT), "ignore")


def test_offline_download_names_the_override(tmp_path, monkeypatch):
    # A closed port on localhost: fails at once, with or without internet.
    monkeypatch.setattr(text_mod, "TINY_SHAKESPEARE_URL", "http://127.0.0.1:9/input.txt")
    dm = CharTextDataModule(root=str(tmp_path))
    with pytest.raises(UserError, match="data.path="):
        dm.prepare_data()
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_tiny_shakespeare_local_copy_is_verified_and_used():
    # root= a folder that already holds input.txt: download() checks the md5 and
    # returns at once, no network.
    folder = real_data("tinyshakespeare", "input.txt").parent
    dm = CharTextDataModule(root=str(folder), batch_size=32, seq_len=100)
    dm.prepare_data()
    dm.setup()
    assert dm.vocab_size == 65 and dm.chars[:2] == "\n "
    x, y = next(iter(dm.train_dataloader()))
    assert dm.decode(x[0, :14]) == "First Citizen:"
    assert [len(dm.splits[k]) for k in ("train", "val", "test")] == [1003854, 55770, 55770]
