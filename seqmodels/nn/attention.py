"""Attention over encoder states: additive (Bahdanau) and multiplicative (Luong "general").

Both take the decoder's query (B, Q), the encoder's states as keys (B, S, K)
and a mask (B, S) of valid source positions, and return the context (B, K),
the weights' sum of the keys, and the weights (B, S). Padded positions get
weight exactly 0 and the weights sum to 1 over the valid ones. A query of
every step at once, (B, U, Q), gives contexts (B, U, K) and weights
(B, U, S) in batched products: teacher forcing without input feeding attends
for the whole target in one call.

The part of the score that depends only on the keys is computed once per
source (`prepare`), not once per decoder step: for additive attention that is
W_k k, the bulk of its cost.

    additive:        score(q, k) = v . tanh(W_q q + W_k k)      (Bahdanau et al. 2015)
    multiplicative:  score(q, k) = (W q) . k                    (Luong et al. 2015, "general")
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def masked_softmax(scores: Tensor, mask: Tensor) -> Tensor:
    """Softmax over the last dimension counting only positions where `mask` is True.

    Args:
        scores: the scores, any shape `(..., S)`.
        mask: bool, the same shape; True where a position counts. Each row needs one True
            (a row with none gives NaN).

    Returns:
        the weights, `scores`' shape: exactly 0 where `mask` is False, summing to 1 over the rest.

    Example::

        >>> import torch
        >>> from seqmodels.nn.attention import masked_softmax
        >>> masked_softmax(torch.zeros(1, 3), torch.tensor([[True, True, False]]))
        tensor([[0.5000, 0.5000, 0.0000]])
    """
    return scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)


class Attention(nn.Module):
    """The base class of attention over a source: `prepare(keys)` once, then `forward` per step.

    A subclass defines `score(query, prepared)`, the unnormalised score of every source
    position, and may override `prepare` to compute once per source what `score` needs from
    the keys (the default passes the keys through). `forward` turns the scores into weights
    with :func:`masked_softmax` and returns the weighted sum of the keys.

    `forward` also takes the queries of U steps at once, `(B, U, Q)`: their scores come from
    `score_steps(queries, prepared)`, which by default calls `score` once per step; a subclass
    that can score every step in one batched product overrides it (both built-in ones do).

    Args:
        query_size: Q, the features of the query (the decoder's hidden state).
        key_size: K, the features of a key (an encoder state).

    Shape:
        - query: `(B, Q)`, or `(B, U, Q)` for U steps at once
        - keys: `(B, S, K)`, the encoder's states
        - prepared: what `prepare(keys)` returned, `(B, S, *)`
        - mask: `(B, S)` bool, True at the valid (non-padded) source positions
        - Output: context `(B, K)` and weights `(B, S)`; for U steps `(B, U, K)` and
          `(B, U, S)`

    Returns:
        `(context, weights)`: the weights sum to 1 over the valid positions and are exactly 0
        at padded ones; the context is the weights' sum of the keys.

    Example::

        >>> import torch
        >>> from seqmodels.nn import Attention
        >>> class DotAttention(Attention):  # Luong's "dot": needs Q == K
        ...     def score(self, query, prepared):
        ...         return torch.bmm(prepared, query.unsqueeze(-1)).squeeze(-1)
        >>> attention = DotAttention(query_size=4, key_size=4)
        >>> keys, mask = torch.randn(2, 5, 4), torch.ones(2, 5, dtype=torch.bool)
        >>> context, weights = attention(torch.randn(2, 4), keys, attention.prepare(keys), mask)
        >>> context.shape, weights.shape
        (torch.Size([2, 4]), torch.Size([2, 5]))
    """

    def __init__(self, query_size: int, key_size: int) -> None:
        super().__init__()
        self.query_size, self.key_size = query_size, key_size

    def prepare(self, keys: Tensor) -> Tensor:
        """What `score` needs from the keys `(B, S, K)`, computed once per source: `(B, S, *)`."""
        return keys

    def score(self, query: Tensor, prepared: Tensor) -> Tensor:
        """The unnormalised scores `(B, S)` of the query `(B, Q)` against every position."""
        raise NotImplementedError

    def score_steps(self, queries: Tensor, prepared: Tensor) -> Tensor:
        """The scores `(B, U, S)` of the queries of U steps `(B, U, Q)`: `score` per step,
        unless a subclass scores them all in one product."""
        return torch.stack([self.score(q, prepared) for q in queries.unbind(1)], 1)

    def forward(
        self, query: Tensor, keys: Tensor, prepared: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        if query.dim() == 3:  # U steps at once
            weights = masked_softmax(self.score_steps(query, prepared), mask.unsqueeze(1))
            return torch.bmm(weights, keys), weights  # (B, U, K), (B, U, S)
        weights = masked_softmax(self.score(query, prepared), mask)  # (B, S)
        context = torch.bmm(weights.unsqueeze(1), keys).squeeze(1)  # (B, K)
        return context, weights


class AdditiveAttention(Attention):
    """Bahdanau's attention: a one-hidden-layer network scores each (query, key) pair.

    .. math::
        \\text{score}(q, k) = v^\\top \\tanh(W_q q + W_k k + b)

    `prepare` computes :math:`W_k k + b` once per source, the bulk of the cost.

    Args:
        query_size: Q, the features of the query.
        key_size: K, the features of a key.
        attention_size: the hidden layer's width. Default: 128

    Shape:
        As :class:`Attention`: query `(B, Q)`, keys `(B, S, K)`, mask `(B, S)`;
        context `(B, K)`, weights `(B, S)`. Queries of U steps `(B, U, Q)` give
        `(B, U, K)` and `(B, U, S)`.

    Returns:
        `(context, weights)`, as :class:`Attention`.

    Example::

        >>> import torch
        >>> from seqmodels.nn import AdditiveAttention
        >>> attention = AdditiveAttention(query_size=8, key_size=6, attention_size=16)
        >>> keys = torch.randn(2, 5, 6)
        >>> mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
        >>> context, weights = attention(torch.randn(2, 8), keys, attention.prepare(keys), mask)
        >>> weights[1, 2:].sum().item(), round(weights[1].sum().item(), 5)
        (0.0, 1.0)
    """

    def __init__(self, query_size: int, key_size: int, attention_size: int = 128) -> None:
        super().__init__(query_size, key_size)
        self.query_proj = nn.Linear(query_size, attention_size, bias=False)
        self.key_proj = nn.Linear(key_size, attention_size)
        self.v = nn.Linear(attention_size, 1, bias=False)

    def prepare(self, keys: Tensor) -> Tensor:
        return self.key_proj(keys)

    def score(self, query: Tensor, prepared: Tensor) -> Tensor:
        return self.v(torch.tanh(prepared + self.query_proj(query).unsqueeze(1))).squeeze(-1)

    def score_steps(self, queries: Tensor, prepared: Tensor) -> Tensor:
        # (B, U, S, A): every step against every position, one tanh and one product
        hidden = torch.tanh(prepared.unsqueeze(1) + self.query_proj(queries).unsqueeze(2))
        return self.v(hidden).squeeze(-1)


class MultiplicativeAttention(Attention):
    """Luong's "general" attention: a bilinear form, one batched product per step.

    .. math::
        \\text{score}(q, k) = (W q)^\\top k

    W is applied to the query (once per step), not to every key.

    Args:
        query_size: Q, the features of the query.
        key_size: K, the features of a key.

    Shape:
        As :class:`Attention`: query `(B, Q)`, keys `(B, S, K)`, mask `(B, S)`;
        context `(B, K)`, weights `(B, S)`. Queries of U steps `(B, U, Q)` give
        `(B, U, K)` and `(B, U, S)`.

    Returns:
        `(context, weights)`, as :class:`Attention`.

    Example::

        >>> import torch
        >>> from seqmodels.nn import MultiplicativeAttention
        >>> attention = MultiplicativeAttention(query_size=8, key_size=6)
        >>> keys, mask = torch.randn(2, 5, 6), torch.ones(2, 5, dtype=torch.bool)
        >>> context, weights = attention(torch.randn(2, 8), keys, attention.prepare(keys), mask)
        >>> context.shape, weights.shape
        (torch.Size([2, 6]), torch.Size([2, 5]))
    """

    def __init__(self, query_size: int, key_size: int) -> None:
        super().__init__(query_size, key_size)
        self.query_proj = nn.Linear(query_size, key_size, bias=False)

    def score(self, query: Tensor, prepared: Tensor) -> Tensor:
        return torch.bmm(prepared, self.query_proj(query).unsqueeze(-1)).squeeze(-1)

    def score_steps(self, queries: Tensor, prepared: Tensor) -> Tensor:
        return torch.bmm(self.query_proj(queries), prepared.transpose(1, 2))
