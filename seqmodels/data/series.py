"""A time series read from a CSV file and checked: one row per time step, evenly spaced.

`read_series` reads a timestamp column, numeric value columns (the target, then
the covariates) and an optional holiday flag, and refuses in one line what a
forecaster cannot use, naming the file's line (the header is line 1) and the
column:

- a timestamp that is not ISO 8601 (`2012-01-01T00:30:00Z`, `2012-01-01 00:30`),
  or some timestamps with a UTC offset and others without;
- rows out of order, a duplicate timestamp, a spacing that is not a multiple
  of the series' step (the most common spacing), and a gap (missing rows);
- a value that is not a number, and a missing one (empty, NA, NaN);
- a holiday flag that is not TRUE/FALSE (also true/false, 1/0, yes/no).

`fill="interpolate"` accepts gaps and missing values instead: the missing rows
are inserted, numbers are interpolated linearly in time (held constant before
the first and after the last known value), and a missing holiday flag takes
the previous row's. Nothing is ever filled silently.

Timestamps with a UTC offset (vic_elec's `2011-12-31T13:00:00Z`) are absolute;
their calendar (time of day, day of week, day of year, the local date) is read
in `timezone` when one is given, so a daylight-saving day has 46 or 50
half-hours and the calendar follows the wall clock people live by. Timestamps
without an offset are taken as the wall clock already (no `timezone` then).

pandas does the parsing; it comes with the `forecast` extra
(`pip install seqmodels[forecast]`), and without it this is one line saying so.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from seqmodels.errors import UserError

INSTALL = "pip install seqmodels[forecast]"
CALENDAR = ("time_of_day", "day_of_week", "day_of_year")
FILLS = (None, "interpolate")
MISSING = ("", "na", "n/a", "nan", "null", "none")
TRUE, FALSE = ("true", "t", "yes", "y", "1", "1.0"), ("false", "f", "no", "n", "0", "0.0")
OFFSET = r"(?:Z|z|[+-]\d\d:?\d\d)$"  # an ISO 8601 UTC offset at the end of a timestamp
NS = 1_000_000_000  # nanoseconds per second


def pandas() -> Any:
    """The pandas module, or one line saying how to install it."""
    try:
        import pandas as pd
    except ImportError:
        raise UserError(
            f"task=forecast reads CSV files with pandas, which is not installed: {INSTALL}"
        ) from None
    return pd


@dataclass
class Series:
    """Rows of one time series. `values` (N, C) holds the target then the covariates
    (NaN where missing); `line` is each row's line in the file (0: inserted by fill)."""

    name: str  # the file, as errors name it
    time: Any  # pandas DatetimeIndex: UTC when the file gives offsets, else the wall clock
    values: np.ndarray
    columns: list[str]
    holiday: np.ndarray | None  # (N,) 0/1, NaN where missing
    holiday_column: str | None
    line: np.ndarray

    def __len__(self) -> int:
        return len(self.line)

    @property
    def aware(self) -> bool:
        return self.time.tz is not None

    def rows(self, index: Any) -> Series:
        return replace(
            self,
            time=self.time[index],
            values=self.values[index],
            holiday=None if self.holiday is None else self.holiday[index],
            line=self.line[index],
        )

    def then(self, later: Series) -> Series:
        """These rows followed by `later`'s."""
        holiday = None
        if self.holiday is not None and later.holiday is not None:
            holiday = np.concatenate([self.holiday, later.holiday])
        return replace(
            self,
            time=self.time.append(later.time),
            values=np.concatenate([self.values, later.values]),
            holiday=holiday,
            line=np.concatenate([self.line, later.line]),
        )

    def column(self, name: str) -> np.ndarray:
        if name == self.holiday_column and self.holiday is not None:
            return self.holiday
        return self.values[:, self.columns.index(name)]


def where(series_name: str, line: int, column: str) -> str:
    return f"{series_name}, line {line}, column {column}" if line else f"{series_name}, {column}"


# -- reading ---------------------------------------------------------------------------------


