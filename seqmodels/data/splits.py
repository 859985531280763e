"""The validation split every datamodule carves out of its training data, one rule for all."""

from __future__ import annotations

import torch

from seqmodels.errors import UserError


def holdout(
    n: int, val_size: int | float, seed: int, what: str = "items"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(training indices, validation indices) of n items, validation drawn with `seed`.

    `val_size` is a count (an int) or a fraction of n (a float in (0, 1)). Both
    parts must hold at least one item: validation picks the best checkpoint and
    drives early stopping, so a run without it is refused rather than silently
    monitoring nothing.
    """
    if isinstance(val_size, bool) or not isinstance(val_size, (int, float)):
        raise UserError(f"data.val_size={val_size!r} must be a count or a fraction in (0, 1)")
    n_val = round(val_size * n) if isinstance(val_size, float) else int(val_size)
    if not 0 < n_val < n:
        raise UserError(
            f"data.val_size={val_size} leaves no training or no validation {what} out of {n}; "
            f"use a count between 1 and {n - 1} or a fraction in (0, 1)"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return order[n_val:], order[:n_val]
