"""Forecaster: patching, the head's inputs, de-scaled metrics against numpy, the baselines,
the gradient-through-time view."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqmodels.data.forecast import ForecastBatch
from seqmodels.errors import UserError
from seqmodels.tasks.forecaster import Forecaster, ForecastErrors

ENCODER = {"_target_": "seqmodels.nn.GRU", "hidden_size": 8}
SCALE = 100.0


def forecaster(**kwargs) -> Forecaster:
    torch.manual_seed(0)
    options = {
        "input_size": 3,
        "known_size": 2,
        "window": 12,
        "horizon": 4,
        "target_scale": SCALE,
        "patch": 4,
        "head_hidden": 16,
        **kwargs,
    }
    return Forecaster(ENCODER, **options).eval()


def random_batch(n=5, window=12, horizon=4) -> ForecastBatch:
    g = torch.Generator().manual_seed(1)
    target = 1000 + 100 * torch.rand(n, horizon, generator=g)
    return ForecastBatch(
        torch.randn(n, window, 3, generator=g),
        torch.randn(n, horizon, 2, generator=g),
        target,
        target + 50 * torch.randn(n, horizon, generator=g),
        target + 80 * torch.randn(n, horizon, generator=g),
    )


def test_the_encoder_reads_the_window_in_patches_of_consecutive_rows():
    model = forecaster()
    seen = {}
    model.encoder.register_forward_hook(lambda m, args, out: seen.update(x=args[0]))
    batch = random_batch()
    model(batch.past, batch.known)
    assert seen["x"].shape == (5, 3, 12)  # 12 rows as 3 steps of 4 rows x 3 features
    torch.testing.assert_close(seen["x"][:, 1, :3], batch.past[:, 4])  # step 1 starts at row 4
    torch.testing.assert_close(seen["x"][:, 1, 9:], batch.past[:, 7])


def test_the_head_sees_every_known_input_and_the_final_state():
    model = forecaster()
    batch = random_batch()
    out = model(batch.past, batch.known)
    assert out.shape == (5, 4)
    changed = batch.known.clone()
    changed[:, 3, 1] += 1.0  # the last horizon step's second known input
    assert not torch.allclose(model(batch.past, changed), out)
    past = batch.past.clone()
    past[:, 0] += 1.0  # the window's first row reaches the forecast through the encoder
    assert not torch.allclose(model(past, batch.known), out)


def test_a_horizon_encoder_gives_every_step_one_shared_head():
    layer = {"_target_": "seqmodels.nn.GRU", "hidden_size": 6, "bidirectional": True}
    model = forecaster(horizon_encoder=layer)
    assert model.horizon_encoder.input_size == 2 + 8  # known inputs beside the encoder's state
    assert model.head[-1].out_features == 1  # one output, shared by the four steps
    batch = random_batch()
    out = model(batch.past, batch.known)
    assert out.shape == (5, 4)
    changed = batch.known.clone()
    changed[:, 3, 1] += 1.0  # the last step's input reaches the first step (bidirectional)
    moved = model(batch.past, changed)
    assert not torch.allclose(moved[:, 0], out[:, 0])
    past = batch.past.clone()
    past[:, 0] += 1.0
    assert not torch.allclose(model(past, batch.known), out)
    # the same step inputs give the same output at every position of the horizon
    steps = torch.cat([batch.known, torch.zeros(5, 4, 8)], dim=-1)
    per_step = model.head(model.horizon_encoder(steps)[0]).squeeze(-1)
    assert per_step.shape == (5, 4)


def test_members_forecast_their_mean_and_each_learns_on_its_own_loss():
    model = forecaster(members=3)
    batch = random_batch()
    each = model.member_residuals(batch.past, batch.known)
    assert each.shape == (3, 5, 4)
    assert not torch.allclose(each[0], each[1])  # initialised apart
    torch.testing.assert_close(model(batch.past, batch.known), each.mean(0))
    # member 0 keeps a one-model forecaster's names: its weights load into one
    single = forecaster()
    names = set(single.state_dict())
    assert names <= set(model.state_dict())
    single.load_state_dict({k: v for k, v in model.state_dict().items() if k in names})
    torch.testing.assert_close(single(batch.past, batch.known), each[0])
    # the training loss is the mean of the members' own losses
    model.train()
    loss = model.training_step(batch, 0)
    target = model.residual(batch)
    each = model.member_residuals(batch.past, batch.known)
    expected = torch.stack([(e - target).abs().mean() for e in each]).mean()
    torch.testing.assert_close(loss, expected)
    with pytest.raises(UserError, match="task.members=0 must be a positive integer"):
        forecaster(members=0)


def test_a_patch_that_does_not_divide_the_window_is_one_line():
    with pytest.raises(UserError, match="task.patch=5 must divide data.window=12"):
        forecaster(patch=5)


@pytest.mark.parametrize(
    "encoder",
    [
        {"_target_": "seqmodels.nn.LSTM", "hidden_size": 8, "num_layers": 2, "bidirectional": True},
        {"_target_": "seqmodels.nn.RNN", "hidden_size": 8},
    ],
)
def test_any_encoder_works(encoder):
    model = Forecaster(
        encoder, input_size=3, known_size=2, window=12, horizon=4, target_scale=SCALE
    )
    batch = random_batch()
    assert model(batch.past, batch.known).shape == (5, 4)


def test_forecasts_are_seasonal_naive_plus_the_descaled_residual():
    model = forecaster()
    batch = random_batch()
    residual = model(batch.past, batch.known)
    torch.testing.assert_close(model.forecast(batch), batch.snaive + residual * SCALE)
    torch.testing.assert_close(model.residual(batch), (batch.target - batch.snaive) / SCALE)


def test_errors_equal_numpy_on_a_hand_example():
    target = torch.tensor([[100.0, 200.0, 0.0], [50.0, 400.0, 10.0]])
    forecast = torch.tensor([[110.0, 190.0, 5.0], [50.0, 300.0, 12.0]])
    metric = ForecastErrors(horizon=3)
    metric.update(forecast[:1], target[:1])  # two batches: the sums carry over
    metric.update(forecast[1:], target[1:])
    got = metric.compute()
    e = (forecast - target).numpy().astype(float)
    y = target.numpy().astype(float)
    assert float(got["mae"]) == pytest.approx(np.abs(e).mean())  # (10+10+5+0+100+2)/6
    assert float(got["rmse"]) == pytest.approx(np.sqrt((e**2).mean()))
    nonzero = y != 0  # MAPE leaves out the zero target
    assert float(got["mape"]) == pytest.approx(100 * np.mean(np.abs(e[nonzero] / y[nonzero])))
    np.testing.assert_allclose(got["mae_by_step"].numpy(), np.abs(e).mean(axis=0))
    assert float(got["mae"]) == pytest.approx(127 / 6)


def test_evaluation_metrics_and_baselines_equal_numpy(monkeypatch):
    model = forecaster()
    logged = {}
    monkeypatch.setattr(model, "log", lambda name, value, **kw: logged.update({name: float(value)}))
    batch = random_batch(n=7)
    for part in (slice(0, 3), slice(3, 7)):
        model._evaluate(ForecastBatch(*(t[part] for t in batch)), "val")
    model._log_errors("val")
    y = batch.target.double().numpy()
    forecast = model.forecast(batch).detach().double().numpy()
    mae = np.abs(forecast - y).mean()
    snaive_mae = np.abs(batch.snaive.double().numpy() - y).mean()
    assert logged["val/mae"] == pytest.approx(mae, rel=1e-5)
    assert logged["val/rmse"] == pytest.approx(np.sqrt(((forecast - y) ** 2).mean()), rel=1e-5)
    assert logged["val/mape"] == pytest.approx(100 * np.mean(np.abs(forecast - y) / y), rel=1e-5)
    assert logged["val/snaive_mae"] == pytest.approx(snaive_mae, rel=1e-6)
    assert logged["val/naive_mae"] == pytest.approx(
        np.abs(batch.naive.numpy() - y).mean(), rel=1e-6
    )
    assert logged["val/rel_mae"] == pytest.approx(mae / snaive_mae, rel=1e-5)
    assert model._errors("val", "model").count.sum() == 0  # reset: the next epoch starts at zero


def test_gradient_flow_has_one_row_over_the_encoder_steps():
    model = forecaster().train()
    norms = model.gradient_flow(random_batch())
    assert norms.shape == (1, 3) and torch.isfinite(norms).all() and (norms > 0).all()


def test_the_dashboard_opens_on_loss_and_mae_beside_the_baselines():
    charts = forecaster().charts()
    assert list(charts)[:1] == ["train vs validation"]
    assert charts["train vs validation"] == {
        "loss": ["train/loss", "val/loss"],
        "MAE (data units)": ["val/mae", "val/snaive_mae", "val/naive_mae"],
    }
    assert "optimisation" in charts
