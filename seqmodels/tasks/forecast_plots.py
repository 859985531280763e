"""Line charts for TensorBoard's Images tab, drawn with Pillow (which tensorboard brings).

`line_chart` draws a few series over the same x positions with a legend and
the y range; `stack` puts charts under one another. The forecaster draws
forecast against actual for its example weeks, and the MAE per horizon step.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BLACK, GREY, WHITE = (0, 0, 0), (150, 150, 150), (255, 255, 255)
MODEL, SNAIVE, NAIVE = (31, 119, 180), (160, 160, 160), (255, 127, 14)


def line_chart(
    title: str,
    lines: Sequence[tuple[str, tuple[int, int, int], np.ndarray]],
    x_labels: tuple[str, str] = ("", ""),
    width: int = 720,
    height: int = 200,
) -> np.ndarray:
    """One chart, uint8 RGB (H, W, 3): each line is (label, colour, values), drawn in order
    (the last on top); NaN breaks a line. `x_labels` name the first and last x."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=13)
    image = Image.new("RGB", (width, height), WHITE)
    draw = ImageDraw.Draw(image)
    left, right, top, bottom = 58, 10, 34, 8 + (16 if any(x_labels) else 0)
    values = np.concatenate([np.asarray(v, dtype=float).ravel() for _, _, v in lines])
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    high = high if high > low else low + 1.0
    plot_w, plot_h = width - left - right, height - top - bottom
    draw.rectangle([left, top, left + plot_w, top + plot_h], outline=GREY)
    draw.text((4, 2), title, fill=BLACK, font=font)
    draw.text((4, top - 2), f"{high:.4g}", fill=BLACK, font=font)
    draw.text((4, top + plot_h - 14), f"{low:.4g}", fill=BLACK, font=font)
    draw.text((left, top + plot_h + 2), x_labels[0], fill=BLACK, font=font)
    last = x_labels[1]
    draw.text(
        (left + plot_w - draw.textlength(last, font=font), top + plot_h + 2),
        last,
        fill=BLACK,
        font=font,
    )
    x_legend = width - right
    for label, colour, _ in reversed(lines):
        x_legend -= int(draw.textlength(label, font=font)) + 24
        draw.line([x_legend, 10, x_legend + 14, 10], fill=colour, width=3)
        draw.text((x_legend + 17, 3), label, fill=colour, font=font)
    for _, colour, v in lines:
        v = np.asarray(v, dtype=float)
        xs = left + np.arange(len(v)) * plot_w / max(len(v) - 1, 1)
        ys = top + (high - v) / (high - low) * plot_h
        segment: list[tuple[float, float]] = []
        for x, y in zip(xs, ys, strict=True):
            if np.isfinite(y):
                segment.append((float(x), float(y)))
                continue
            if len(segment) > 1:
                draw.line(segment, fill=colour, width=2)
            segment = []
        if len(segment) > 1:
            draw.line(segment, fill=colour, width=2)
    return np.asarray(image)


def stack(charts: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate(list(charts), axis=0)


def with_gaps(days: np.ndarray) -> np.ndarray:
    """(days, steps) -> one line with a NaN between days, so each day's forecast stands apart."""
    days = np.asarray(days, dtype=float)
    gap = np.full((len(days), 1), np.nan)
    return np.concatenate([days, gap], axis=1).ravel()[:-1]