def read_series(
    source: Any, name: str, time_column: str, value_columns: list[str], holiday_column: str | None
) -> Series:
    """Parse and check every cell of a CSV file (a path or an open file); see the module doc."""
    pd = pandas()
    try:
        frame = pd.read_csv(source, dtype=str, keep_default_na=False, na_filter=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{name}: cannot read it as a CSV file ({first})") from None
    except FileNotFoundError:
        raise UserError(f"{name}: no such file; point data.path= at a CSV file") from None
    keys = {
        "data.time_column": [time_column],
        "data.target/covariates": value_columns,
        "data.holiday_column": [holiday_column] if holiday_column else [],
    }
    for key, wanted in keys.items():
        for column in wanted:
            if column not in frame.columns:
                raise UserError(
                    f"{name} has no column {column!r} ({key}); its columns are "
                    f"{', '.join(map(str, frame.columns))}"
                )
    if len(frame) == 0:
        raise UserError(f"{name} has a header but no rows")
    values = np.stack([parse_numbers(frame[c], name, c) for c in value_columns], axis=1)
    holiday = parse_flags(frame[holiday_column], name, holiday_column) if holiday_column else None
    time = parse_time(frame[time_column], name, time_column)
    return Series(
        name, time, values, list(value_columns), holiday, holiday_column, np.arange(len(frame)) + 2
    )


def parse_time(column: Any, name: str, key: str) -> Any:
    """A DatetimeIndex: in UTC when the timestamps carry offsets, the wall clock when none does."""
    pd = pandas()
    text = column.str.strip()
    parsed = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if len(bad):
        i = int(bad[0])
        raise UserError(
            f"{where(name, i + 2, key)}: {text.iloc[i]!r} is not an ISO 8601 "
            "timestamp (such as 2012-01-01T00:30:00Z or 2012-01-01 00:30)"
        )
    aware = text.str.contains(OFFSET, regex=True).to_numpy()
    if aware.any() and not aware.all():
        i = int(np.flatnonzero(aware != aware[0])[0])
        has = "has no UTC offset" if aware[0] else "has a UTC offset"
        raise UserError(
            f"{where(name, i + 2, key)}: {text.iloc[i]!r} {has}, unlike line 2's "
            f"{text.iloc[0]!r}: write every timestamp the same way"
        )
    index = pd.DatetimeIndex(parsed).as_unit("ns")
    return index if aware.all() else index.tz_localize(None)


def parse_numbers(column: Any, name: str, key: str) -> np.ndarray:
    """Floats, NaN where the cell is empty or NA; anything else that is not a number is refused."""
    pd = pandas()
    text = column.str.strip()
    missing = text.str.lower().isin(MISSING).to_numpy()
    numbers = pd.to_numeric(text.where(~missing), errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(~missing & ~np.isfinite(numbers))
    if len(bad):
        i = int(bad[0])
        raise UserError(f"{where(name, i + 2, key)}: {text.iloc[i]!r} is not a number")
    return numbers


def parse_flags(column: Any, name: str, key: str) -> np.ndarray:
    text = column.str.strip().str.lower()
    flags = np.full(len(text), np.nan)
    flags[text.isin(TRUE).to_numpy()] = 1.0
    flags[text.isin(FALSE).to_numpy()] = 0.0
    bad = np.flatnonzero(np.isnan(flags) & ~text.isin(MISSING).to_numpy())
    if len(bad):
        i = int(bad[0])
        raise UserError(
            f"{where(name, i + 2, key)}: {column.iloc[i]!r} is not a holiday flag (TRUE or FALSE)"
        )
    return flags


# -- regular spacing and missing values ------------------------------------------------------


def describe_step(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} seconds"


def most_common_step(series: Series) -> int:
    """The series' step in seconds: its most common spacing between rows."""
    gaps = np.diff(series.time.asi8) // NS
    gaps = gaps[gaps > 0]
    if len(gaps) == 0:
        raise UserError(f"{series.name}: fewer than two distinct timestamps; a series needs more")
    steps, counts = np.unique(gaps, return_counts=True)
    return int(steps[np.argmax(counts)])


def check_spacing(series: Series, key: str, step: int, fill: str | None) -> Series:
    """Every row `step` seconds after the previous one; gaps filled only with fill=interpolate."""
    gaps = np.diff(series.time.asi8) // NS
    for i in np.flatnonzero(gaps != step):
        gap, line, previous = int(gaps[i]), int(series.line[i + 1]), int(series.line[i])
        stamp = series.time[i + 1]
        if gap == 0:
            raise UserError(
                f"{where(series.name, line, key)}: {stamp} repeats line {previous}'s "
                "timestamp; keep one row per time step"
            )
        if gap < 0:
            raise UserError(
                f"{where(series.name, line, key)}: {stamp} is earlier than line "
                f"{previous}'s {series.time[i]}; sort the file by {key}"
            )
        if gap % step:
            raise UserError(
                f"{where(series.name, line, key)}: {stamp} is {describe_step(gap)} "
                f"after line {previous}, not a multiple of the series' step "
                f"({describe_step(step)}): the rows must be evenly spaced"
            )
        if fill != "interpolate":
            raise UserError(
                f"{where(series.name, line, key)}: {gap // step - 1} row(s) missing "
                f"between {series.time[i]} (line {previous}) and {stamp} (every "
                f"{describe_step(step)}); add them, or set data.fill=interpolate"
            )
    if (gaps == step).all():
        return series
    return insert_missing_rows(series, step)


def insert_missing_rows(series: Series, step: int) -> Series:
    """The series on its full grid of steps, inserted rows NaN (line 0)."""
    pd = pandas()
    start = series.time.asi8[0]
    slot = (series.time.asi8 - start) // (step * NS)
    n = int(slot[-1]) + 1
    grid = pd.DatetimeIndex(start + np.arange(n, dtype=np.int64) * step * NS, tz=series.time.tz)
    values = np.full((n, series.values.shape[1]), np.nan)
    values[slot] = series.values
    line = np.zeros(n, dtype=int)
    line[slot] = series.line
    holiday = None
    if series.holiday is not None:
        holiday = np.full(n, np.nan)
        holiday[slot] = series.holiday
    return replace(series, time=grid.as_unit("ns"), values=values, holiday=holiday, line=line)


def check_missing(series: Series, fill: str | None, columns: list[str] | None = None) -> Series:
    """No missing value in `columns` (default: all): refused, or filled with fill=interpolate."""
    if fill == "interpolate":
        values = np.stack([interpolate(v) for v in series.values.T], axis=1)
        holiday = None if series.holiday is None else hold_previous(series.holiday)
        return replace(series, values=values, holiday=holiday)
    names = columns or [
        *series.columns,
        *([series.holiday_column] if series.holiday_column else []),
    ]
    for name in names:
        missing = np.flatnonzero(np.isnan(series.column(name)))
        if len(missing):
            i = int(missing[0])
            raise UserError(
                f"{where(series.name, int(series.line[i]), name)}: the value is "
                "missing; give it, or set data.fill=interpolate"
            )
    return series


def interpolate(v: np.ndarray) -> np.ndarray:
    known = np.flatnonzero(np.isfinite(v))
    if len(known) == 0:
        return v
    return np.interp(np.arange(len(v)), known, v[known])


def hold_previous(flags: np.ndarray) -> np.ndarray:
    """A missing flag takes the previous row's (the first rows take the first known one)."""
    known = np.isfinite(flags)
    if not known.any():
        return np.zeros_like(flags)
    index = np.where(known, np.arange(len(flags)), 0)
    np.maximum.accumulate(index, out=index)
    held = flags[index]
    held[: np.flatnonzero(known)[0]] = flags[known][0]
    return held


# -- local time and calendar -----------------------------------------------------------------


def check_timezone(timezone: str | None) -> None:
    if timezone is None:
        return
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise UserError(
            f"data.timezone={timezone!r} is not a time zone name (such as "
            "Australia/Melbourne or UTC)"
        ) from None


def wall_clock(series: Series, timezone: str | None, key: str) -> Any:
    """The timestamps as local wall-clock times (no offset), in which the calendar is read."""
    if timezone is None:
        return series.time.tz_localize(None) if series.aware else series.time
    if not series.aware:
        raise UserError(
            f"data.timezone={timezone} converts timestamps with a UTC offset, but "
            f"{series.name}'s {key} has none (such as 2012-01-01T00:30:00Z); drop "
            "data.timezone, or write the offsets"
        )
    return series.time.tz_convert(timezone).tz_localize(None)


def calendar_features(clock: Any, names: list[str] | tuple[str, ...]) -> np.ndarray:
    """(N, 2 * len(names)) float32: sin and cos of each named phase of the wall clock.

    time_of_day: seconds since local midnight / 86400; day_of_week: Monday = 0
    over 7; day_of_year: the 1-based day over 365.25.
    """
    columns = []
    for name in names:
        if name == "time_of_day":
            phase = (clock.hour * 3600 + clock.minute * 60 + clock.second) / 86400
        elif name == "day_of_week":
            phase = clock.day_of_week / 7
        elif name == "day_of_year":
            phase = clock.day_of_year / 365.25
        else:
            raise UserError(f"calendar feature {name!r} is not one of {', '.join(CALENDAR)}")
        angle = 2 * np.pi * np.asarray(phase, dtype=np.float64)
        columns += [np.sin(angle), np.cos(angle)]
    return (
        np.stack(columns, axis=1).astype(np.float32)
        if columns
        else np.zeros((len(clock), 0), np.float32)
    )


def local_days(clock: Any) -> np.ndarray:
    """Each row's local date as datetime64[D]."""
    return np.asarray(clock.normalize().values, dtype="datetime64[D]")


def format_times(series_time: Any) -> list[str]:
    """ISO 8601, in UTC with a Z when the series has offsets, as the wall clock otherwise."""
    if series_time.tz is not None:
        return list(series_time.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ"))
    return list(series_time.strftime("%Y-%m-%dT%H:%M:%S"))
