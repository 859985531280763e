"""Decoding a trained decoder: greedy search and batched beam search.

Both drive any object with the AttentionDecoder's interface (decoder.py):
`step(tokens, state) -> (logits, state, weights)` and `select(state, index)`.
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

from typing import Any, NamedTuple

import torch
from torch import Tensor

from seqmodels.data.seq2seq import BOS, EOS, PAD


class Greedy(NamedTuple):
    tokens: list[list[int]]  # per source, the output without EOS
    scores: Tensor  # (B,) sum of log-probabilities, EOS included
    weights: Tensor  # (B, L, S) attention weights of every output step (EOS included)


def greedy(decoder: Any, state: Any, max_len: int) -> Greedy:
    """The most likely token at every step, until EOS or max_len tokens."""
    batch = state.mask.shape[0]
    device = state.mask.device
    token = torch.full((batch,), BOS, dtype=torch.long, device=device)
    finished = torch.zeros(batch, dtype=torch.bool, device=device)
    scores = torch.zeros(batch, device=device)
    steps, weights = [], []
    for _ in range(max_len):
        logits, state, w = decoder.step(token, state)
        best, token = logits.float().log_softmax(-1).max(-1)
        scores += best.masked_fill(finished, 0.0)
        steps.append(token.masked_fill(finished, PAD))
        weights.append(w)
        finished |= token == EOS
        if bool(finished.all()):
            break
    out = torch.stack(steps, 1).tolist()
    tokens = [row[: row.index(EOS)] if EOS in row else row for row in out]
    return Greedy(tokens, scores, torch.stack(weights, 1))


def beam_search(
    decoder: Any,
    state: Any,
    beam_size: int,
    max_len: int,
    length_penalty: float = 1.0,
    nbest: int = 1,
) -> list[list[tuple[list[int], float]]]:
    """Per source, its `nbest` best hypotheses as (tokens, normalised score), best first."""
    if beam_size < 1 or not 1 <= nbest <= beam_size:
        raise ValueError(f"beam_size={beam_size} and nbest={nbest}: need 1 <= nbest <= beam_size")
    batch, k = state.mask.shape[0], beam_size
    device = state.mask.device
    rows = torch.arange(batch, device=device)
    state = decoder.select(state, rows.repeat_interleave(k))
    scores = torch.full((batch, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # one live hypothesis per source at the start, not k copies of it
    history = torch.zeros((batch, k, 0), dtype=torch.long, device=device)
    token = torch.full((batch * k,), BOS, dtype=torch.long, device=device)
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
        ends = tok == EOS
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
