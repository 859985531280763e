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
steps, where its unfinished ones join the finished. Finished hypotheses are
ranked by score / length ** length_penalty (length counts EOS): 0 ranks by the
raw sum, which favours short outputs; 1 by the mean log-probability per token.
With beam_size 1 this is greedy search.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import torch
from torch import Tensor


class SearchDecoder(Protocol):
    """What the searches need from a decoder (:class:`~seqmodels.nn.AttentionDecoder` has it).

    The state is whatever the decoder keeps between steps; the searches only pass it back,
    and ask the decoder how many rows it has and where it lives.
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
    decoder: SearchDecoder, state: Any, max_len: int, *, bos: int, eos: int
) -> GreedyResult:
    """Decode by taking the most likely token at every step, until EOS or `max_len` tokens.

    Args:
        decoder: a :class:`SearchDecoder`, e.g. an :class:`~seqmodels.nn.AttentionDecoder`.
        state: the decoder's state before the first token (B rows), e.g. `decoder.start(...)`.
        max_len: the most tokens an output has, EOS included.
        bos: the token fed first.
        eos: the token that ends an output. (No padding id: a row that has ended is cut at
            its EOS, whatever it holds while the others go on.)

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
    for _ in range(max_len):
        logits, state, w = decoder.step(token, state)
        best, token = logits.float().log_softmax(-1).max(-1)
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
) -> list[list[tuple[list[int], float]]]:
    """Decode every source of a batch at once, keeping its `beam_size` best hypotheses.

    At each step the best 2 * beam_size expansions of a source are ranked; those ending in
    EOS among its first beam_size are finished, the best beam_size others go on. A source is
    done once it has beam_size finished hypotheses, or at `max_len` steps, where its
    unfinished ones compete too. Hypotheses are ranked by
    `score / length ** length_penalty` (length counts EOS). `beam_size=1` is greedy search.

    Args:
        decoder: a :class:`SearchDecoder`, e.g. an :class:`~seqmodels.nn.AttentionDecoder`.
        state: the decoder's state before the first token (B rows), e.g. `decoder.start(...)`.
        beam_size: the hypotheses kept per source.
        max_len: the most tokens a hypothesis has, EOS included.
        length_penalty: 0 ranks by the sum of log-probabilities (favours short outputs),
            1 by the mean log-probability per token. Default: 1.0
        nbest: how many hypotheses to return per source, `1 <= nbest <= beam_size`. Default: 1
        bos: the token fed first.
        eos: the token that ends a hypothesis.

    Shape:
        - state: B rows (the search repeats each `beam_size` times with `decoder.select`)
        - Output: a list of B lists of `nbest` hypotheses

    Returns:
        per source, its `nbest` best hypotheses as `(token ids without EOS, normalised score)`,
        best first.

    Raises:
        ValueError: unless `1 <= nbest <= beam_size`.

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
    scores = torch.full((batch, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # one live hypothesis per source at the start, not k copies of it
    history = torch.zeros((batch, k, 0), dtype=torch.long, device=device)
    token = torch.full((batch * k,), bos, dtype=torch.long, device=device)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
    done = torch.zeros(batch, dtype=torch.bool)
    ranks = torch.arange(2 * k, device=device)

    def norm(score: float, length: int) -> float:
        return score / length**length_penalty

    for t in range(max_len):
        logits, state, _ = decoder.step(token, state)
        logp = logits.float().log_softmax(-1)
        vocab = logp.shape[-1]
        expanded = (scores.unsqueeze(-1) + logp.view(batch, k, vocab)).view(batch, -1)
        top, index = expanded.topk(min(2 * k, k * vocab), dim=-1)  # (B, 2k), best first
        beam, tok = index // vocab, index % vocab
        ends = tok == eos
        # Finished: EOS among the first k expansions of a source not yet done.
        hits = (ends[:, :k] & torch.isfinite(top[:, :k]) & ~done.to(device).unsqueeze(1)).nonzero()
        for b, r in hits.tolist():
            seq = history[b, beam[b, r]].tolist()
            finished[b].append((norm(float(top[b, r]), t + 1), seq))
        # Going on: the best k expansions that do not end (there are always k: at most k end).
        keep = torch.argsort(ends.long() * len(ranks) + ranks[: ends.shape[1]], dim=-1)[:, :k]
        keep_beam, keep_tok = beam.gather(1, keep), tok.gather(1, keep)
        scores = top.gather(1, keep)
        history = torch.cat(
            (history.gather(1, keep_beam.unsqueeze(-1).expand(-1, -1, t)), keep_tok.unsqueeze(-1)),
            dim=2,
        )
        state = decoder.select(state, (rows.unsqueeze(1) * k + keep_beam).view(-1))
        token = keep_tok.view(-1)
        done = torch.tensor([len(f) >= k for f in finished])
        if bool(done.all()):
            break
    for b, found in enumerate(finished):
        if len(found) < nbest:  # max_len reached: the unfinished ones compete too
            length = history.shape[2]
            found += [
                (norm(float(s), length), history[b, j].tolist())
                for j, s in enumerate(scores[b].tolist())
                if s > float("-inf")
            ]
    return [
        [(seq, score) for score, seq in sorted(f, key=lambda x: -x[0])[:nbest]] for f in finished
    ]
