"""Helpers shared by the seqmodels.nn tests."""

import torch


def grads(module):
    """Parameter gradients by name (None-safe), after a backward pass."""
    return {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


def states(s):
    """A final state as a tuple of tensors (h,) or (h, c)."""
    return tuple(s) if isinstance(s, tuple) else (s,)


def loss_of(out, s):
    """A loss touching every output and final state with distinct weights."""
    total = (out * torch.linspace(-1, 1, out.shape[-1], dtype=out.dtype)).sum()
    for k, t in enumerate(states(s)):
        total = total + (k + 2) * (t**2).sum()
    return total
