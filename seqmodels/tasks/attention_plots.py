"""Attention matrices as images for TensorBoard, drawn with Pillow (which tensorboard brings).

One image per source: its tokens across the top, the output tokens down the
left side, each cell's darkness the weight the decoder gave that source token
while writing that output token. A diagonal band is a model that reads the
word left to right; a blurred band is one that has not learnt where to look.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def attention_image(
    weights: np.ndarray,
    source: Sequence[str],
    output: Sequence[str],
    title: str = "",
    cell: int = 24,
) -> np.ndarray:
    """uint8 RGB (H, W, 3) of weights (len(output), len(source)) with both axes labelled."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=12)
    rows, cols = len(output), len(source)
    left = 8 + max([int(font.getlength(t)) for t in output] + [20])
    top = 22 + 18
    width, height = (
        max(left + cols * cell + 8, 8 + int(font.getlength(title)) + 8),
        top + rows * cell + 8,
    )
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    draw.text((8, 4), title, fill=(0, 0, 0), font=font)
    for j, token in enumerate(source):
        draw.text(
            (left + j * cell + cell // 2, top - 4), token, fill=(0, 0, 0), font=font, anchor="mb"
        )
    for i, token in enumerate(output):
        draw.text(
            (left - 6, top + i * cell + cell // 2), token, fill=(0, 0, 0), font=font, anchor="rm"
        )
        for j in range(cols):
            shade = int(round(255 * (1.0 - float(np.clip(weights[i, j], 0.0, 1.0)))))
            x, y = left + j * cell, top + i * cell
            draw.rectangle(
                (x, y, x + cell - 1, y + cell - 1),
                fill=(shade, shade, 255),
                outline=(220, 220, 220),
            )
    return np.asarray(image)


def stack(images: Sequence[np.ndarray], gap: int = 6) -> np.ndarray:
    """Images one under another, left-aligned on white."""
    width = max(i.shape[1] for i in images)
    padded = [
        np.pad(i, ((0, gap), (0, width - i.shape[1]), (0, 0)), constant_values=255) for i in images
    ]
    return np.concatenate(padded, axis=0)
