"""Greedy and beam search: beam 1 is greedy on real decoders, and on a toy model whose best
sequence is known by hand, beam search finds it where greedy search does not."""

from __future__ import annotations

import math
from typing import NamedTuple

import pytest
import torch

from seqmodels.data.seq2seq import BOS, EOS
from seqmodels.tasks.search import beam_search, greedy
from seqmodels.tasks.seq2seq import Seq2Seq

A, B, C, D = 3, 4, 5, 6  # toy tokens after PAD, BOS, EOS, UNK


class ToyState(NamedTuple):
    previous: torch.Tensor  # (N,) the last token
    mask: torch.Tensor  # (N, 1): what the searches read the batch size from


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
        return self.logits[tokens], ToyState(tokens, state.mask), state.mask.float()

    @staticmethod
    def select(state, index):
        return ToyState(state.previous[index], state.mask[index])


def toy_state(n: int) -> ToyState:
    return ToyState(torch.full((n,), BOS), torch.ones(n, 1, dtype=torch.bool))


def test_greedy_misses_what_beam_search_finds():
    toy = Markov()
    found = greedy(toy, toy_state(2), max_len=10)
    assert found.tokens == [[A, C], [A, C]]
    assert found.scores.tolist() == pytest.approx([math.log(0.3)] * 2, abs=1e-5)
    best = beam_search(toy, toy_state(2), beam_size=2, max_len=10, length_penalty=0.0, nbest=2)
    for hypotheses in best:
        (first, s1), (second, s2) = hypotheses
        assert first == [B] and s1 == pytest.approx(math.log(0.36), abs=1e-5)
        assert second in ([A, C], [A, D]) and s2 == pytest.approx(math.log(0.3), abs=1e-5)


def test_length_normalisation_ranks_by_log_probability_per_token():
    # Per token (EOS counted): A C EOS: log(0.3)/3 = -0.401 beats B EOS: log(0.36)/2 = -0.511.
    best = beam_search(Markov(), toy_state(1), beam_size=2, max_len=10, length_penalty=1.0)
    ((tokens, score),) = best[0]
    assert tokens in ([A, C], [A, D]) and score == pytest.approx(math.log(0.3) / 3, abs=1e-5)


def test_max_len_stops_and_keeps_the_unfinished():
    best = beam_search(Markov(), toy_state(1), beam_size=2, max_len=1, length_penalty=0.0)
    ((tokens, _),) = best[0]
    assert tokens == [A]  # nothing ended within one step: the best unfinished one


@pytest.mark.parametrize("cell", ["seqmodels.nn.LSTMCell", "seqmodels.nn.GRUCell"])
def test_beam_1_is_greedy(cell):
    lengths_seen = set()
    for seed in range(6):
        torch.manual_seed(seed)
        model = Seq2Seq(
            {"_target_": "seqmodels.nn.GRU", "hidden_size": 16},
            source_vocab_size=12,
            target_vocab_size=9,
            embedding_dim=8,
            target_embedding_dim=8,
            decoder_cell={"_target_": cell},
            decoder_hidden_size=16,
        ).eval()
        with torch.no_grad():  # a random model: sharper logits and a fair EOS vary the lengths
            model.decoder.out.weight.mul_(4)
            model.decoder.out.bias.zero_()
            model.decoder.out.bias[EOS] = 0.5
        source = torch.randint(4, 12, (16, 7))
        lengths = torch.randint(1, 8, (16,))
        with torch.no_grad():
            state = model.encode(source, lengths)
            expected = greedy(model.decoder, state, max_len=15).tokens
            found = beam_search(model.decoder, state, beam_size=1, max_len=15)
        assert [h[0][0] for h in found] == expected, seed
        lengths_seen |= {len(t) for t in expected}
    assert len(lengths_seen) > 3  # the check saw outputs of several lengths
