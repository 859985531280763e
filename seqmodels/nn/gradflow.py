"""Gradient through time: how strongly a loss reaches back to each step's hidden state.

`state_gradient_norms(layer, loss_fn, lengths)` returns, for the top layer of a
recurrent layer, the norm of dL/dh_t at every step t, averaged over the
sequences of the batch (a sequence counts only at its valid steps), one row
per direction: a tensor (directions, T). Backward-direction rows are indexed
by the input's time steps too.

dL/dh_t is the total derivative: the loss's sensitivity to h_t through every
later step, which is what vanishes in a plain RNN and what gates preserve.
It is measured by adding a zero tensor e_t to the state each step produces
and differentiating the loss with respect to e_t (the forward's numbers do
not change). That needs the cells stepped one at a time, so the layer runs on
the `loop` engine for the measurement; every engine computes the same
function (tests/nn), so the result holds for the engine the layer trains on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from seqmodels.nn.engines import reverse_within


def state_gradient_norms(
    layer: Any, loss_fn: Callable[[], Tensor], lengths: Tensor | None = None
) -> Tensor:
    """(directions, T): mean over the batch of ||dL/dh_t|| for the top layer.

    `loss_fn()` runs the forward pass that calls `layer` (once) and returns the
    loss; `lengths` are the valid lengths of that call's sequences (None: all
    steps valid). Steps where no sequence is valid are NaN.
    """
    D = layer.num_directions
    top = list(layer.cells[(layer.num_layers - 1) * D :])
    zeros: list[list[Tensor]] = [[] for _ in top]

    def add_zero(direction: int):
        def hook(cell: Any, args: Any, output: Any) -> Any:
            _, state = output
            h = state[0] if isinstance(state, tuple) else state
            e = torch.zeros_like(h, requires_grad=True)
            zeros[direction].append(e)
            h = h + e
            # h replaced, every other state tensor (c, m, ...) passed on as it is
            return h, ((h, *state[1:]) if isinstance(state, tuple) else h)

        return hook

    handles = [cell.register_forward_hook(add_zero(d)) for d, cell in enumerate(top)]
    engine = layer.engine
    layer.engine = "loop"
    try:
        loss = loss_fn()
        flat = [e for per_direction in zeros for e in per_direction]
        grads = torch.autograd.grad(loss, flat, allow_unused=True)
    finally:
        layer.engine = engine
        for handle in handles:
            handle.remove()
    T = len(zeros[0])
    rows = []
    for d in range(D):
        g = grads[d * T : (d + 1) * T]
        per_step = torch.stack(
            [torch.zeros_like(zeros[d][t]) if g[t] is None else g[t] for t in range(T)], 1
        )  # (B, T, H)
        if d == 1:  # the backward cell's step s is input step lengths - 1 - s
            per_step = reverse_within(per_step, lengths, 1)
        norms = per_step.detach().norm(dim=-1)  # (B, T)
        if lengths is None:
            rows.append(norms.mean(0))
        else:
            valid = (
                torch.arange(T, device=norms.device)[None, :] < lengths.to(norms.device)[:, None]
            )
            count = valid.sum(0)
            mean = (norms * valid).sum(0) / count.clamp(min=1)
            rows.append(torch.where(count > 0, mean, float("nan")))
    return torch.stack(rows)
