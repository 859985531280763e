"""Decoding a trained decoder: greedy search and batched beam search.

Both drive any decoder with the AttentionDecoder's interface (`SearchDecoder`):
`step(tokens, state) -> (logits, state, weights)`, `select(state, index)`, and
`batch_size(state)` and `device(state)`: the decoder says how many sequences its
state holds and where, so the searches assume nothing about the state's layout.
The special token ids (`bos`, `eos`) are arguments, as in fairseq and OpenNMT:
they belong to the vocabulary, not to the search.

A hypothesis is the list of its token ids without the final EOS; its score is
the sum of its tokens' log-probabilities, EOS included.

Beam search keeps `beam_size` hypotheses per source, all sources of a batch
at once (B * beam_size rows per step). At each step the best 2 * beam_size
expansions are ranked: an expansion ending in EOS among the first beam_size
is finished, and the best beam_size that do not end go on. A source is done
once it has beam_size finished hypotheses (fairseq's rule), or at `max_len`
steps, where its unfinished ones join the finished if it has fewer than
nbest. Finished hypotheses are ranked by score / length ** length_penalty
(length counts EOS): 0 ranks by the raw sum, which favours short outputs; 1 by
the mean log-probability per token. With beam_size 1 this is greedy search.

Both searches can hold the attention to the source's order, for a decoder that
can say its source mask and attend within a narrower one (`source_mask`,
`with_source_mask`; the AttentionDecoder can), with no retraining:
`attention_window=(back, ahead)` lets each step attend only from `back`
positions before to `ahead` after the furthest position attended so far (the
argmax of each earlier step's weights), so the attention cannot jump over the
middle of a long source; `eos_margin=m` forbids EOS until that furthest
position is within `m` of the source's last. A model whose training sources
were all shorter than the one it reads may otherwise attend to the source's
end too soon and stop: a G2P model trained on words of at most 20 letters (but
one) pronounced `supercalifragilisticexpialidocious` (34) as 14 phones, its
attention jumping from the 14th letter to the last. Both off (None, the
default), the searches are what they always were.

Both searches keep everything in tensors while they run (beam search's
finished hypotheses in a per-source buffer of scores, tokens and lengths,
written with scatter): no Python per hypothesis or per source, and one
conversion to lists at the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

import torch
from torch import Tensor


class SearchDecoder(Protocol):
    """What the searches need from a decoder (:class:`~seqmodels.nn.AttentionDecoder` has it).

    The state is whatever the decoder keeps between steps; the searches only pass it back,
    and ask the decoder how many rows it has and where it lives. The searches'
    `attention_window` and `eos_margin` also need `source_mask(state)` (the valid source
    positions, `(B, S)` bool) and, for the window, `with_source_mask(state, mask)` (the state
    whose next step attends only where `mask` is True); without them those two options are
    an error, and a decoder need not have them otherwise.
    """

    def step(self, tokens: Tensor, state: Any) -> tuple[Tensor, Any, Tensor]:
        """(logits `(B, V)`, the next state, attention weights `(B, S)`) after tokens `(B,)`."""
        ...

    def select(self, state: Any, index: Tensor) -> Any:
        """The state of rows `index` (a 1-D long tensor on the state's device)."""
        ...

    def batch_size(self, state: Any) -> int:
        """The number of rows of `state`."""
        ...

    def device(self, state: Any) -> torch.device:
        """The device of `state`, where the searches put their token tensors."""
        ...


class GreedyResult(NamedTuple):
    """What :func:`greedy_search` found.

    Attributes:
        tokens: per source, the output's token ids without EOS.
        scores: `(B,)`, the sum of each output's log-probabilities, EOS included.
        weights: `(B, L, S)`, the attention weights of every output step (EOS included;
            L is the number of steps taken).
    """

    tokens: list[list[int]]
    scores: Tensor
    weights: Tensor


def greedy_search(
    decoder: SearchDecoder,
    state: Any,
    max_len: int,
    *,
    bos: int,
    eos: int,
    attention_window: Sequence[int] | None = None,
    eos_margin: int | None = None,
) -> GreedyResult:
    """Decode by taking the most likely token at every step, until EOS or `max_len` tokens.

    Args:
        decoder: a :class:`SearchDecoder`, e.g. an :class:`~seqmodels.nn.AttentionDecoder`.
        state: the decoder's state before the first token (B rows), e.g. `decoder.start(...)`.
        max_len: the most tokens an output has, EOS included.
        bos: the token fed first.
        eos: the token that ends an output. (No padding id: a row that has ended is cut at
            its EOS, whatever it holds while the others go on.)
        attention_window: `(back, ahead)`: each step attends only to the source positions
            from `back` before to `ahead` after the furthest one attended so far (the
            argmax of every earlier step's weights; the first position at the start).
            None: anywhere. Needs the decoder's `source_mask` and `with_source_mask`.
            Default: None
        eos_margin: EOS is allowed only once the furthest attended position is within
            `eos_margin` positions of the source's last (0: the last itself). None: always.
            Needs the decoder's `source_mask`. Default: None

    Shape:
        - state: B rows
        - Output: `scores` `(B,)`, `weights` `(B, L, S)` with L <= max_len

    Returns:
        a :class:`GreedyResult`: the tokens (without EOS), scores and attention weights.

    Example::

        >>> import torch
        >>> from seqmodels.nn import AttentionDecoder, GRUCell, MultiplicativeAttention
        >>> from seqmodels.nn import greedy_search
        >>> decoder = AttentionDecoder(10, 8, GRUCell, 16, 12, MultiplicativeAttention).eval()
        >>> state = decoder.start(torch.randn(3, 7, 12), torch.ones(3, 7, dtype=torch.bool))
        >>> with torch.no_grad():
        ...     found = greedy_search(decoder, state, max_len=20, bos=1, eos=2)
        >>> len(found.tokens), found.scores.shape
        (3, torch.Size([3]))
    """
    batch = decoder.batch_size(state)
    device = decoder.device(state)
    token = torch.full((batch,), bos, dtype=torch.long, device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    scores = torch.zeros(batch, device=device)
    steps, weights = [], []
    constraint = SourceOrder.of(decoder, state, attention_window, eos_margin, eos)
    for _ in range(max_len):
        if constraint is not None:
            state = constraint.restrict(state)
        logits, state, w = decoder.step(token, state)
        logp = logits.float().log_softmax(-1)
        if constraint is not None:
            logp = constraint.attended(w, logp)
        best, token = logp.max(-1)
        scores += best.masked_fill(finished, 0.0)
        steps.append(token)  # what follows a row's EOS is cut below
        weights.append(w)
        finished |= token == eos
        if bool(finished.all()):
            break
    out = torch.stack(steps, 1).tolist()
    tokens = [row[: row.index(eos)] if eos in row else row for row in out]
    return GreedyResult(tokens, scores, torch.stack(weights, 1))


def beam_search(
    decoder: SearchDecoder,
    state: Any,
    beam_size: int,
    max_len: int,
    length_penalty: float = 1.0,
    nbest: int = 1,
    *,
    bos: int,
    eos: int,
    attention_window: Sequence[int] | None = None,
    eos_margin: int | None = None,
) -> list[list[tuple[list[int], float]]]:
    """Decode every source of a batch at once, keeping its `beam_size` best hypotheses.

    At each step the best 2 * beam_size expansions of a source are ranked; those ending in
    EOS among its first beam_size are finished, the best beam_size others go on. A source is
    done once it has beam_size finished hypotheses, or at `max_len` steps, where its
    unfinished ones compete too if it has fewer than nbest finished. Hypotheses are ranked by
    `score / length ** length_penalty` (length counts EOS). `beam_size=1` is greedy search.

    Args:
        decoder: a :class:`SearchDecoder`, e.g. an :class:`~seqmodels.nn.AttentionDecoder`.
            If it has `reorder(state, index)` (the AttentionDecoder does), the search calls
            it instead of `select` where rows move only among the hypotheses of one source,
            so that what is the same for all of them need not be copied.
        state: the decoder's state before the first token (B rows), e.g. `decoder.start(...)`.
        beam_size: the hypotheses kept per source.
        max_len: the most tokens a hypothesis has, EOS included.
        length_penalty: 0 ranks by the sum of log-probabilities (favours short outputs),
            1 by the mean log-probability per token. Default: 1.0
        nbest: how many hypotheses to return per source, `1 <= nbest <= beam_size`. Default: 1
        bos: the token fed first.
        eos: the token that ends a hypothesis.
        attention_window: `(back, ahead)`: each hypothesis' step attends only to the source
            positions from `back` before to `ahead` after the furthest one it attended so
            far (as in :func:`greedy_search`). None: anywhere. Default: None
        eos_margin: a hypothesis may end only once its furthest attended position is within
            `eos_margin` of the source's last (as in :func:`greedy_search`). Default: None

    Shape:
        - state: B rows (the search repeats each `beam_size` times with `decoder.select`)
        - Output: a list of B lists of `nbest` hypotheses

    Returns:
        per source, its `nbest` best hypotheses as `(token ids without EOS, normalised score)`,
        best first.

    Raises:
        ValueError: unless `1 <= nbest <= beam_size`, or if `attention_window` or `eos_margin`
            is negative or the decoder cannot restrict its attention.

    Example::

        >>> import torch
        >>> from seqmodels.nn import AttentionDecoder, GRUCell, MultiplicativeAttention
        >>> from seqmodels.nn import beam_search
        >>> decoder = AttentionDecoder(10, 8, GRUCell, 16, 12, MultiplicativeAttention).eval()
        >>> state = decoder.start(torch.randn(3, 7, 12), torch.ones(3, 7, dtype=torch.bool))
        >>> with torch.no_grad():
        ...     found = beam_search(decoder, state, beam_size=4, max_len=20, nbest=2, bos=1, eos=2)
        >>> len(found), len(found[0])
        (3, 2)
        >>> tokens, score = found[0][0]  # the best hypothesis of the first source
    """
    if beam_size < 1 or not 1 <= nbest <= beam_size:
        raise ValueError(f"beam_size={beam_size} and nbest={nbest}: need 1 <= nbest <= beam_size")
    batch, k = decoder.batch_size(state), beam_size
    device = decoder.device(state)
    rows = torch.arange(batch, device=device)
    state = decoder.select(state, rows.repeat_interleave(k))
    reorder = getattr(decoder, "reorder", decoder.select)
    constraint = SourceOrder.of(decoder, state, attention_window, eos_margin, eos)
    scores = torch.full((batch, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # one live hypothesis per source at the start, not k copies of it
    history = torch.zeros((batch, k, 0), dtype=torch.long, device=device)
    token = torch.full((batch * k,), bos, dtype=torch.long, device=device)
    # The finished hypotheses, per source in the order found: fewer than k before a step and
    # at most k more in it (or, at max_len, fewer than nbest and k unfinished), so 2k slots.
    # The extra last slot takes the writes of the expansions that did not finish.
    slots = 2 * k
    found = Finished(
        scores=torch.full((batch, slots + 1), float("-inf"), dtype=torch.float64, device=device),
        tokens=torch.zeros((batch, slots + 1, max_len), dtype=torch.long, device=device),
        lengths=torch.zeros((batch, slots + 1), dtype=torch.long, device=device),
    )
    count = torch.zeros(batch, dtype=torch.long, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    ranks = torch.arange(2 * k, device=device)

    for t in range(max_len):
        if constraint is not None:
            state = constraint.restrict(state)
        logits, state, weights = decoder.step(token, state)
        logp = logits.float().log_softmax(-1)
        if constraint is not None:
            logp = constraint.attended(weights, logp)
        vocab = logp.shape[-1]
        expanded = (scores.unsqueeze(-1) + logp.view(batch, k, vocab)).view(batch, -1)
        top, index = expanded.topk(min(2 * k, k * vocab), dim=-1)  # (B, 2k), best first
        beam, tok = index // vocab, index % vocab
        ends = tok == eos
        # Finished: EOS among the first k expansions of a source not yet done.
        hits = ends[:, :k] & torch.isfinite(top[:, :k]) & ~done.unsqueeze(1)
        sequences = history.gather(1, beam[:, :k].unsqueeze(-1).expand(-1, -1, t))
        count = found.add(hits, count, top[:, :k], t + 1, length_penalty, sequences)
        # Going on: the best k expansions that do not end (there are always k: at most k end).
        keep = torch.argsort(ends.long() * len(ranks) + ranks[: ends.shape[1]], dim=-1)[:, :k]
        keep_beam, keep_tok = beam.gather(1, keep), tok.gather(1, keep)
        scores = top.gather(1, keep)
        history = torch.cat(
            (history.gather(1, keep_beam.unsqueeze(-1).expand(-1, -1, t)), keep_tok.unsqueeze(-1)),
            dim=2,
        )
        # Rows move only among the hypotheses of one source: a decoder that can say what is
        # the same for all of them (the source's encoding) keeps that in place (`reorder`).
        followed = (rows.unsqueeze(1) * k + keep_beam).view(-1)
        state = reorder(state, followed)
        if constraint is not None:
            constraint.follow(followed)
        token = keep_tok.view(-1)
        done = count >= k
        if bool(done.all()):
            break
    # max_len reached with fewer than nbest finished: the unfinished ones compete too.
    live = (count < nbest).unsqueeze(1) & (scores > float("-inf"))
    found.add(live, count, scores, history.shape[2], length_penalty, history)
    # Best first; stable, so equal scores keep the order found (as Python's sorted).
    order = (-found.scores[:, :slots]).sort(dim=1, stable=True).indices[:, :nbest]
    best = found.scores.gather(1, order).tolist()
    lengths = found.lengths.gather(1, order).tolist()
    tokens = found.tokens.gather(1, order.unsqueeze(-1).expand(-1, -1, max_len)).tolist()
    return [
        [
            (seq[:n], score)
            for seq, n, score in zip(tokens[b], lengths[b], best[b], strict=True)
            if score > float("-inf")
        ]
        for b in range(batch)
    ]


class Finished(NamedTuple):
    """Beam search's finished hypotheses, in tensors: per source, slots in the order found.

    Attributes:
        scores: `(B, slots + 1)` float64, the length-normalised scores (-inf: an empty slot).
        tokens: `(B, slots + 1, max_len)`, each hypothesis' tokens without EOS.
        lengths: `(B, slots + 1)`, how many of its tokens count.
    """

    scores: Tensor
    tokens: Tensor
    lengths: Tensor

    def add(
        self,
        new: Tensor,
        count: Tensor,
        scores: Tensor,
        length: int,
        length_penalty: float,
        sequences: Tensor,
    ) -> Tensor:
        """Write the candidates where `new` (B, n) is True into each source's next slots;
        return the new count per source. Scores (B, n) are sums over `length` tokens (EOS
        included); sequences (B, n, L) their tokens."""
        trash = self.scores.shape[1] - 1
        slot = torch.where(new, count.unsqueeze(1) + new.long().cumsum(1) - 1, trash)
        # float64, divided as Python divides floats: the ranking of ties is the same as ever.
        self.scores.scatter_(1, slot, scores.double() / float(length**length_penalty))
        self.lengths.scatter_(1, slot, torch.full_like(slot, sequences.shape[2]))
        if sequences.shape[2]:
            index = slot.unsqueeze(-1).expand(-1, -1, sequences.shape[2])
            self.tokens[:, :, : sequences.shape[2]].scatter_(1, index, sequences)
        return count + new.long().sum(1)


class SourceOrder:
    """The searches' `attention_window` and `eos_margin` while they run: per row, the source's
    valid positions and the furthest position attended so far.

    Args:
        decoder: a :class:`SearchDecoder` with `source_mask(state)` ((B, S) bool, the valid
            source positions) and, for a window, `with_source_mask(state, mask)` (the state
            whose next step attends only where `mask` is True).
        state: the decoder's state before the first step (all the rows the search runs).
        window: `(back, ahead)` or None.
        eos_margin: positions before the source's last where EOS is allowed, or None.
        eos: the EOS token.
    """

    def __init__(
        self,
        decoder: Any,
        state: Any,
        window: Sequence[int] | None,
        eos_margin: int | None,
        eos: int,
    ) -> None:
        if window is not None:
            window = tuple(int(w) for w in window)
            if len(window) != 2 or min(window) < 0:
                raise ValueError(f"attention_window={window}: need (back, ahead), both >= 0")
        if eos_margin is not None and int(eos_margin) < 0:
            raise ValueError(f"eos_margin={eos_margin}: need >= 0")
        needs = ["source_mask"] + (["with_source_mask"] if window is not None else [])
        lacking = [name for name in needs if not callable(getattr(decoder, name, None))]
        if lacking:
            raise ValueError(
                f"attention_window and eos_margin need a decoder with {' and '.join(lacking)}; "
                f"{type(decoder).__name__} has none"
            )
        self.decoder, self.window, self.eos, self.eos_margin = decoder, window, eos, eos_margin
        self.valid = decoder.source_mask(state).bool()  # the same for every step: kept here
        self.last = self.valid.sum(1) - 1
        self.positions = torch.arange(self.valid.shape[1], device=self.valid.device)
        self.focus = torch.zeros_like(self.last)

    @classmethod
    def of(
        cls,
        decoder: Any,
        state: Any,
        window: Sequence[int] | None,
        eos_margin: int | None,
        eos: int,
    ) -> SourceOrder | None:
        """The constraint, or None when both are off (the search is then as it always was)."""
        if window is None and eos_margin is None:
            return None
        return cls(decoder, state, window, eos_margin, eos)

    def restrict(self, state: Any) -> Any:
        """The state whose next step attends only within each row's window."""
        if self.window is None:
            return state
        back, ahead = self.window
        offset = self.positions.unsqueeze(0) - self.focus.unsqueeze(1)
        return self.decoder.with_source_mask(
            state, self.valid & (offset >= -back) & (offset <= ahead)
        )

    def attended(self, weights: Tensor, logp: Tensor) -> Tensor:
        """Move each row's focus on with this step's weights (B, S); the log-probabilities
        (B, V) with EOS at -inf in the rows whose focus is still short of the source's end."""
        self.focus = torch.maximum(self.focus, weights.argmax(-1))
        if self.eos_margin is None:
            return logp
        early = self.focus < self.last - self.eos_margin
        is_eos = torch.arange(logp.shape[-1], device=logp.device) == self.eos
        return logp.masked_fill(early.unsqueeze(1) & is_eos, float("-inf"))

    def follow(self, index: Tensor) -> None:
        """The rows `index` (beam search following its hypotheses among one source's rows,
        whose valid positions are the same)."""
        self.focus = self.focus[index]
