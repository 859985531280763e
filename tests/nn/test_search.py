"""Greedy and beam search: beam 1 is greedy on real decoders, and on a toy model whose best
sequence is known by hand, beam search finds it where greedy search does not."""

from __future__ import annotations

import math
from typing import NamedTuple

import pytest
import torch

from seqmodels.nn import (
    AttentionDecoder,
    GRUCell,
    LSTMCell,
    MultiplicativeAttention,
    beam_search,
    greedy_search,
)

# Special ids other than seqmodels.data's (BOS 1, EOS 2): the searches use the ones given.
BOS, EOS = 5, 4
A, B, C, D = 0, 1, 2, 3  # toy tokens
IDS = {"bos": BOS, "eos": EOS}


class ToyState(NamedTuple):
    previous: torch.Tensor  # (N,) the last token


class Markov:
    """p(next | previous) from a fixed table: the best sequence is worked out by hand.

    BOS -> A 0.6, B 0.4;  A -> C 0.5, D 0.5;  C, D -> EOS;  B -> EOS 0.9, A 0.1.
    Greedy: A C EOS, p = 0.3. Best: B EOS, p = 0.36 (by the raw log-probability).
    """

    def __init__(self) -> None:
        p = torch.full((7, 7), 1e-9)
        p[BOS, A], p[BOS, B] = 0.6, 0.4
        p[A, C], p[A, D] = 0.5, 0.5
        p[C, EOS] = p[D, EOS] = p[EOS, EOS] = 1.0
        p[B, EOS], p[B, A] = 0.9, 0.1
        self.logits = (p / p.sum(-1, keepdim=True)).log()

    def step(self, tokens, state):
        # BOS continues from the state's token (BOS itself, or what a test starts a row from).
        tokens = torch.where(tokens == BOS, state.previous, tokens)
        return self.logits[tokens], ToyState(tokens), torch.ones(len(tokens), 1)

    @staticmethod
    def select(state, index):
        return ToyState(state.previous[index])

    @staticmethod
    def batch_size(state):
        return len(state.previous)

    @staticmethod
    def device(state):
        return state.previous.device


def reference_beam_search(
    decoder, state, beam_size, max_len, length_penalty=1.0, nbest=1, *, bos, eos
):
    """Beam search as it was before the finished hypotheses moved into tensors (a Python
    list per source): the new one must give exactly its n-best."""
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


def toy_state(n: int) -> ToyState:
    return ToyState(torch.full((n,), BOS))


def test_greedy_misses_what_beam_search_finds():
    toy = Markov()
    found = greedy_search(toy, toy_state(2), max_len=10, **IDS)
    assert found.tokens == [[A, C], [A, C]]
    assert found.scores.tolist() == pytest.approx([math.log(0.3)] * 2, abs=1e-5)
    best = beam_search(
        toy, toy_state(2), beam_size=2, max_len=10, length_penalty=0.0, nbest=2, **IDS
    )
    for hypotheses in best:
        (first, s1), (second, s2) = hypotheses
        assert first == [B] and s1 == pytest.approx(math.log(0.36), abs=1e-5)
        assert second in ([A, C], [A, D]) and s2 == pytest.approx(math.log(0.3), abs=1e-5)


def test_length_normalisation_ranks_by_log_probability_per_token():
    # Per token (EOS counted): A C EOS: log(0.3)/3 = -0.401 beats B EOS: log(0.36)/2 = -0.511.
    best = beam_search(Markov(), toy_state(1), beam_size=2, max_len=10, length_penalty=1.0, **IDS)
    ((tokens, score),) = best[0]
    assert tokens in ([A, C], [A, D]) and score == pytest.approx(math.log(0.3) / 3, abs=1e-5)


def test_max_len_stops_and_keeps_the_unfinished():
    best = beam_search(Markov(), toy_state(1), beam_size=2, max_len=1, length_penalty=0.0, **IDS)
    ((tokens, _),) = best[0]
    assert tokens == [A]  # nothing ended within one step: the best unfinished one


