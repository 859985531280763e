# ruff: noqa: E741  (I, H, T: the sizes as the formulas name them)
"""Independent numpy oracles.

- the seeds' own method (min-char-rnn style): a numpy forward pass of the tanh RNN with
  i2o = W_hy h + b_y and a hand-written BPTT; its gradients must match autograd through
  RNNCell stepped by the layer's loop and fused engines;
- a numpy GRU in Cho et al.'s form (reset_after=False), written from the formulas.
"""

import numpy as np
import pytest
import torch

from seqmodels.nn import GRU, RNN, RNNCell


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


def numpy_rnn_bptt(xs, h0, Wxh, Whh, bh, Why, by, targets):
    """Seed-style tanh RNN: forward, softmax cross-entropy per step, hand-written BPTT."""
    hs, ps, loss = {-1: h0}, {}, 0.0
    for t, x in enumerate(xs):
        hs[t] = np.tanh(Wxh @ x + Whh @ hs[t - 1] + bh)
        y = Why @ hs[t] + by
        ps[t] = np.exp(y - y.max()) / np.exp(y - y.max()).sum()
        loss += -np.log(ps[t][targets[t]])
    dWxh, dWhh, dbh = np.zeros_like(Wxh), np.zeros_like(Whh), np.zeros_like(bh)
    dWhy, dby = np.zeros_like(Why), np.zeros_like(by)
    dh_next = np.zeros_like(h0)
    for t in reversed(range(len(xs))):
        dy = ps[t].copy()
        dy[targets[t]] -= 1.0  # softmax + cross-entropy
        dWhy += np.outer(dy, hs[t])
        dby += dy
        dh = Why.T @ dy + dh_next
        draw = (1 - hs[t] ** 2) * dh  # tanh'
        dbh += draw
        dWxh += np.outer(draw, xs[t])
        dWhh += np.outer(draw, hs[t - 1])
        dh_next = Whh.T @ draw
    return loss, [hs[t] for t in range(len(xs))], (dWxh, dWhh, dbh, dWhy, dby)


@pytest.mark.parametrize("via", ["cell", "loop", "fused", "native"])
def test_tanh_rnn_matches_numpy_bptt(via):
    torch.manual_seed(0)
    I, H, V, T = 4, 5, 3, 7
    cell = RNNCell(I, H, output_size=V).double()
    xs = torch.randn(T, I, dtype=torch.float64)
    targets = torch.randint(0, V, (T,))
    w = cell.i2h.weight.detach().numpy()
    Wxh, Whh, bh = w[:, :I], w[:, I:], cell.i2h.bias.detach().numpy()
    # the seed's output layer reads h only: use the h-columns of i2o, zero its x-columns
    with torch.no_grad():
        cell.i2o.weight[:, :I] = 0
    Why, by = cell.i2o.weight.detach().numpy()[:, I:], cell.i2o.bias.detach().numpy()
    loss_np, hs_np, grads_np = numpy_rnn_bptt(
        xs.numpy(), np.zeros(H), Wxh, Whh, bh, Why, by, targets.numpy()
    )

    if via == "cell":
        h, logits, hs = None, [], []
        for x in xs.unbind(0):
            out, h = cell(x[None], h)
            logits.append(out)
            hs.append(h)
        logits, hs = torch.cat(logits), torch.cat(hs)
        i2h_grad = lambda: cell.i2h.weight.grad  # noqa: E731
        bias_grad = lambda: cell.i2h.bias.grad  # noqa: E731
    else:  # the same weights in a layer on each engine, i2o applied to its outputs
        layer = RNN(I, H, engine=via).double()
        layer.cells[0].load_state_dict(cell.state_dict(), strict=False)
        out, _ = layer(xs[None])
        hs = out[0]
        logits = cell.i2o(torch.cat((xs, hs), 1))
        i2h_grad = lambda: layer.cells[0].i2h.weight.grad  # noqa: E731
        bias_grad = lambda: layer.cells[0].i2h.bias.grad  # noqa: E731
    loss = torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
    loss.backward()
    np.testing.assert_allclose(loss.item(), loss_np, rtol=1e-10)
    np.testing.assert_allclose(hs.detach().numpy(), np.stack(hs_np), atol=1e-12)
    dWxh, dWhh, dbh, dWhy, dby = grads_np
    np.testing.assert_allclose(i2h_grad().numpy(), np.concatenate([dWxh, dWhh], 1), atol=1e-10)
    np.testing.assert_allclose(bias_grad().numpy(), dbh, atol=1e-10)
    np.testing.assert_allclose(cell.i2o.weight.grad.numpy()[:, I:], dWhy, atol=1e-10)
    np.testing.assert_allclose(cell.i2o.bias.grad.numpy(), dby, atol=1e-10)


def numpy_gru_cho(x, h0, W, b, I, H):
    """Cho et al. 2014 GRU, from the formulas; W rows [r; z; n], columns [x | h]."""
    Wr, Wz, Wn = W[:H], W[H : 2 * H], W[2 * H :]
    br, bz, bn = b[:H], b[H : 2 * H], b[2 * H :]
    h, out = h0, []
    for xt in x:
        xh = np.concatenate([xt, h], -1)
        r = sigmoid(xh @ Wr.T + br)
        z = sigmoid(xh @ Wz.T + bz)
        n = np.tanh(np.concatenate([xt, r * h], -1) @ Wn.T + bn)
        h = (1 - z) * n + z * h
        out.append(h)
    return np.stack(out), h


@pytest.mark.parametrize("engine", ["loop", "fused"])
def test_gru_reset_before_matches_numpy(engine):
    torch.manual_seed(1)
    I, H, B, T = 3, 4, 2, 6
    layer = GRU(I, H, reset_after=False, engine=engine).double()
    x = torch.randn(B, T, I, dtype=torch.float64)
    h0 = torch.randn(1, B, H, dtype=torch.float64)
    out, h = layer(x, h0)
    cell = layer.cells[0]
    out_np, h_np = numpy_gru_cho(
        x.numpy().transpose(1, 0, 2),
        h0[0].numpy(),
        cell.i2h.weight.detach().numpy(),
        cell.i2h.bias.detach().numpy(),
        I,
        H,
    )
    np.testing.assert_allclose(out.detach().numpy(), out_np.transpose(1, 0, 2), atol=1e-12)
    np.testing.assert_allclose(h[0].detach().numpy(), h_np, atol=1e-12)
