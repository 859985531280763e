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

Without input feeding the cell's input at step t is the token alone, so
teacher forcing needs no Python step per token: the cell runs over the whole
target in one call (a one-layer `Recurrent` sharing the decoder's cell, on any
engine: `native`, `fused`, `loop`, `auto`), then attention for every step in
batched products, then combine and the output layer for every step. With
input feeding h~_{t-1} is an input of step t, and teacher forcing steps the
cell token by token. `step` (the searches) computes the same numbers either way.

The decoder's running state is a `DecoderState`; `select` reorders or repeats
its rows, which beam search uses to follow its hypotheses (search.py), and
`reorder` moves them among the hypotheses of one source without copying the
source's keys.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from seqmodels.errors import UserError
from seqmodels.nn import engines
from seqmodels.nn.attention import Attention
from seqmodels.nn.cells import Cell
from seqmodels.nn.recurrent import ENGINES, Recurrent


class DecoderState(NamedTuple):
    """The running state of an :class:`AttentionDecoder`, one row per sequence decoded.

    Immutable: `step` returns a new one, so one encoding can serve several decodings.

    Attributes:
        cell: the cell's state, `h` `(B, H)` or a tuple `(h, c, ...)` of `(B, H)` tensors.
        feed: the previous step's attentional state h~ `(B, H)` (zeros at the start).
        keys: the encoder's states `(B, S, K)`.
        prepared: `attention.prepare(keys)`, computed once per source.
        mask: `(B, S)` bool, True at the valid source positions.
    """

    cell: Any
    feed: Tensor
    keys: Tensor
    prepared: Tensor
    mask: Tensor


def select_rows(value: Any, index: Tensor) -> Any:
    """Rows `index` (dim 0) of a tensor or of every tensor in a tuple (a cell's state)."""
    if isinstance(value, tuple):
        return tuple(select_rows(v, index) for v in value)
    return value.index_select(0, index)


