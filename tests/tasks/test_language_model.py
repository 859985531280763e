"""LanguageModel (truncated BPTT state carrying) and generation.py (streaming generation,
sampling math), on small LanguageModels."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn import functional as F

from seqmodels.data.text import CharTextDataModule, StreamBatches
from seqmodels.errors import UserError
from seqmodels.tasks.generation import (
    CellStepper,
    FoldedLSTMStepper,
    generate,
    make_stepper,
    sample_text,
)
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


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_steppers_match_the_layer_forward_with_a_primed_state(kind):
    model = lm(kind, layers=3).eval()
    x = torch.randint(0, V, (1, 30), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref, _ = model(x)
        _, primed = model.encoder(model.embedding(x[:, :12]))
    steppers = [CellStepper(model, primed, 1.0)]
    if kind == "LSTM":
        steppers.append(FoldedLSTMStepper(model, primed, 1.0))
        assert isinstance(make_stepper(model), FoldedLSTMStepper)
    for stepper in steppers:
        got = torch.stack([stepper.logits(int(t), stepper.head_bias) for t in x[0, 12:]])
        torch.testing.assert_close(got, ref[0, 12:], atol=1e-5, rtol=0)


def greedy_by_rerunning(model, prime, length):
    """The seeds' way: re-run the whole prefix for each new token (an independent reference)."""
    ids = list(prime)
    with torch.no_grad():
        for _ in range(length):
            logits, _ = model(torch.tensor([ids]))
            ids.append(int(logits[0, -1].argmax()))
    return ids[len(prime) :]


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_temperature_to_zero_is_greedy_decoding(kind):
    model = lm(kind, hidden=32).eval()
    with torch.no_grad():  # a decisive model, so that greedy has no near-ties
        model.head.weight.mul_(20)
    prime = [3, 1, 4, 1, 5]
    want = greedy_by_rerunning(model, prime, 40)
    assert list(generate(model, prime, 40, temperature=1e-6, seed=0)) == want
    assert list(generate(model, prime, 40, temperature=1e-6, seed=123)) == want
    # top_k=1 keeps only the best token: greedy at any temperature.
    assert list(generate(model, prime, 40, temperature=1.5, top_k=1, seed=7)) == want


def biased_model(bias):
    """A model whose next-token distribution is softmax(bias), whatever the context."""
    model = lm(layers=1, hidden=8)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(bias)
    return model.eval()


@pytest.mark.parametrize("temperature,top_k", [(1.0, 0), (0.5, 0), (1.0, 3)])
def test_samples_follow_softmax_of_logits_over_temperature(temperature, top_k):
    bias = torch.linspace(2.0, -2.0, V)
    model = biased_model(bias)
    n = 6000
    counts = torch.bincount(
        torch.tensor(list(generate(model, [0], n, temperature, top_k, seed=0))), minlength=V
    ).float()
    logits = bias / temperature
    if top_k:
        logits[top_k:] = float("-inf")  # bias is sorted: the top k are the first k
    want = torch.softmax(logits, -1)
    torch.testing.assert_close(counts / n, want, atol=0.02, rtol=0)
    if top_k:
        assert counts[top_k:].sum() == 0


def test_seed_gives_the_same_stream_and_another_seed_another():
    model = lm().eval()
    a = list(generate(model, [1, 2], 300, temperature=1.0, seed=5))
    assert a == list(generate(model, [1, 2], 300, temperature=1.0, seed=5))
    assert a != list(generate(model, [1, 2], 300, temperature=1.0, seed=6))


def test_generation_leaves_no_autograd_mode_and_keeps_training_mode():
    model = lm(dropout=0.3)  # training mode, with inter-layer dropout
    model.train()
    stream = generate(model, [1, 2, 3, 4], 5, seed=0)
    next(stream)
    assert torch.is_grad_enabled() and model.training
    first = list(generate(model, [1, 2, 3, 4], 5, seed=0))
    assert first == list(generate(model.eval(), [1, 2, 3, 4], 5, seed=0))  # dropout was off


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"temperature": 0.0}, r"temperature=0.0 must be > 0"),
        ({"temperature": -1.0}, r"temperature=-1.0 must be > 0"),
        ({"temperature": float("inf")}, r"temperature=inf must be > 0"),
        ({"length": -1}, r"length=-1 must be an integer >= 0"),
        ({"top_k": -2}, r"top_k=-2 must be an integer >= 0"),
    ],
)
def test_bad_sampling_arguments_raise_at_the_call(kwargs, message):
    args = {"length": 10, "temperature": 1.0, "top_k": 0} | kwargs
    with pytest.raises(UserError, match=message):
        generate(lm(), [1], args["length"], args["temperature"], args["top_k"])  # no next()


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
