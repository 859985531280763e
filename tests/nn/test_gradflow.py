"""state_gradient_norms against independent computations, and its behaviour on RNN vs LSTM."""

import numpy as np
import pytest
import torch

from seqmodels.nn import GRU, LSTM, RNN
from seqmodels.nn.gradflow import state_gradient_norms


def test_tanh_rnn_against_numpy_bptt():
    torch.manual_seed(0)
    layer = RNN(3, 4, engine="fused")
    x = torch.randn(2, 6, 3)
    target = torch.randn(2, 4)

    def loss():
        _, h = layer(x)
        return ((h[-1] - target) ** 2).sum()

    got = state_gradient_norms(layer, loss)[0]
    assert layer.engine == "fused"  # put back after the measurement
    # numpy BPTT: h_t = tanh(W [x_t, h_{t-1}] + b); dL/dh_T = 2 (h_T - y);
    # dL/dh_{t-1} = W_hh^T (dL/dh_t * (1 - h_t^2)).
    W = layer.cells[0].i2h.weight.detach().numpy().astype(np.float64)
    b = layer.cells[0].i2h.bias.detach().numpy().astype(np.float64)
    xs = x.numpy().astype(np.float64)
    hs = [np.zeros((2, 4))]
    for t in range(6):
        hs.append(np.tanh(np.concatenate([xs[:, t], hs[-1]], 1) @ W.T + b))
    dh = 2 * (hs[-1] - target.numpy())
    want = [None] * 6
    for t in range(5, -1, -1):
        want[t] = np.linalg.norm(dh, axis=1).mean()
        dh = (dh * (1 - hs[t + 1] ** 2)) @ W[:, 3:]
    np.testing.assert_allclose(got.numpy(), np.array(want), rtol=1e-5, atol=1e-6)


def rerun_norms(layer, x, lengths):
    """dL/dh_t by re-running the cell from step t with h_t as a leaf (loss on the final h)."""
    cell = layer.cells[0]
    B, T, _ = x.shape
    state = None
    states = []
    with torch.no_grad():
        for t in range(T):
            _, new = cell(x[:, t], state)
            if state is not None:
                keep = (t < lengths)[:, None]
                new = (
                    (torch.where(keep, new[0], state[0]), torch.where(keep, new[1], state[1]))
                    if isinstance(new, tuple)
                    else torch.where(keep, new, state)
                )
            state = new
            states.append(state)
    out = []
    for t in range(T):
        s = states[t]
        h = (s[0] if isinstance(s, tuple) else s).clone().requires_grad_()
        s = (h, s[1]) if isinstance(s, tuple) else h
        for u in range(t + 1, T):
            _, new = cell(x[:, u], s)
            keep = (u < lengths)[:, None]
            s = (
                (torch.where(keep, new[0], s[0]), torch.where(keep, new[1], s[1]))
                if isinstance(new, tuple)
                else torch.where(keep, new, s)
            )
        final = s[0] if isinstance(s, tuple) else s
        (g,) = torch.autograd.grad((final**2).sum(), h)
        valid = t < lengths
        out.append(g.norm(dim=-1)[valid].mean() if valid.any() else torch.tensor(float("nan")))
    return torch.stack(out)


@pytest.mark.parametrize("cls", [LSTM, GRU, RNN])
@pytest.mark.parametrize("engine", ["fused", "native", "loop"])
def test_every_cell_and_engine_against_rerunning_from_each_step(cls, engine):
    torch.manual_seed(1)
    layer = cls(3, 5, engine=engine)
    x = torch.randn(3, 7, 3)
    lengths = torch.tensor([7, 4, 6])

    def loss():
        _, s = layer(x, lengths=lengths)
        h = s[0] if isinstance(s, tuple) else s
        return (h[-1] ** 2).sum()

    got = state_gradient_norms(layer, loss, lengths)[0]
    torch.testing.assert_close(got, rerun_norms(layer, x, lengths), atol=1e-5, rtol=1e-5)


def test_bidirectional_rows_and_padded_steps():
    torch.manual_seed(2)
    layer = GRU(2, 3, bidirectional=True)
    x, lengths = torch.randn(2, 5, 2), torch.tensor([5, 3])

    def norms_of(x, lengths):
        def loss():  # a sum over sequences: each one's gradient is its own
            out, _ = layer(x, lengths=lengths)
            return out[:, :, 3:].sum()  # only the backward direction's outputs

        return state_gradient_norms(layer, loss, lengths)

    both = norms_of(x, lengths)
    assert both.shape == (2, 5) and torch.all(both[0] == 0)  # nothing reaches the forward one
    alone = [norms_of(x[i : i + 1, : int(n)], None) for i, n in enumerate(lengths)]
    # Steps 3 and 4 are padding in the second sequence: only the first one counts there.
    torch.testing.assert_close(both[1, 3:], alone[0][1, 3:])
    torch.testing.assert_close(both[1, :3], (alone[0][1, :3] + alone[1][1]) / 2)
