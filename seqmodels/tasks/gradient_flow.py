"""The gradient-through-time view in TensorBoard: ||dL/dh_t|| per step, per epoch.

At the end of each validation epoch, on a fixed validation batch (the first
of the validation loader), the task module measures the norm of dL/dh_t of
its encoder's top layer at every step t (seqmodels.nn.gradflow; padded steps
excluded, one row per direction). The callback logs:

- `grad_flow/steps`: an image, time steps across, epochs down (the newest at
  the bottom), colour = log10 of the norm, one panel per direction;
- `grad_flow/first_over_last`: log10 of the norm at the first step over the
  norm at the last step, forward direction: how many decades the gradient
  loses on its way back through the sequence (0: none, -10: a plain RNN
  that cannot learn from the start of long sequences).

Norms below 1e-30 (a gradient that underflowed to zero) count as 1e-30.
It costs one forward and backward pass of one batch per epoch on the `loop`
engine. Switch it off with `~callbacks.gradient_flow` or `callbacks=none`.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger

FLOOR = 1e-30
# Viridis at nine points (matplotlib's colormap, which seqmodels does not depend on).
VIRIDIS = np.array(
    [
        [68, 1, 84],
        [71, 44, 122],
        [59, 81, 139],
        [44, 113, 142],
        [33, 144, 141],
        [39, 173, 129],
        [92, 200, 99],
        [170, 220, 50],
        [253, 231, 37],
    ],
    dtype=float,
)


class GradientFlow(L.Callback):
    def __init__(self, min_width: int = 640) -> None:
        self.min_width = min_width
        self.rows: list[np.ndarray] = []  # per validation epoch: log10 norms (directions, T)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        writers = [lg.experiment for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        if trainer.sanity_checking or not trainer.is_global_zero or not writers:
            return
        with torch.inference_mode(False), torch.enable_grad():  # validation runs without
            batch = next(iter(trainer.datamodule.val_dataloader()))  # type: ignore[attr-defined]
            batch = pl_module.transfer_batch_to_device(batch, pl_module.device, 0)
            norms = pl_module.gradient_flow(batch)
        logs = torch.log10(norms.clamp(min=FLOOR)).cpu().numpy()
        self.rows.append(logs)
        step = pl_module.media_step()
        forward = logs[0][np.isfinite(norms[0].cpu().numpy())]
        for writer in writers:
            writer.add_scalar("grad_flow/first_over_last", float(forward[0] - forward[-1]), step)
            writer.add_image(
                "grad_flow/steps", render(self.rows, self.min_width), step, dataformats="HWC"
            )

    def state_dict(self) -> dict[str, Any]:
        return {"rows": [r.tolist() for r in self.rows]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = [np.array(r) for r in state_dict.get("rows", [])]


def colors(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """values -> uint8 RGB along viridis, `low` dark purple, `high` yellow; NaN grey."""
    t = np.clip((values - low) / max(high - low, 1e-9), 0, 1) * (len(VIRIDIS) - 1)
    i = np.minimum(t.astype(int), len(VIRIDIS) - 2)
    frac = (t - i)[..., None]
    rgb = VIRIDIS[i] * (1 - frac) + VIRIDIS[i + 1] * frac
    rgb[np.isnan(values)] = 128
    return rgb.astype(np.uint8)


def render(rows: list[np.ndarray], min_width: int = 640) -> np.ndarray:
    """Epochs x steps heatmaps (one panel per direction) with labels and a colour bar: HWC."""
    from PIL import Image, ImageDraw, ImageFont  # Pillow comes with tensorboard

    data = np.stack(rows)  # (epochs, directions, T)
    epochs, D, T = data.shape
    finite = data[np.isfinite(data)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    scale = max(1, -(-min_width // T))
    row = int(np.clip(160 // epochs, 3, 32))  # a panel of about 160 pixels
    font = ImageFont.load_default(size=15)
    left, line, bar = 90, 20, 16
    width, panel = left + T * scale + 20, epochs * row
    height = D * (line + panel + line) + line + bar + line
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    black = (0, 0, 0)
    y = 0
    for d in range(D):
        name = ("forward direction", "backward direction")[d] if D == 2 else "top layer"
        draw.text((left, y + 2), f"{name}: step across, epoch down", fill=black, font=font)
        y += line
        cells = np.repeat(np.repeat(colors(data[:, d], low, high), row, 0), scale, 1)
        image.paste(Image.fromarray(cells), (left, y))
        draw.text((4, y), "epoch 1", fill=black, font=font)
        if epochs > 1:
            draw.text((4, y + panel - 16), f"epoch {epochs}", fill=black, font=font)
        y += panel
        draw.text((left, y + 2), "0", fill=black, font=font)
        draw.text((left + T * scale - 40, y + 2), f"{T - 1}", fill=black, font=font)
        y += line
    y += line // 2
    ramp = colors(np.linspace(low, high, T * scale)[None, :], low, high)
    image.paste(Image.fromarray(np.repeat(ramp, bar, 0)), (left, y))
    draw.text((left, y + bar + 2), f"{low:.1f}", fill=black, font=font)
    draw.text((left + T * scale // 2 - 60, y + bar + 2), "log10 |dL/dh_t|", fill=black, font=font)
    draw.text((left + T * scale - 40, y + bar + 2), f"{high:.1f}", fill=black, font=font)
    return np.asarray(image)
