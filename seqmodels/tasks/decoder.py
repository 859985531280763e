"""AttentionDecoder: any seqmodels.nn cell stepped one token at a time, attending to the source.

One step, from the previous token y_{t-1} (Luong et al. 2015):

    x_t  = [embed(y_{t-1}); h~_{t-1}]        (h~_{t-1} only with input feeding)
    h_t  = cell(x_t, state_{t-1})            (any seqmodels.nn Cell: LSTM, GRU, one's own)
    c_t, a_t = attention(h_t, encoder states, mask)
    h~_t = tanh(W_c [c_t; h_t])              (the attentional hidden state)
    p(y_t) = softmax(W_o h~_t)

Input feeding gives the cell the previous step's attentional state, so it knows
what it has already attended to (which letters it has already pronounced).
The cell's first h is tanh(W_b mean(encoder states)) over valid source
positions; the rest of its state (an LSTM's c) starts at zero.

The decoder's running state is a `DecoderState`; `select` reorders or repeats
its rows, which beam search uses to follow its hypotheses (search.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from seqmodels.nn import Cell
from seqmodels.tasks.attention import Attention


class DecoderState(NamedTuple):
    cell: Any  # the cell's state: h (B, H), or a tuple (h, c, ...)
    feed: Tensor  # h~ of the previous step (B, A) (zeros at the start)
    keys: Tensor  # encoder states (B, S, K)
    prepared: Tensor  # attention.prepare(keys)
    mask: Tensor  # (B, S) valid source positions


def select_rows(value: Any, index: Tensor) -> Any:
    """Rows `index` (dim 0) of a tensor or of every tensor in a tuple (a cell's state)."""
    if isinstance(value, tuple):
        return tuple(select_rows(v, index) for v in value)
    return value.index_select(0, index)


class AttentionDecoder(nn.Module):
    """See the module docstring.

    Args:
        vocab_size: target tokens (PAD 0 is never an input that matters).
        embedding_dim: size of a target token's embedding.
        cell: builds the cell, `cell(input_size, hidden_size)` (a Cell class or partial).
        hidden_size: the cell's hidden size, also the attentional state's.
        key_size: features per encoder step.
        attention: builds the attention, `attention(query_size=, key_size=)`.
        input_feeding: feed h~_{t-1} to the cell with the token.
        dropout: on the token embeddings and on h~ before the output layer.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_dim: int,
        cell: Callable[..., Cell],
        hidden_size: int,
        key_size: int,
        attention: Callable[..., Attention],
        input_feeding: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.hidden_size, self.input_feeding = hidden_size, input_feeding
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=0)
        self.cell = cell(embedding_dim + (hidden_size if input_feeding else 0), hidden_size)
        if not isinstance(self.cell, Cell):
            raise TypeError(
                f"the decoder's cell must be a seqmodels.nn.Cell, got {type(self.cell)}"
            )
        self.attention = attention(query_size=hidden_size, key_size=key_size)
        self.bridge = nn.Linear(key_size, hidden_size)
        self.combine = nn.Linear(key_size + hidden_size, hidden_size, bias=False)
        self.out = nn.Linear(hidden_size, vocab_size)
        self.dropout = nn.Dropout(dropout)

    def start(self, keys: Tensor, mask: Tensor) -> DecoderState:
        """The state before the first token, from the encoder's states (B, S, K) and mask."""
        valid = mask.unsqueeze(-1).to(keys.dtype)
        mean = (keys * valid).sum(1) / valid.sum(1).clamp(min=1)
        h = torch.tanh(self.bridge(mean))
        zero = self.cell.init_state(keys.shape[0], keys.device, keys.dtype)
        cell = h if self.cell.state_size == 1 else (h, *zero[1:])
        feed = torch.zeros_like(h)
        return DecoderState(cell, feed, keys, self.attention.prepare(keys), mask)

    def _advance(
        self, embedded: Tensor, state: DecoderState
    ) -> tuple[Tensor, DecoderState, Tensor]:
        """(h~_t, the next state, the attention weights) from an embedded token."""
        x = torch.cat((embedded, state.feed), -1) if self.input_feeding else embedded
        h, cell = self.cell(x, state.cell)
        context, weights = self.attention(h, state.keys, state.prepared, state.mask)
        attended = torch.tanh(self.combine(torch.cat((context, h), -1)))
        return attended, state._replace(cell=cell, feed=attended), weights

    def step(self, tokens: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState, Tensor]:
        """(logits (B, V), the next state, attention weights (B, S)) after tokens (B,)."""
        attended, state, weights = self._advance(self.dropout(self.embedding(tokens)), state)
        return self.out(self.dropout(attended)), state, weights

    def forward(self, inputs: Tensor, state: DecoderState) -> tuple[Tensor, Tensor]:
        """Teacher forcing: logits (B, U, V) and attention weights (B, U, S) for the given
        input tokens (B, U) (BOS, then the target shifted by one)."""
        attended, weights = [], []
        for embedded in self.dropout(self.embedding(inputs)).unbind(1):  # unbind: no O(U^2) grads
            a, state, w = self._advance(embedded, state)
            attended.append(a)
            weights.append(w)
        # One output product for all steps: the vocabulary projection is the largest matmul.
        return self.out(self.dropout(torch.stack(attended, 1))), torch.stack(weights, 1)

    @staticmethod
    def select(state: DecoderState, index: Tensor) -> DecoderState:
        """The state of rows `index` (beam search: repeat each source, follow hypotheses)."""
        return DecoderState(*(select_rows(v, index) for v in state))
