"""Streaming generation from a language model: O(1) work per new token.

The classic Keras text-generation example re-runs the model over the last
`seq_len` characters for every new one: O(seq_len) work per character, and a
context cut at seq_len. Here the prime runs once through the encoder (its
fast engine), and then each new token is one step of the cells from the
carried state: read every weight once, nothing re-run.

A model is anything with `embedding` (nn.Embedding), `encoder` (a
unidirectional seqmodels.nn layer) and `head` (nn.Linear to the vocabulary),
as seqmodels' LanguageModel task has, or a three-attribute nn.Module of one's own.

One step is bound by memory: a batch-1 step is a few matrix-vector products,
so chars/s <= GEMV bandwidth / weight bytes per step (scripts/bench_sample.py
measures both). Two steppers:

- `CellStepper` steps `encoder.cells` as they are: any cell type (RNN, LSTM,
  GRU), the reference.
- `FoldedLSTMStepper` is the LSTM's fast path. It folds what does not change
  between steps, once per call: layer 0's input product for every token
  (embedding @ W_ih0^T + b, a V x 4H table, so layer 0 reads only W_hh0), and
  1/temperature into the head. Layers >= 1 use `i2h.weight` itself: the
  hidden states of all layers live in one buffer [h_0 | h_1 | ...], so layer
  l's `cat(h_{l-1}, h_l)` is a slice of it, no copy. Elementwise work is done
  in place to keep the per-step Python overhead small next to the GEMVs.

Sampling is the Gumbel-max trick, argmax(logits / T + G) with G = -log(E),
E ~ Exp(1): an exact draw from softmax(logits / T). Its noise is drawn in
blocks and, without top-k, added through the head's bias, so a draw costs one
argmax. As T -> 0 it becomes greedy decoding (argmax of the logits).

No autograd mode is left switched on between yields: the steppers work on
detached tensors, and the cell stepper enters `no_grad` inside each step only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from seqmodels.errors import UserError

NOISE_BLOCK = 256  # steps of Gumbel noise drawn at once


def check_sampling_args(length: int, temperature: float, top_k: int) -> None:
    """Raise `UserError`, in one line, for a length, temperature or top_k out of range."""
    if isinstance(length, bool) or not isinstance(length, int) or length < 0:
        raise UserError(f"length={length!r} must be an integer >= 0 (characters to generate)")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise UserError(f"temperature={temperature!r} must be a number > 0 (e.g. 0.8)")
    if not 0 < temperature < float("inf"):  # also refuses NaN
        raise UserError(
            f"temperature={temperature} must be > 0 (lower is more conservative, e.g. 0.8; "
            "for greedy decoding use a tiny value such as 1e-6)"
        )
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise UserError(f"top_k={top_k!r} must be an integer >= 0 (0 keeps every character)")


def default_prime(text: Any) -> str:
    """A neutral first character for `text` (`decode` and `vocab_size`, as a character
    datamodule has): a newline when its vocabulary has one, else its first character."""
    chars = text.decode(range(text.vocab_size))
    return "\n" if "\n" in chars else chars[0]


# -- steppers -----------------------------------------------------------------
class CellStepper:
    """Steps `encoder.cells` one token at a time (any unidirectional seqmodels.nn layer).

    Args:
        model: has `embedding`, `encoder` and `head` (see the module's docstring).
        state: the encoder's final state after the prime, batch 1, or None (zeros).
        temperature: divides the logits.
    """

    def __init__(self, model: Any, state: Any, temperature: float):
        self.model = model
        self.cells = list(model.encoder.cells)
        n = len(self.cells)
        if state is None:
            self.states: list[Any] = [None] * n
        elif isinstance(state, tuple):  # (h, c, ...): each (layers, 1, H)
            self.states = [tuple(s[k, 0][None] for s in state) for k in range(n)]
        else:
            self.states = [h[None] for h in state[:, 0]]
        self.head_weight = model.head.weight.detach() / temperature
        self.head_bias = _head_bias(model, temperature)

    def logits(self, token: int, head_bias: Tensor) -> Tensor:
        with torch.no_grad():
            x = self.model.embedding.weight[token][None]  # (1, E)
            for k, cell in enumerate(self.cells):
                x, self.states[k] = cell(x, self.states[k])
            return F.linear(x[0], self.head_weight, head_bias)


class FoldedLSTMStepper:
    """The LSTM step with layer 0's input product and 1/temperature folded in (see top).

    Args: as :class:`CellStepper`; the encoder must run torch's exact LSTM cells.
    """

    def __init__(self, model: Any, state: Any, temperature: float):
        enc = model.encoder
        H, L = enc.hidden_size, enc.num_layers
        cells = list(enc.cells)
        w0 = cells[0].i2h.weight.detach()
        E = cells[0].input_size
        table = torch.addmm(_bias(cells[0]), model.embedding.weight.detach(), w0[:, :E].t())
        self.rows = list(table.unbind(0))  # (V, 4H): layer 0's input product + bias per token
        self.head_weight = model.head.weight.detach() / temperature
        self.head_bias = _head_bias(model, temperature)
        # All hidden states in one buffer [h_0 | h_1 | ... ]: layer l reads its
        # cat(h_{l-1}, h_l) as the slice [(l-1)H, (l+1)H), which is exactly what
        # its i2h.weight multiplies. Every view is made once, here: a step then
        # costs only the GEMVs and a few in-place elementwise calls.
        self.h = w0.new_zeros(L * H)
        self.c = w0.new_zeros(L, H)
        if state is not None:
            self.h.copy_(state[0][:, 0].reshape(-1))
            self.c.copy_(state[1][:, 0])
        self.gates = g = w0.new_empty(4 * H)
        self.tmp = w0.new_empty(H)
        self.views = (g[: 2 * H], g[:H], g[H : 2 * H], g[2 * H : 3 * H], g[3 * H :])
        self.layers = []  # (weight, bias or None for layer 0, input view, c, h out)
        for layer, cell in enumerate(cells):
            if layer == 0:
                w, b, x = w0[:, E:], None, self.h[:H]  # W_hh0, a strided view read in place
            else:
                w, b, x = (
                    cell.i2h.weight.detach(),
                    _bias(cell),
                    self.h[(layer - 1) * H : (layer + 1) * H],
                )
            self.layers.append((w, b, x, self.c[layer], self.h[layer * H : (layer + 1) * H]))
        self.top = self.h[(L - 1) * H :]

    def logits(self, token: int, head_bias: Tensor) -> Tensor:
        g, tmp = self.gates, self.tmp
        g_if, g_i, g_f, g_g, g_o = self.views
        for w, b, x, c, h in self.layers:
            torch.addmv(self.rows[token] if b is None else b, w, x, out=g)
            # In place: i, f, o = sigmoid, g = tanh; c = f*c + i*g; h = o*tanh(c).
            g_if.sigmoid_()
            g_g.tanh_()
            g_o.sigmoid_()
            c.mul_(g_f).addcmul_(g_i, g_g)
            torch.mul(g_o, torch.tanh(c, out=tmp), out=h)
        return torch.addmv(head_bias, self.head_weight, self.top)


def _bias(cell: Any) -> Tensor:
    b = cell.i2h.bias
    w = cell.i2h.weight
    return b.detach() if b is not None else w.new_zeros(w.shape[0]).detach()


def _head_bias(model: Any, temperature: float) -> Tensor:
    b = model.head.bias
    w = model.head.weight.detach()
    return (b.detach() if b is not None else w.new_zeros(w.shape[0])) / temperature


def make_stepper(model: Any, state: Any = None, temperature: float = 1.0):
    """The fastest stepper that supports `model.encoder`: :class:`FoldedLSTMStepper` for
    torch's exact LSTM cells, else :class:`CellStepper`; a `UserError` for a layer without
    cells (a bidirectional one cannot be stepped)."""
    enc = model.encoder
    cells = list(getattr(enc, "cells", []))
    if not cells:
        raise UserError(
            f"cannot step a {type(enc).__name__} encoder one character at a time: "
            "use a seqmodels.nn layer (RNN, LSTM, GRU or Recurrent)"
        )
    if getattr(enc, "native_kernel", lambda: None)() == "lstm":  # torch's exact LSTM cells
        return FoldedLSTMStepper(model, state, temperature)
    return CellStepper(model, state, temperature)


# -- generation ---------------------------------------------------------------
def _gumbel(rows: int, cols: int, like: Tensor, generator: torch.Generator) -> Tensor:
    e = torch.empty(rows, cols, device=like.device, dtype=like.dtype)
    return e.exponential_(generator=generator).log_().neg_()


def generate(
    model: Any,
    prime: Tensor | list[int],
    length: int,
    temperature: float = 1.0,
    top_k: int = 0,
    seed: int | None = None,
) -> Iterator[int]:
    """Stream `length` token ids sampled after `prime`, one step of the cells per token.

    The prime runs once through the encoder (its own engine), then each new token is one
    step from the carried state. A draw is exact, from softmax(logits / temperature) (the
    Gumbel-max trick); as the temperature goes to 0 it becomes greedy decoding. The model's
    training mode and the autograd mode are left as they were.

    Args:
        model: has `embedding` (nn.Embedding), `encoder` (a unidirectional seqmodels.nn
            layer) and `head` (nn.Linear to the vocabulary).
        prime: the token ids to start from, at least one.
        length: how many tokens to generate.
        temperature: > 0; lower is more conservative. Default: 1.0
        top_k: sample among the k most likely tokens only; 0 keeps all. Default: 0
        seed: seeds the draws (the same seed gives the same stream); None draws a fresh one.

    Shape:
        - prime: `(P,)` or a list of P ints, `P >= 1`
        - Output: `length` ints

    Returns:
        an iterator over the new token ids. The arguments are checked at the call, so bad
        input raises here rather than at the first `next()`.

    Raises:
        UserError: a bad length, temperature, top_k or prime, or an encoder without cells.

    Example::

        >>> import torch
        >>> from torch import nn
        >>> from seqmodels.nn import LSTM, generate
        >>> class CharModel(nn.Module):
        ...     def __init__(self, vocab_size=20):
        ...         super().__init__()
        ...         self.embedding = nn.Embedding(vocab_size, 8)
        ...         self.encoder = LSTM(8, 16, num_layers=2)
        ...         self.head = nn.Linear(16, vocab_size)
        >>> ids = list(generate(CharModel(), prime=[3, 1, 4], length=10, temperature=0.8, seed=0))
        >>> len(ids), all(0 <= i < 20 for i in ids)
        (10, True)
    """
    check_sampling_args(length, temperature, top_k)
    prime = torch.as_tensor(prime, dtype=torch.long).flatten()
    if prime.numel() == 0:
        raise UserError("prime is empty: give at least one character to start from")
    v = vocab_size(model)
    if int(prime.min()) < 0 or int(prime.max()) >= v:
        raise UserError(f"prime has token ids outside [0, {v})")
    return _generate(model, prime, length, float(temperature), top_k, seed)


def _generate(
    model: Any, prime: Tensor, length: int, temperature: float, top_k: int, seed: int | None
) -> Iterator[int]:
    weight = model.head.weight
    device = weight.device
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(int(seed))

    # The prime, but its last token, runs once through the encoder's own engine;
    # the last token is the first input of the stepping loop.
    state = None
    if prime.numel() > 1:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            x = model.embedding(prime[None, :-1].to(device))
            _, state = model.encoder(x)
        model.train(was_training)
    stepper = make_stepper(model, state, temperature)
    k = 0 < top_k < vocab_size(model)

    token = int(prime[-1])
    noise = weight.new_empty(0)
    for i in range(length):
        row = i % NOISE_BLOCK
        if row == 0:
            noise = _gumbel(NOISE_BLOCK, stepper.head_bias.numel(), weight.detach(), generator)
            if not k:  # fold the noise into the head's bias: a draw is one argmax
                noise += stepper.head_bias
        if k:
            logits = stepper.logits(token, stepper.head_bias)
            kth = torch.topk(logits, top_k).values[-1]
            logits = logits.masked_fill(logits < kth, float("-inf")) + noise[row]
        else:
            logits = stepper.logits(token, noise[row])
        token = int(logits.argmax())
        yield token


def vocab_size(model: Any) -> int:
    """The number of tokens `model`'s head scores."""
    return model.head.out_features


def sample_text(
    model: Any,
    text: Any,
    prime: str,
    length: int,
    temperature: float = 1.0,
    top_k: int = 0,
    seed: int | None = None,
) -> Iterator[str]:
    """Stream `length` characters sampled after `prime`: :func:`generate` on text.

    Args:
        model: as :func:`generate`.
        text: turns characters into token ids and back: `encode(str) -> list[int]` (it
            raises for a character outside the vocabulary) and `decode(ids) -> str`, as a
            character datamodule has.
        prime: the text to start from, at least one character.
        length, temperature, top_k, seed: as :func:`generate`.

    Returns:
        an iterator over the new characters (strings of one character).

    Raises:
        UserError: an empty prime, and what :func:`generate` and `text.encode` raise.

    Example::

        >>> from torch import nn
        >>> from seqmodels.nn import LSTM, sample_text
        >>> class Chars:  # what `text` needs: encode and decode
        ...     chars = "abc "
        ...     def encode(self, s):
        ...         return [self.chars.index(c) for c in s]
        ...     def decode(self, ids):
        ...         return "".join(self.chars[i] for i in ids)
        >>> class CharModel(nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.embedding = nn.Embedding(4, 8)
        ...         self.encoder = LSTM(8, 16)
        ...         self.head = nn.Linear(16, 4)
        >>> text = "".join(sample_text(CharModel(), Chars(), "ab", length=12, seed=0))
        >>> len(text), set(text) <= set("abc ")
        (12, True)
    """
    if not prime:
        raise UserError("prime is empty: give at least one character, e.g. prime='ROMEO:'")
    ids = text.encode(prime)
    return (text.decode([t]) for t in generate(model, ids, length, temperature, top_k, seed))
