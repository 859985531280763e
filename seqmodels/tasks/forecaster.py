"""Forecaster: the next `horizon` values of a series from its recent past.

    past window (patched) -> recurrent encoder (seqmodels.nn) -> final top-layer state
    [state, known inputs of every horizon step] -> Linear -> ReLU -> Linear -> horizon
    or, with a horizon_encoder:
    per step [known inputs, state] -> layer over the horizon -> shared MLP -> 1 each

The encoder reads the `window` rows before the origin in steps of `patch`
rows (336 half-hours as 84 steps of 4): a quarter of the recurrent steps for
the same week of context. The head sees the encoder's summary and, flattened,
what is known in advance of each horizon step (calendar, holidays, lagged
targets, known covariates; seqmodels.data.forecast); with a `horizon_encoder`
(the vic_elec recipes) a layer reads those step by step and one MLP, shared by
every step, turns each of its outputs into that step's residual. `members`
models side by side make an ensemble whose forecast is their mean.

The model predicts the scaled residual from seasonal naive,
(y - y[t - season]) / std_train(y), trained with an L1 loss; the forecast is
y[t - season] + residual * std_train(y), back in the data's units.
Metrics are on those forecasts, in the data's units, over every target of
every origin: `mae`, `rmse`, `mape` (percent, over nonzero targets),
`rel_mae` (MAE over seasonal naive's MAE on the same origins). The two
baselines are measured on the same origins in the same pass: `snaive_*`
(the value `season` rows earlier) and `naive_*` (the last horizon repeated).

TensorBoard, each validation epoch: forecast against actual for the
datamodule's example weeks (`val/forecast_weeks`) and the MAE per horizon
step (`val/mae_by_step`), both beside seasonal naive.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor, nn
from torch.nn import functional as F
from torchmetrics import MeanMetric, Metric

from seqmodels.data import Forecasting, SeriesInputs, missing, provides
from seqmodels.data.forecast import ForecastBatch
from seqmodels.errors import UserError
from seqmodels.nn.gradflow import state_gradient_norms
from seqmodels.tasks.base import TaskModule
from seqmodels.tasks.encoder import build_encoder, encoder_output_size
from seqmodels.tasks.forecast_plots import (
    BLACK,
    MODEL,
    NAIVE,
    SNAIVE,
    line_chart,
    stack,
    with_gaps,
)
from seqmodels.tasks.inference import (
    EXAMPLE_BATCH,
    PredictInputs,
    Prediction,
    Program,
    given_keys,
)

FORECASTS = ("model", "snaive", "naive")  # the model, then the baselines it is compared with
EVAL_STAGES = ("val", "test")


class ForecastErrors(Metric):
    """Sums of one forecast's errors per horizon step, in the data's units (summed across
    processes under DDP, so every target counts once)."""

    full_state_update = False
    abs_error: Tensor  # (horizon,) each, added by add_state
    squared_error: Tensor
    abs_pct_error: Tensor
    count: Tensor
    nonzero: Tensor

    def __init__(self, horizon: int) -> None:
        super().__init__()
        for name in ("abs_error", "squared_error", "abs_pct_error", "count", "nonzero"):
            self.add_state(
                name, default=torch.zeros(horizon, dtype=torch.float64), dist_reduce_fx="sum"
            )

    def update(self, forecast: Tensor, target: Tensor) -> None:
        target = target.double()
        error = forecast.double() - target
        nonzero = target != 0
        self.abs_error += error.abs().sum(0)
        self.squared_error += error.square().sum(0)
        self.abs_pct_error += torch.where(nonzero, error.abs() / target.abs(), 0.0).sum(0)
        self.count += error.shape[0]
        self.nonzero += nonzero.sum(0)

    def compute(self) -> dict[str, Tensor]:
        n = self.count.sum()
        out = {
            "mae": self.abs_error.sum() / n,
            "rmse": (self.squared_error.sum() / n).sqrt(),
            "mae_by_step": self.abs_error / self.count,
        }
        if self.nonzero.sum() > 0:  # a percentage of zero is undefined: those targets are left out
            out["mape"] = 100 * self.abs_pct_error.sum() / self.nonzero.sum()
        return out


class Forecaster(TaskModule):
    r"""The next ``horizon`` values of a series from its recent past and what is known
    in advance.

    ``past window (patched) -> recurrent encoder -> final top-layer state``, then
    ``[state, known inputs of every horizon step] -> Linear -> ReLU -> Linear``. The
    network predicts the scaled residual from seasonal naive; the forecast is
    ``snaive + residual * target_scale``, in the data's units (see the module
    docstring). The task of ``task=forecast``.

    Args:
        encoder: a ``seqmodels.nn`` layer whose ``input_size`` is ``input_size *
            patch``, or its config as a dict with ``_target_`` (filled in).
        input_size: features F per past row (from the data).
        known_size: known features K per horizon step (from the data).
        window: rows read before each forecast origin (from the data).
        horizon: rows forecast after it (from the data).
        target_scale: the training standard deviation of the target (from the data).
        patch: rows per encoder step; must divide ``window``. Default: 4.
        head_hidden: units of the head's hidden layer. Default: 256.
        optimizer: the optimizer's config (AdamW, lr 3e-3, weight decay 1e-4 when
            ``None``); see ``seqmodels.tasks.optim``.
        scheduler: an LR scheduler's config, or ``None``.
        encoder_init: an init function's config applied to the encoder once built.
        members: how many models, each with its own initialisation, trained side by
            side on the same batches (each on its own loss); the forecast is their
            mean (an ensemble: the errors of differently initialised networks
            partly cancel). Default: 1.
        horizon_encoder: ``None`` (the default): the head is one MLP over the
            encoder's state and every horizon step's known inputs, flattened. A
            ``seqmodels.nn`` layer (or its config; ``input_size`` filled in) instead
            reads, per horizon step, its known inputs beside the encoder's state,
            and the head is one MLP shared by every step (MQ-RNN, Wen et al. 2017):
            what the known inputs do is learnt once for all steps, not per step.

    Shape:
        - past: :math:`(B, \text{window}, F)`; known: :math:`(B, \text{horizon}, K)`.
        - Output of ``forward``: :math:`(B, \text{horizon})` scaled residuals;
          ``forecast_from(past, known, snaive)`` with the seasonal naive forecast
          :math:`(B, \text{horizon})` gives the forecast in the data's units.

    Example::

        >>> import torch
        >>> from seqmodels.tasks.forecaster import Forecaster
        >>> model = Forecaster(
        ...     {"_target_": "seqmodels.nn.GRU", "hidden_size": 16},
        ...     input_size=3, known_size=2, window=8, horizon=4, target_scale=10.0,
        ...     patch=2, head_hidden=8,
        ... )
        >>> past, known, snaive = torch.randn(5, 8, 3), torch.randn(5, 4, 2), torch.randn(5, 4)
        >>> model.forecast_from(past, known, snaive).shape
        torch.Size([5, 4])
    """

    def __init__(
        self,
        encoder: nn.Module | Mapping[str, Any],
        input_size: int,
        known_size: int,
        window: int,
        horizon: int,
        target_scale: float,
        patch: int = 4,
        head_hidden: int = 256,
        optimizer: Mapping[str, Any] | None = None,
        scheduler: Mapping[str, Any] | None = None,
        encoder_init: Mapping[str, Any] | None = None,
        horizon_encoder: nn.Module | Mapping[str, Any] | None = None,
        members: int = 1,
    ) -> None:
        super().__init__()
        if patch < 1 or window % patch:
            raise UserError(
                f"task.patch={patch} must divide data.window={window}: the encoder "
                "reads the window in steps of task.patch rows"
            )
        if not target_scale > 0:
            raise UserError(f"target_scale={target_scale} must be positive")
        self.save_plain_hyperparameters(
            {"_target_": "torch.optim.AdamW", "lr": 3e-3, "weight_decay": 1e-4}
        )
        if members < 1:
            raise UserError(f"task.members={members} must be a positive integer")
        if members > 1 and any(isinstance(m, nn.Module) for m in (encoder, horizon_encoder)):
            raise UserError(
                f"task.members={members} builds each member afresh from the encoders' "
                "configs; pass configs (dicts with _target_), not built modules"
            )
        self.patch, self.target_scale = patch, float(target_scale)
        # member 0's modules keep the names of a one-model forecaster (its checkpoints load)
        self.encoder, self.horizon_encoder, self.head = self._member(
            encoder, horizon_encoder, input_size, known_size, horizon, head_hidden, encoder_init
        )
        self.more_members = nn.ModuleList()
        for _ in range(members - 1):
            more = self._member(
                encoder, horizon_encoder, input_size, known_size, horizon, head_hidden, encoder_init
            )
            self.more_members.append(
                nn.ModuleDict(dict(zip(("encoder", "horizon_encoder", "head"), more, strict=True)))
            )
        self.train_loss, self.val_loss, self.test_loss = MeanMetric(), MeanMetric(), MeanMetric()
        self.errors = nn.ModuleDict(
            {f"{stage}_{f}": ForecastErrors(horizon) for stage in EVAL_STAGES for f in FORECASTS}
        )

    # -- model ---------------------------------------------------------------
    def _member(
        self,
        encoder: nn.Module | Mapping[str, Any],
        horizon_encoder: nn.Module | Mapping[str, Any] | None,
        input_size: int,
        known_size: int,
        horizon: int,
        head_hidden: int,
        encoder_init: Mapping[str, Any] | None,
    ) -> tuple[nn.Module, nn.Module, nn.Module]:
        """One model: (encoder, horizon encoder (Identity when none), head), freshly initialised."""
        built = build_encoder(encoder, input_size * self.patch, encoder_init)
        context = encoder_output_size(built)
        layer: nn.Module = nn.Identity()
        if horizon_encoder is None:  # one MLP over the whole flattened horizon
            features, outputs = context + horizon * known_size, horizon
        else:  # a layer over the horizon's steps, then one MLP shared by every step
            layer = build_encoder(horizon_encoder, known_size + context)
            features, outputs = encoder_output_size(layer), 1
        head = nn.Sequential(
            nn.Linear(features, head_hidden), nn.ReLU(), nn.Linear(head_hidden, outputs)
        )
        return built, layer, head

    def forward(self, past: Tensor, known: Tensor) -> Tensor:
        """past (B, window, F), known (B, horizon, K) -> scaled residuals (B, horizon): the
        members' mean."""
        return self.member_residuals(past, known).mean(0)

    def member_residuals(self, past: Tensor, known: Tensor) -> Tensor:
        """Each member's scaled residuals, (members, B, horizon)."""
        members = [(self.encoder, self.horizon_encoder, self.head)]
        for m in self.more_members:
            assert isinstance(m, nn.ModuleDict)
            members.append((m["encoder"], m["horizon_encoder"], m["head"]))
        return torch.stack([self._residual(*m, past, known) for m in members])

    def _residual(
        self, encoder: nn.Module, layer: nn.Module, head: nn.Module, past: Tensor, known: Tensor
    ) -> Tensor:
        B, T, F_ = past.shape
        _, state = encoder(past.reshape(B, T // self.patch, self.patch * F_))
        h = state[0] if isinstance(state, tuple) else state  # LSTM: (h, c)
        directions = 2 if getattr(encoder, "bidirectional", False) else 1
        top = torch.cat(list(h[-directions:]), dim=-1)  # the top layer's final state (B, D*H)
        if isinstance(layer, nn.Identity):
            return head(torch.cat([top, known.flatten(1)], dim=1))
        # Every horizon step reads its known inputs beside the past's summary; the
        # layer (bidirectional: both neighbours) relates the steps, the head's weights
        # are shared by all of them (MQ-RNN's local MLP, Wen et al. 2017).
        steps = torch.cat([known, top.unsqueeze(1).expand(-1, known.shape[1], -1)], dim=-1)
        out, _ = layer(steps)
        return head(out).squeeze(-1)

    def forecast(self, batch: ForecastBatch) -> Tensor:
        """(B, horizon) in the data's units."""
        return self.forecast_from(batch.past, batch.known, batch.snaive)

    def forecast_from(self, past: Tensor, known: Tensor, snaive: Tensor) -> Tensor:
        """past (B, window, F), known (B, horizon, K), seasonal naive (B, horizon) -> the
        forecast (B, horizon) in the data's units: the inference path that
        seqmodels-predict runs and seqmodels-export writes out (seqmodels.export)."""
        return snaive + self(past, known) * self.target_scale

    # -- inference (TaskModule's contract) ----------------------------------
    def inference_program(self, datamodule: Any) -> Program:
        """The forecast (B, horizon) from `past` (B, window, F), `known` (B, horizon, K)
        and the seasonal naive forecast `snaive` (B, horizon)."""
        hp, B = self.hparams, EXAMPLE_BATCH
        past = torch.randn(B, int(hp["window"]), int(hp["input_size"]))
        known = torch.randn(B, int(hp["horizon"]), int(hp["known_size"]))
        snaive = torch.randn(B, int(hp["horizon"]))
        return Program(
            ForecastProgram(self),
            {"past": past, "known": known, "snaive": snaive},
            ["forecast"],
            {k: {0: "batch"} for k in ("past", "known", "snaive")},
        )

    def read_request(self, datamodule: Any, request: Mapping[str, Any]) -> PredictInputs:
        """csv=: recent rows of the series in the training columns, read by the
        datamodule's `encode_csv` into one forecast origin after the last observed value;
        the names are the horizon's timestamps."""
        given = given_keys(request)
        if given != ["csv"] or missing(datamodule, SeriesInputs):
            raise UserError(
                f"this model forecasts a series, not {' or '.join(given) or 'nothing'}: pass "
                "csv=recent.csv, recent rows in the training columns (see the task's config)"
            )
        batch, times = datamodule.encode_csv(str(Path(str(request["csv"])).expanduser()))
        return PredictInputs(batch, list(times))

    def predict_request(self, inputs: PredictInputs, request: Mapping[str, Any]) -> list[float]:
        """The horizon's forecast, in the data's units."""
        with torch.inference_mode():
            return self.predict_step(inputs.batch)[0].tolist()

    def format_prediction(
        self, datamodule: Any, inputs: PredictInputs, predicted: list[float]
    ) -> Prediction:
        """CSV: `timestamp,forecast`, then one row per step of the horizon."""
        rows = list(zip(inputs.names, predicted, strict=True))
        return Prediction(["timestamp,forecast", *(f"{t},{v:.4f}" for t, v in rows)], rows)

    def residual(self, batch: ForecastBatch) -> Tensor:
        """The training target: (y - seasonal naive) / std_train(y)."""
        return (batch.target - batch.snaive) / self.target_scale

    # -- steps ---------------------------------------------------------------
    def training_step(self, batch: ForecastBatch, batch_idx: int) -> Tensor:
        # each member learns on its own (the mean of their losses, not the loss of their
        # mean), so they stay independent models whose errors the average cancels
        residuals = self.member_residuals(batch.past, batch.known)
        loss = F.l1_loss(residuals, self.residual(batch).expand_as(residuals))
        self.train_loss.update(loss.detach(), weight=batch.target.numel())
        if self.writes_logs():  # the per-step view; train/loss is the epoch's mean
            self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def _evaluate(self, batch: ForecastBatch, stage: str) -> None:
        residual = self(batch.past, batch.known)
        loss = F.l1_loss(residual, self.residual(batch))
        getattr(self, f"{stage}_loss").update(loss, weight=batch.target.numel())
        forecasts = {
            "model": batch.snaive + residual * self.target_scale,
            "snaive": batch.snaive,
            "naive": batch.naive,
        }
        for name, forecast in forecasts.items():
            self._errors(stage, name).update(forecast, batch.target)

    def _errors(self, stage: str, forecast: str) -> ForecastErrors:
        return cast(ForecastErrors, self.errors[f"{stage}_{forecast}"])

    def validation_step(self, batch: ForecastBatch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: ForecastBatch, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def predict_step(self, batch: ForecastBatch, batch_idx: int = 0) -> Tensor:
        return self.forecast(batch)

    # -- logging -------------------------------------------------------------
    def _log_loss(self, stage: str) -> None:
        metric: MeanMetric = getattr(self, f"{stage}_loss")
        self.log(f"{stage}/loss", metric.compute(), prog_bar=stage != "train")
        metric.reset()

    def _log_errors(self, stage: str) -> dict[str, dict[str, Tensor]]:
        """{forecast: its errors}; logs the model's, the ratio to seasonal naive, the baselines'."""
        results = {}
        for name in FORECASTS:
            results[name] = self._errors(stage, name).compute()
            self._errors(stage, name).reset()
        for name, errors in results.items():
            prefix = f"{stage}/" if name == "model" else f"{stage}/{name}_"
            for key in ("mae", "rmse", "mape"):
                if key in errors:
                    self.log(prefix + key, float(errors[key]), prog_bar=name == "model")
        self.log(f"{stage}/rel_mae", float(results["model"]["mae"] / results["snaive"]["mae"]))
        return results

    def on_train_epoch_end(self) -> None:
        self._log_loss("train")

    def on_validation_epoch_end(self) -> None:
        self._log_loss("val")
        results = self._log_errors("val")
        if not self.trainer.sanity_checking and self.trainer.is_global_zero:
            self._draw(results)

    def on_test_epoch_end(self) -> None:
        self._log_loss("test")
        self._log_errors("test")

    # -- TensorBoard ---------------------------------------------------------
    def _draw(self, results: dict[str, dict[str, Tensor]]) -> None:
        writers = [lg.experiment for lg in self.loggers if isinstance(lg, TensorBoardLogger)]
        if not writers:
            return
        horizon = len(results["model"]["mae_by_step"])
        by_step = line_chart(
            "MAE per horizon step (validation), in the data's units",
            [
                (
                    f"{name} {float(results[name]['mae']):.4g}",
                    colour,
                    results[name]["mae_by_step"].cpu().numpy(),
                )
                for name, colour in (("snaive", SNAIVE), ("naive", NAIVE), ("model", MODEL))
            ],
            x_labels=("step 1", f"step {horizon}"),
        )
        weeks = self.example_charts()
        for writer in writers:
            writer.add_image("val/mae_by_step", by_step, self.media_step(), dataformats="HWC")
            if weeks is not None:
                writer.add_image("val/forecast_weeks", weeks, self.media_step(), dataformats="HWC")

    def example_charts(self) -> Any:
        """Forecast against actual for the datamodule's example weeks, one chart each (or None)."""
        dm = self.datamodule
        if not provides(dm, Forecasting):
            return None
        charts = []
        for title, batch in dm.examples():
            batch = ForecastBatch(*(t.to(self.device) for t in batch))
            forecast, target = self.forecast(batch).cpu(), batch.target.cpu()
            mae = (forecast - target).abs().mean()
            snaive_mae = (batch.snaive.cpu() - target).abs().mean()
            charts.append(
                line_chart(
                    f"{title}: MAE {float(mae):.4g} (seasonal naive {float(snaive_mae):.4g})",
                    [
                        ("seasonal naive", SNAIVE, with_gaps(batch.snaive.cpu().numpy())),
                        ("actual", BLACK, with_gaps(target.numpy())),
                        ("forecast", MODEL, with_gaps(forecast.numpy())),
                    ],
                    x_labels=("", "one day-ahead forecast per day"),
                )
            )
        return stack(charts) if charts else None

    def charts(self) -> dict[str, dict[str, list[str]]]:
        return {
            "train vs validation": {
                "loss": ["train/loss", "val/loss"],
                "MAE (data units)": ["val/mae", "val/snaive_mae", "val/naive_mae"],
            },
            "forecast": {
                "MAPE (%)": ["val/mape", "val/snaive_mape", "val/naive_mape"],
                "MAE / seasonal-naive MAE": ["val/rel_mae"],
            },
            **super().charts(),
        }

    def gradient_flow(self, batch: ForecastBatch) -> Tensor:
        loss = lambda: F.l1_loss(self(batch.past, batch.known), self.residual(batch))  # noqa: E731
        return state_gradient_norms(self.encoder, loss)


class ForecastProgram(nn.Module):
    """The exported program of a forecaster: (past, known, snaive) -> forecast."""

    def __init__(self, task: Forecaster) -> None:
        super().__init__()
        self.task = task

    def forward(self, past: Tensor, known: Tensor, snaive: Tensor) -> Tensor:
        return self.task.forecast_from(past, known, snaive)