def test_greedy_cuts_each_row_at_its_own_eos():
    toy = Markov()
    # Rows started from B and from A: B -> EOS (0.9); A -> C (0.5, a tie with D) -> EOS.
    found = greedy_search(toy, ToyState(torch.tensor([B, A])), max_len=10, **IDS)
    assert found.tokens == [[], [C]] and found.weights.shape == (2, 2, 1)
    # A row that ended adds nothing more to its score.
    assert found.scores.tolist() == pytest.approx([math.log(0.9), math.log(0.5)], abs=1e-5)


@pytest.mark.parametrize("cell", [LSTMCell, GRUCell], ids=["lstm", "gru"])
def test_beam_1_is_greedy(cell):
    lengths_seen = set()
    for seed in range(6):
        torch.manual_seed(seed)
        decoder = AttentionDecoder(9, 8, cell, 16, 12, MultiplicativeAttention).eval()
        with torch.no_grad():  # a random model: sharper logits and a fair EOS vary the lengths
            decoder.out.weight.mul_(4)
            decoder.out.bias.zero_()
            decoder.out.bias[EOS] = 0.5
        lengths = torch.randint(1, 8, (16,))
        mask = torch.arange(7) < lengths.unsqueeze(1)
        state = decoder.start(torch.randn(16, 7, 12), mask)
        with torch.no_grad():
            expected = greedy_search(decoder, state, max_len=15, **IDS).tokens
            found = beam_search(decoder, state, beam_size=1, max_len=15, **IDS)
        assert [h[0][0] for h in found] == expected, seed
        lengths_seen |= {len(t) for t in expected}
    assert len(lengths_seen) > 3  # the check saw outputs of several lengths


def _random_decoder(seed: int, cell=LSTMCell, eos_bias: float = 0.5) -> AttentionDecoder:
    torch.manual_seed(seed)
    decoder = AttentionDecoder(9, 8, cell, 16, 12, MultiplicativeAttention).eval()
    with torch.no_grad():  # a random model: sharper logits and a fair EOS vary the lengths
        decoder.out.weight.mul_(4)
        decoder.out.bias.zero_()
        decoder.out.bias[EOS] = eos_bias
    return decoder


@pytest.mark.parametrize("penalty", [0.0, 0.6, 1.0])
@pytest.mark.parametrize(("batch", "beam", "nbest"), [(1, 1, 1), (5, 2, 2), (16, 3, 1), (7, 5, 5)])
def test_beam_search_finds_the_same_nbest_as_the_python_lists_did(batch, beam, nbest, penalty):
    ended_early, hit_max_len = False, False
    for seed in range(4):
        decoder = _random_decoder(seed, GRUCell if seed % 2 else LSTMCell, eos_bias=seed - 1.0)
        lengths = torch.randint(1, 8, (batch,))
        state = decoder.start(torch.randn(batch, 7, 12), torch.arange(7) < lengths.unsqueeze(1))
        for max_len in (3, 12):
            args = (decoder, state, beam, max_len, penalty, nbest)
            with torch.no_grad():
                found = beam_search(*args, **IDS)
                want = reference_beam_search(*args, **IDS)
            assert found == want, (seed, max_len)  # the same tokens, and scores to the bit
            sizes = {len(t) for hyps in found for t, _ in hyps}
            ended_early |= min(sizes) < max_len - 1
            hit_max_len |= max_len in sizes
    assert ended_early and hit_max_len  # both ways of finishing were exercised


def test_beam_search_on_the_toy_model_matches_the_python_lists():
    for penalty, beam, max_len in [(0.0, 2, 10), (1.0, 2, 10), (0.0, 2, 1), (0.5, 3, 4)]:
        args = (Markov(), toy_state(3), beam, max_len, penalty, beam)
        assert beam_search(*args, **IDS) == reference_beam_search(*args, **IDS)
