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
