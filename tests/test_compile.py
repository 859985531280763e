"""`compile=true`: the task module's forward under torch.compile for a run.

Fast: the setting's wiring and its one-line mistakes. Slow (each compilation
takes tens of seconds on 2 cores): every task module compiled gives the eager
outputs and gradients to 1e-4, and a compiled run writes the same checkpoint keys
as an eager one. The parity tests need seqmodels.nn's layers to run under
torch.compile on every engine auto picks (seqmodels.nn's part of the work).
"""

from __future__ import annotations

import copy

import pytest
import torch
from support import compose_train
from torch.nn import functional as F

from seqmodels.tasks.classifier import SequenceClassifier
from seqmodels.tasks.forecaster import Forecaster
from seqmodels.tasks.language_model import LanguageModel
from seqmodels.train import build


def test_compile_true_compiles_the_forward_in_place(tmp_path):
    cfg = compose_train("compile={backend: eager}", "model.hidden_size=8", output_dir=tmp_path)
    _, module = build(cfg)
    assert module._compiled_call_impl is not None  # module(...) runs the compiled call
    keys = set(module.state_dict())
    _, eager_module = build(compose_train("model.hidden_size=8", output_dir=tmp_path))
    assert eager_module._compiled_call_impl is None and set(eager_module.state_dict()) == keys


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("compile=3", "compile=3 must be true, false or a dict"),
        (
            "compile={fullgraph: true, colour: red}",
            "compile={'fullgraph': True, 'colour': 'red'}: ",
        ),
    ],
)
def test_compile_mistakes_are_one_line(run_cli, tmp_path, value, message):
    result = run_cli("train", value, "trainer=debug")
    assert result.code == 1 and result.err.startswith("error: ") and message in result.err
    assert "Traceback" not in result.err and not (tmp_path / "outputs").exists()


# -- slow: compiled equals eager ------------------------------------------------------------


def encoder(kind: str, **kw):
    return {"_target_": f"seqmodels.nn.{kind}", "hidden_size": 8, **kw}


def classifier_tokens(kind: str):
    torch.manual_seed(0)
    m = SequenceClassifier(
        encoder(kind, num_layers=2, bidirectional=True),
        num_classes=3,
        vocab_size=20,
        embedding_dim=6,
        pooling="meanmax",
    )
    x = torch.randint(1, 20, (4, 9))
    lengths = torch.tensor([9, 4, 7, 1])
    y = torch.tensor([0, 1, 2, 1])
    return m, (lambda mod: F.cross_entropy(mod(x, lengths), y)), (lambda mod: mod(x, lengths))


def classifier_features(kind: str):
    torch.manual_seed(0)
    m = SequenceClassifier(encoder(kind), num_classes=10, input_size=5, embedding_dim=None)
    x, y = torch.randn(3, 12, 5), torch.tensor([1, 5, 9])
    return m, (lambda mod: F.cross_entropy(mod(x), y)), (lambda mod: mod(x))


def forecaster(kind: str):
    torch.manual_seed(0)
    m = Forecaster(
        encoder(kind),
        input_size=3,
        known_size=2,
        window=8,
        horizon=4,
        target_scale=2.0,
        patch=2,
        head_hidden=8,
    )
    past, known, target = torch.randn(5, 8, 3), torch.randn(5, 4, 2), torch.randn(5, 4)
    return m, (lambda mod: F.l1_loss(mod(past, known), target)), (lambda mod: mod(past, known))


def language_model(kind: str):
    torch.manual_seed(0)
    m = LanguageModel(encoder(kind, num_layers=2), vocab_size=11, embedding_dim=6)
    x, y = torch.randint(0, 11, (3, 10)), torch.randint(0, 11, (3, 10))

    def loss(mod):
        logits, state = mod(x)
        again, _ = mod(x, state)  # a carried state, as truncated BPTT passes it
        return F.cross_entropy(
            torch.cat([logits, again], 1).flatten(0, 1), torch.cat([y, y], 1).flatten()
        )

    return m, loss, (lambda mod: mod(x)[0])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("task", "kind"),
    [
        (classifier_tokens, "LSTM"),
        (classifier_tokens, "GRU"),
        (classifier_features, "RNN"),
        (forecaster, "GRU"),
        (language_model, "LSTM"),
    ],
    ids=["tokens-lstm", "tokens-gru", "features-rnn", "forecaster-gru", "language-model-lstm"],
)
def test_every_task_module_compiles_with_eager_numbers(task, kind):
    module, loss, outputs = task(kind)
    compiled = copy.deepcopy(module)
    compiled.compile()
    module.train(), compiled.train()  # dropout is 0: training mode, deterministic
    torch.testing.assert_close(outputs(compiled), outputs(module), atol=1e-4, rtol=1e-4)
    loss(module).backward()
    loss(compiled).backward()
    for (name, p), q in zip(module.named_parameters(), compiled.parameters(), strict=True):
        assert q.grad is not None, name
        torch.testing.assert_close(q.grad, p.grad, atol=1e-4, rtol=1e-4, msg=name)


@pytest.mark.slow
def test_a_compiled_run_trains_and_checkpoints_like_an_eager_one(run_cli, tmp_path):
    common = (
        "model.hidden_size=16",
        "trainer.max_epochs=1",
        "data.num_train=64",
        "data.num_val=16",
        "data.num_test=16",
        "logger=none",
        "seed=3",
    )
    eager = run_cli("train", *common, outputs=tmp_path / "eager")
    compiled = run_cli("train", *common, "compile=true", outputs=tmp_path / "compiled")
    assert eager.code == 0 and compiled.code == 0, compiled.err
    ckpts = [next((tmp_path / r).rglob("last.ckpt")) for r in ("eager", "compiled")]
    a, b = (torch.load(c, map_location="cpu", weights_only=False)["state_dict"] for c in ckpts)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], atol=1e-4, rtol=1e-4, msg=k)