class AttentionDecoder(nn.Module):
    """A decoder that steps any seqmodels.nn cell one token at a time, attending to the source.

    One step, from the previous token :math:`y_{t-1}` (Luong et al. 2015):

    .. math::
        \\begin{array}{ll}
        x_t = [\\text{embed}(y_{t-1}); \\tilde h_{t-1}] & \\text{(}\\tilde h_{t-1}
            \\text{ only with input feeding)} \\\\
        h_t = \\text{cell}(x_t, \\text{state}_{t-1}) \\\\
        c_t, a_t = \\text{attention}(h_t, \\text{keys}, \\text{mask}) \\\\
        \\tilde h_t = \\tanh(W_c [c_t; h_t]) \\\\
        p(y_t) = \\text{softmax}(W_o \\tilde h_t)
        \\end{array}

    `start(keys, mask)` makes the first state: the cell's h is
    :math:`\\tanh(W_b \\cdot \\text{mean of the valid keys})`, the rest of its state (an
    LSTM's c) zero. `forward` is teacher forcing over a whole target; `step` is one token,
    for :func:`~seqmodels.nn.greedy_search` and :func:`~seqmodels.nn.beam_search`, which
    also use `select`, `batch_size` and `device`. Without input feeding, `forward` runs the
    cell over the whole target in one call on `engine` and attends for every step at once
    (no Python step per token); with it, `forward` steps token by token.

    Args:
        vocab_size: V, the number of target tokens.
        embedding_dim: the size of a target token's embedding.
        cell: builds the cell as `cell(input_size, hidden_size)`: a :class:`~seqmodels.nn.Cell`
            class (`LSTMCell`, `GRUCell`, one's own) or a `functools.partial` of one.
        hidden_size: H, the cell's hidden size, also the attentional state's.
        key_size: K, the features of an encoder state.
        attention: builds the attention as `attention(query_size=H, key_size=K)`: an
            :class:`~seqmodels.nn.Attention` class or a partial of one.
        input_feeding: feed the previous step's attentional state to the cell with the token,
            so it knows what it has already attended to. Default: ``True``
        engine: how `forward` runs the cell over the target without input feeding:
            ``"auto"``, ``"loop"``, ``"fused"`` or ``"native"``, as
            :class:`~seqmodels.nn.Recurrent`. Default: ``"auto"``
        dropout: on the token embeddings and on h~ before the output layer. Default: 0
        padding_idx: the target padding token: its embedding is zero and gets no gradient.
            Default: 0

    Shape:
        - `start`: keys `(B, S, K)`, mask `(B, S)` bool -> a :class:`DecoderState` of B rows
        - `forward`: inputs `(B, U)` token ids (BOS, then the target shifted by one), a state
          -> logits `(B, U, V)` and attention weights `(B, U, S)`
        - `step`: tokens `(B,)`, a state -> logits `(B, V)`, the next state, weights `(B, S)`

    Example::

        >>> import torch
        >>> from seqmodels.nn import AttentionDecoder, LSTMCell, MultiplicativeAttention
        >>> decoder = AttentionDecoder(
        ...     vocab_size=10, embedding_dim=8, cell=LSTMCell, hidden_size=16, key_size=12,
        ...     attention=MultiplicativeAttention,
        ... )
        >>> keys = torch.randn(2, 7, 12)  # the encoder's states
        >>> mask = torch.ones(2, 7, dtype=torch.bool)
        >>> logits, weights = decoder(torch.randint(0, 10, (2, 5)), decoder.start(keys, mask))
        >>> logits.shape, weights.shape
        (torch.Size([2, 5, 10]), torch.Size([2, 5, 7]))
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
        padding_idx: int | None = 0,
        engine: str = "auto",
    ) -> None:
        super().__init__()
        if engine not in ENGINES:
            raise UserError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
        self.hidden_size, self.input_feeding = hidden_size, input_feeding
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=padding_idx)
        self.cell = cell(embedding_dim + (hidden_size if input_feeding else 0), hidden_size)
        if not isinstance(self.cell, Cell):
            raise TypeError(
                f"the decoder's cell must be a seqmodels.nn.Cell, got {type(self.cell)}"
            )
        # The layer that runs self.cell over a whole target (no input feeding), kept out of
        # the module tree: it owns no parameter of its own, and the state_dict keeps the
        # decoder's keys. A cell with an i2o head is not a layer's cell: engines.run_loop.
        self._unrolled: Recurrent | None = None
        if not input_feeding and self.cell.i2o is None:
            layer = Recurrent(
                lambda input_size, hidden_size, bias: self.cell,
                embedding_dim,
                hidden_size,
                bias=self.cell.bias,
                engine=engine,
            )
            layer.cell = type(self.cell)  # what its repr and messages name; no lambda kept
            object.__setattr__(self, "_unrolled", layer)
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
        if not self.input_feeding:
            return self._forward_unrolled(inputs, state)
        attended, weights = [], []
        for embedded in self.dropout(self.embedding(inputs)).unbind(1):  # unbind: no O(U^2) grads
            a, state, w = self._advance(embedded, state)
            attended.append(a)
            weights.append(w)
        # One output product for all steps: the vocabulary projection is the largest matmul.
        return self.out(self.dropout(torch.stack(attended, 1))), torch.stack(weights, 1)

    def _forward_unrolled(self, inputs: Tensor, state: DecoderState) -> tuple[Tensor, Tensor]:
        """Teacher forcing without input feeding: the cell over the whole target in one call,
        then attention, combine and the output layer for every step at once."""
        embedded = self.dropout(self.embedding(inputs))  # (B, U, E)
        if self._unrolled is None:
            hs, _ = engines.run_loop(self.cell, embedded, state.cell, None)
        else:
            self._unrolled.training = self.training  # outside the tree: train() does not reach
            cell = state.cell
            h0 = tuple(s.unsqueeze(0) for s in cell) if isinstance(cell, tuple) else cell[None]
            hs, _ = self._unrolled(embedded, h0)  # (B, U, H)
        context, weights = self.attention(hs, state.keys, state.prepared, state.mask)
        attended = torch.tanh(self.combine(torch.cat((context, hs), -1)))
        return self.out(self.dropout(attended)), weights

    @staticmethod
    def select(state: DecoderState, index: Tensor) -> DecoderState:
        """The state of rows `index` (beam search: repeat each source, follow hypotheses)."""
        return DecoderState(*(select_rows(v, index) for v in state))

    @staticmethod
    def reorder(state: DecoderState, index: Tensor) -> DecoderState:
        """`select` for an `index` that moves rows only among rows of the same source (beam
        search following its hypotheses): the source's keys and mask stay where they are."""
        return state._replace(cell=select_rows(state.cell, index), feed=state.feed[index])

    @staticmethod
    def source_mask(state: DecoderState) -> Tensor:
        """The source positions (B, S) bool the next step attends to (at the start: the valid
        ones), for the searches' `attention_window` and `eos_margin`."""
        return state.mask

    @staticmethod
    def with_source_mask(state: DecoderState, mask: Tensor) -> DecoderState:
        """The state whose next steps attend only where `mask` (B, S) bool is True (the
        searches' `attention_window`; each row needs one True)."""
        return state._replace(mask=mask)

    @staticmethod
    def batch_size(state: DecoderState) -> int:
        """The number of rows (sequences being decoded) of `state`."""
        return state.keys.shape[0]

    @staticmethod
    def device(state: DecoderState) -> torch.device:
        """Where `state` lives: the searches put their token tensors there."""
        return state.keys.device
