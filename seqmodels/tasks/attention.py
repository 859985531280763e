"""Attention over encoder states: additive (Bahdanau) and multiplicative (Luong "general").

Both take the decoder's query (B, Q), the encoder's states as keys (B, S, K)
and a mask (B, S) of valid source positions, and return the context (B, K),
the weights' sum of the keys, and the weights (B, S). Padded positions get
weight exactly 0 and the weights sum to 1 over the valid ones.

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
    """Softmax over the last dimension counting only positions where mask is True."""
    return scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)


class Attention(nn.Module):
    """What both kinds share: `prepare(keys)` once, then `forward` per decoder step."""

    def __init__(self, query_size: int, key_size: int) -> None:
        super().__init__()
        self.query_size, self.key_size = query_size, key_size

    def prepare(self, keys: Tensor) -> Tensor:
        """What `score` needs from the keys, computed once per source: (B, S, ·)."""
        return keys

    def score(self, query: Tensor, prepared: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(
        self, query: Tensor, keys: Tensor, prepared: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        weights = masked_softmax(self.score(query, prepared), mask)  # (B, S)
        context = torch.bmm(weights.unsqueeze(1), keys).squeeze(1)  # (B, K)
        return context, weights


class AdditiveAttention(Attention):
    """Bahdanau's: a one-hidden-layer network scores each (query, key) pair."""

    def __init__(self, query_size: int, key_size: int, attention_size: int = 128) -> None:
        super().__init__(query_size, key_size)
        self.query_proj = nn.Linear(query_size, attention_size, bias=False)
        self.key_proj = nn.Linear(key_size, attention_size)
        self.v = nn.Linear(attention_size, 1, bias=False)

    def prepare(self, keys: Tensor) -> Tensor:
        return self.key_proj(keys)

    def score(self, query: Tensor, prepared: Tensor) -> Tensor:
        return self.v(torch.tanh(prepared + self.query_proj(query).unsqueeze(1))).squeeze(-1)


class MultiplicativeAttention(Attention):
    """Luong's "general": a bilinear form; with W applied to the query, one bmm per step."""

    def __init__(self, query_size: int, key_size: int) -> None:
        super().__init__(query_size, key_size)
        self.query_proj = nn.Linear(query_size, key_size, bias=False)

    def score(self, query: Tensor, prepared: Tensor) -> Tensor:
        return torch.bmm(prepared, self.query_proj(query).unsqueeze(-1)).squeeze(-1)
