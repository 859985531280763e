"""SequenceClassifier: pooling respects lengths, input dropout is locked across time."""

import pytest
import torch

from seqmodels.errors import UserError
from seqmodels.tasks import SequenceClassifier

ENCODER = {"_target_": "seqmodels.nn.GRU", "hidden_size": 8, "bidirectional": True}


def classifier(pooling: str, **kwargs) -> SequenceClassifier:
    torch.manual_seed(0)
    return SequenceClassifier(
        ENCODER, num_classes=3, vocab_size=20, embedding_dim=6, pooling=pooling, **kwargs
    ).eval()


@pytest.mark.parametrize("pooling", ["last", "mean", "max", "meanmax"])
def test_pooling_ignores_padding(pooling):
    """Each padded sequence scores as it does alone, whatever fills its padding."""
    model = classifier(pooling)
    lengths = torch.tensor([5, 2, 7])
    x = torch.randint(1, 20, (3, 7))
    alone = torch.cat([model(x[i : i + 1, : int(n)]) for i, n in enumerate(lengths)])
    for fill in (0, 13):  # PAD, and a real token that must not leak in either
        padded = x.clone()
        for i, n in enumerate(lengths):
            padded[i, n:] = fill
        torch.testing.assert_close(model(padded, lengths), alone, atol=1e-6, rtol=1e-5)


def test_pooling_without_lengths_uses_every_step():
    model = classifier("mean")
    x = torch.randint(1, 20, (2, 6))
    output, _ = model.encoder(model.input_adapter(x))
    torch.testing.assert_close(model(x), model.head(output.mean(dim=1)))


def test_input_dropout_drops_whole_channels_for_every_step():
    model = classifier("mean", input_dropout=0.5).train()
    seen = {}
    model.encoder.register_forward_hook(lambda m, args, output: seen.update(x=args[0]))
    x = torch.randint(1, 20, (4, 9))
    model(x)
    dropped = seen["x"] == 0  # (B, T, C): a dropped channel is zero at every step
    assert dropped.any()
    assert torch.equal(dropped, dropped[:, :1, :].expand_as(dropped))
    model.eval()
    model(x)
    assert not (seen["x"] == 0).any()  # evaluation sees every channel


@pytest.mark.parametrize("key, value", [("dropout", 1.0), ("input_dropout", -0.1)])
def test_bad_dropout_is_a_clear_error(key, value):
    with pytest.raises(UserError, match=rf"task\.{key} must be in \[0, 1\); got {value}"):
        classifier("last", **{key: value})


def test_embedding_init_range_draws_a_small_uniform_embedding():
    torch.manual_seed(0)
    model = SequenceClassifier(
        ENCODER, num_classes=2, vocab_size=500, embedding_dim=4, embedding_init_range=0.05
    )
    weight = model.input_adapter.weight
    assert torch.equal(weight[0], torch.zeros(4))  # PAD
    assert weight[1:].abs().max() <= 0.05 and weight[1:].std() > 0.02  # U(-0.05, 0.05): std 0.029
    default = SequenceClassifier(ENCODER, num_classes=2, vocab_size=500, embedding_dim=4)
    assert default.input_adapter.weight[1:].std() > 0.5  # torch's N(0, 1)


@pytest.mark.parametrize("task", ["parity", "chargen"])
def test_grad_norm_is_written_at_the_step_it_was_computed(task, small_data, tmp_path, monkeypatch):
    """train/grad_norm at logged step s must be the norm computed at step s."""
    from support import compose_train, small_data_overrides
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from seqmodels.tasks import base
    from seqmodels.train import train

    computed_at = []

    def norm_of_this_step(parameters):
        trainer = module_of[0].trainer
        computed_at.append(trainer.global_step)
        return torch.tensor(float(trainer.global_step))  # the value says when it was computed

    module_of = []
    real_init = base.TaskModule.on_fit_start

    def remember(self):
        module_of.append(self)
        return real_init(self)

    monkeypatch.setattr(base, "grad_norm", norm_of_this_step)
    monkeypatch.setattr(base.TaskModule, "on_fit_start", remember)
    train(
        compose_train(
            f"task={task}",
            *small_data_overrides(task, small_data),
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=12",
            "trainer.log_every_n_steps=5",
            "trainer.limit_val_batches=1",
            "test=false",
            "trainer.enable_progress_bar=false",
            output_dir=tmp_path,
        )
    )
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    logged = [(e.step, e.value) for e in events.Scalars("train/grad_norm")]
    assert logged == [(4, 4.0), (9, 9.0)]  # value = the step it was computed at
    assert computed_at == list(range(12))  # every step: divergence is checked on each


def test_encoder_init_from_config_is_applied_to_the_built_encoder():
    init = {"_target_": "seqmodels.nn.init.forget_gate_bias_", "value": 2.5}
    model = SequenceClassifier(
        {"_target_": "seqmodels.nn.LSTM", "hidden_size": 8},
        num_classes=3,
        input_size=1,
        embedding_dim=None,
        encoder_init=init,
    )
    forget = model.encoder.cells[0].i2h.bias.detach()[8:16]
    assert torch.equal(forget, torch.full((8,), 2.5))
    assert model.hparams["encoder_init"] == init  # a checkpoint rebuilds it alike
