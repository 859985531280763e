"""seqmodels.nn.generation on a plain PyTorch model (no task module): the steppers match the
layer's forward, temperature -> 0 is greedy decoding, the samples follow softmax(logits / T)
(with top-k), a seed repeats a stream, and bad arguments raise at the call."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import seqmodels.nn
from seqmodels.errors import UserError
from seqmodels.nn import generate
from seqmodels.nn.generation import CellStepper, FoldedLSTMStepper, make_stepper

V = 13


class CharModel(nn.Module):
    """What generate() needs: embedding, a unidirectional seqmodels.nn encoder, head."""

    def __init__(self, kind: str, layers: int, hidden: int, **kw) -> None:
        super().__init__()
        self.embedding = nn.Embedding(V, 8)
        self.encoder = getattr(seqmodels.nn, kind)(8, hidden, num_layers=layers, **kw)
        self.head = nn.Linear(hidden, V)

    def forward(self, x):
        output, state = self.encoder(self.embedding(x))
        return self.head(output), state


def lm(kind="LSTM", layers=2, hidden=24, seed=0, **kw):
    torch.manual_seed(seed)
    return CharModel(kind, layers, hidden, **kw)


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
