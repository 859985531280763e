"""LanguageModel: truncated BPTT state carrying, its validation units, sampling text from it
with its datamodule (the sampling math itself: tests/nn/test_generation.py)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from seqmodels.data.text import CharTextDataModule, StreamBatches
from seqmodels.errors import UserError
from seqmodels.nn import sample_text
from seqmodels.tasks.language_model import LanguageModel

V = 13


def lm(kind="LSTM", layers=2, hidden=24, seed=0, **kw):
    torch.manual_seed(seed)
    enc = {"_target_": f"seqmodels.nn.{kind}", "hidden_size": hidden, "num_layers": layers}
    enc.update(kw)
    return LanguageModel(enc, vocab_size=V, embedding_dim=8)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_carried_state_equals_one_pass_over_the_whole_text(kind):
    model = lm(kind)
    ids = torch.randint(0, V, (3 * 50 + 1,), generator=torch.Generator().manual_seed(1))
    batches = StreamBatches(ids, batch_size=3, seq_len=8)  # 7 batches, the last one shorter
    x_all, y_all = batches.x, batches.y
    model.log = lambda *args, **kwargs: None  # no trainer here
    with torch.no_grad():
        logits_all, _ = model(x_all)  # each stream in one pass from a zero state
    for epoch in range(2):
        model.on_train_epoch_start()  # the streams restart: so does the state
        for i in range(len(batches)):
            x, y = batches[i]
            loss = model.training_step((x, y), i)
            s = slice(i * 8, i * 8 + x.shape[1])
            want = F.cross_entropy(logits_all[:, s].reshape(-1, V), y_all[:, s].reshape(-1))
            assert loss.item() == pytest.approx(want.item(), abs=1e-5), (epoch, i)
            # Truncated BPTT: the carried state is cut from the graph.
            carried = model._state["train"]
            assert all(
                not t.requires_grad for t in (carried if isinstance(carried, tuple) else (carried,))
            )


def test_validation_carries_its_own_state_and_logs_nats_bits_ppl(tmp_path):
    model = lm()
    ids = torch.randint(0, V, (2 * 30 + 1,), generator=torch.Generator().manual_seed(2))
    batches = StreamBatches(ids, batch_size=2, seq_len=7)
    with torch.no_grad():
        logits, _ = model(batches.x)
    want = F.cross_entropy(logits.reshape(-1, V), batches.y.reshape(-1)).item()
    logged = {}
    model.log = lambda name, value, **kw: logged.__setitem__(name, float(value))
    model.on_validation_epoch_start()
    with torch.no_grad():
        for i in range(len(batches)):
            model.validation_step(batches[i], i)
    model._log_nats("val", model.val_loss)  # weighted by characters: equals the one-pass mean
    assert logged["val/loss"] == pytest.approx(want, abs=1e-5)
    assert logged["val/bpc"] == pytest.approx(want / math.log(2), abs=1e-5)
    assert logged["val/ppl"] == pytest.approx(math.exp(want), rel=1e-5)


def test_sample_text_checks_the_prime_against_the_vocabulary(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("to be or not to be, that is the question\n" * 4)
    dm = CharTextDataModule(path=str(path))
    dm.setup()
    torch.manual_seed(0)
    model = LanguageModel(
        {"_target_": "seqmodels.nn.LSTM", "hidden_size": 16},
        vocab_size=dm.vocab_size,
        embedding_dim=8,
    ).eval()
    with pytest.raises(
        UserError,
        match=r"'ROMEO: to' has 5 character\(s\) outside .*"
        r"':' 'E' 'M' 'O' 'R'",
    ):
        sample_text(model, dm, "ROMEO: to", 10)
    with pytest.raises(UserError, match="prime is empty"):
        sample_text(model, dm, "", 10)
    text = "".join(sample_text(model, dm, "to be", 50, temperature=0.8, seed=0))
    assert len(text) == 50 and set(text) <= set(dm.chars)
    assert "".join(sample_text(model, dm, "to be", 0)) == ""


def test_bidirectional_encoder_is_refused():
    with pytest.raises(UserError, match="set model.bidirectional=false"):
        lm(bidirectional=True)
