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


def run(layer, x, s0, lengths):
    x = x.detach().requires_grad_()
    layer.zero_grad(set_to_none=True)
    out, s = layer(x, s0, lengths=lengths)
    loss_of(out, s).backward()
    return out, s, grads(layer), x.grad


def assert_same_run(other, ref, x, s0, lengths, atol=1e-5):
    """Outputs, final states, parameter and input gradients of two layers agree."""
    out_r, s_r, g_r, dx_r = run(ref, x, s0, lengths)
    out_o, s_o, g_o, dx_o = run(other, x, s0, lengths)
    tol = dict(atol=atol, rtol=0)
    torch.testing.assert_close(out_o, out_r, **tol)
    for a, b in zip(states(s_o), states(s_r), strict=True):
        torch.testing.assert_close(a, b, **tol)
    assert g_o.keys() == g_r.keys() and len(g_r) > 0
    for name in g_r:
        torch.testing.assert_close(g_o[name], g_r[name], **tol, msg=name)
    torch.testing.assert_close(dx_o, dx_r, **tol)
