"""The searches' attention_window and eos_margin: on a toy reader whose attention jumps to the
source's end (the long-word cut of a G2P model), the window makes it read every position; on
one whose EOS is most likely early, eos_margin delays EOS until the attention reaches the end;
off, or too wide to bind, they change nothing; bad values and decoders that cannot restrict
their attention are errors."""

from __future__ import annotations

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

BOS, EOS = 9, 8
IDS = {"bos": BOS, "eos": EOS}
VOCAB = 10  # source symbols are 0..7


class ReaderState(NamedTuple):
    t: torch.Tensor  # (N,) steps taken
    done: torch.Tensor  # (N,) bool: the last position has been attended
    source: torch.Tensor  # (N, S) the symbols to write out
    last: torch.Tensor  # (N,) the last valid position
    mask: torch.Tensor  # (N, S) where the next step may attend


class Reader:
    """A decoder that writes out the source symbol it attends to, one per step.

    At step t it attends (sharply, by distance) to position t, or, from step `jump` on, to
    the source's last position: the attention skips the middle, as a G2P model's did on a
    word longer than its training words. It writes the symbol at the position it attended
    most, and EOS once it has attended to the last position; from step `eos_from` on, EOS
    is its most likely token whatever it attends (a length prior that ends outputs early).
    """

    def __init__(self, jump: int | None = None, eos_from: int | None = None) -> None:
        self.jump, self.eos_from = jump, eos_from

    def start(self, source: torch.Tensor, lengths: torch.Tensor) -> ReaderState:
        n, s = source.shape
        mask = torch.arange(s) < lengths.unsqueeze(1)
        return ReaderState(
            torch.zeros(n, dtype=torch.long),
            torch.zeros(n, dtype=torch.bool),
            source,
            lengths - 1,
            mask,
        )

    def step(self, tokens, state):
        n, s = state.source.shape
        want = (
            state.t if self.jump is None else torch.where(state.t >= self.jump, state.last, state.t)
        )
        distance = (torch.arange(s).unsqueeze(0) - want.unsqueeze(1)).abs().float()
        weights = (-4.0 * distance).masked_fill(~state.mask, float("-inf")).softmax(-1)
        at = weights.argmax(-1)
        rows = torch.arange(n)
        logits = torch.full((n, VOCAB), -8.0)
        logits[rows, state.source[rows, at]] = 0.0
        eos = torch.full((n,), -12.0)  # below every symbol: no early end unless eos_from
        if self.eos_from is not None:
            eos = torch.where(state.t >= self.eos_from, 2.0, eos)
        logits[:, EOS] = torch.where(state.done, 4.0, eos)
        following = state._replace(t=state.t + 1, done=state.done | (at == state.last))
        return logits, following, weights

    @staticmethod
    def select(state, index):
        return ReaderState(*(v[index] for v in state))

    @staticmethod
    def batch_size(state):
        return len(state.t)

    @staticmethod
    def device(state):
        return state.t.device

    @staticmethod
    def source_mask(state):
        return state.mask

    @staticmethod
    def with_source_mask(state, mask):
        return state._replace(mask=mask)


SOURCE = torch.tensor([[0, 1, 2, 3, 4, 5, 6, 7, 0, 1], [7, 6, 5, 4, 3, 2, 0, 0, 0, 0]])
LENGTHS = torch.tensor([10, 6])
WHOLE = [SOURCE[0].tolist(), SOURCE[1, :6].tolist()]


def test_the_window_keeps_a_jumping_attention_reading_every_position():
    reader = Reader(jump=3)
    state = reader.start(SOURCE, LENGTHS)
    cut = greedy_search(reader, state, 20, **IDS).tokens
    assert cut == [[0, 1, 2, 1], [7, 6, 5, 2]]  # three symbols, then the last one: cut short
    for window in [(0, 1), (1, 1), (3, 1)]:
        found = greedy_search(reader, state, 20, attention_window=window, **IDS)
        assert found.tokens == WHOLE, window
        # Each step attended within the window around the furthest position so far.
        ahead = found.weights.argmax(-1)
        assert bool((ahead[:, 1:] - ahead[:, :-1].cummax(1).values <= window[1]).all())
        best = beam_search(reader, state, 3, 20, attention_window=window, **IDS)
        assert [h[0][0] for h in best] == WHOLE, window


def test_eos_margin_holds_back_an_early_eos_until_the_attention_reaches_the_end():
    reader = Reader(eos_from=2)  # attends in order, but EOS is the most likely from step 2
    state = reader.start(SOURCE, LENGTHS)
    assert greedy_search(reader, state, 20, **IDS).tokens == [[0, 1], [7, 6]]
    for margin in (0, 2):
        # EOS comes at the first step whose attention is within `margin` of the last position.
        want = [row[: len(row) - 1 - margin] for row in WHOLE]
        assert greedy_search(reader, state, 20, eos_margin=margin, **IDS).tokens == want
        best = beam_search(reader, state, 2, 20, eos_margin=margin, **IDS)
        assert [h[0][0] for h in best] == want


def _random_decoder(seed: int, cell) -> AttentionDecoder:
    torch.manual_seed(seed)
    decoder = AttentionDecoder(VOCAB, 8, cell, 16, 12, MultiplicativeAttention).eval()
    with torch.no_grad():  # a random model: sharper logits and a fair EOS vary the lengths
        decoder.out.weight.mul_(4)
        decoder.out.bias.zero_()
        decoder.out.bias[EOS] = seed - 1.0
    return decoder


@pytest.mark.parametrize("cell", [LSTMCell, GRUCell], ids=["lstm", "gru"])
def test_options_too_wide_to_bind_change_nothing_and_beam_1_stays_greedy(cell):
    changed = False
    for seed in range(3):
        decoder = _random_decoder(seed, cell)
        lengths = torch.randint(1, 8, (12,))
        state = decoder.start(torch.randn(12, 7, 12), torch.arange(7) < lengths.unsqueeze(1))
        with torch.no_grad():
            plain = greedy_search(decoder, state, 15, **IDS)
            wide = greedy_search(decoder, state, 15, attention_window=(7, 7), eos_margin=7, **IDS)
            assert wide.tokens == plain.tokens and torch.equal(wide.scores, plain.scores)
            assert torch.equal(wide.weights, plain.weights)
            for k, nbest in [(1, 1), (4, 2)]:
                args = (decoder, state, k, 15, 0.6, nbest)
                loose = beam_search(*args, attention_window=(7, 7), eos_margin=7, **IDS)
                assert loose == beam_search(*args, **IDS)
            # Where they bind, beam 1 is still greedy search (rows followed in the beam).
            held = {"attention_window": (0, 1), "eos_margin": 1}
            narrow = greedy_search(decoder, state, 15, **held, **IDS).tokens
            assert [h[0][0] for h in beam_search(decoder, state, 1, 15, **held, **IDS)] == narrow
            changed |= narrow != plain.tokens
    assert changed  # the narrow settings did bind somewhere


def test_bad_settings_and_decoders_without_a_source_mask_are_errors():
    reader = Reader()
    state = reader.start(SOURCE, LENGTHS)
    for bad in [{"attention_window": (-1, 2)}, {"attention_window": (1,)}, {"eos_margin": -1}]:
        with pytest.raises(ValueError, match="need"):
            greedy_search(reader, state, 5, **bad, **IDS)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="need"):
            beam_search(reader, state, 2, 5, **bad, **IDS)  # type: ignore[arg-type]

    class Plain(Reader):
        source_mask = None  # type: ignore[assignment]
        with_source_mask = None  # type: ignore[assignment]

    with pytest.raises(ValueError, match="source_mask"):
        greedy_search(Plain(), state, 5, eos_margin=0, **IDS)
    with pytest.raises(ValueError, match="with_source_mask"):
        beam_search(Plain(), state, 2, 5, attention_window=(1, 1), **IDS)


def _rescored(decoder, state, row, tokens, window, penalty):
    """One hypothesis' score, stepped token by token under its own window: what beam search
    must report for it if it followed each hypothesis' own attention."""
    state = decoder.select(state, torch.tensor([row]))
    valid, focus, total = state.mask, 0, 0.0
    for token_in, token_out in zip([BOS, *tokens], [*tokens, EOS], strict=True):
        offset = torch.arange(valid.shape[1]) - focus
        state = decoder.with_source_mask(
            state, valid & (offset >= -window[0]) & (offset <= window[1])
        )
        logits, state, weights = decoder.step(torch.tensor([token_in]), state)
        focus = max(focus, int(weights.argmax(-1)))
        total += float(logits.float().log_softmax(-1)[0, token_out])
    return total / (len(tokens) + 1) ** penalty


def test_beam_search_follows_each_hypothesis_own_attention():
    window, penalty, checked = (0, 1), 0.6, 0
    for seed in range(3):
        decoder = _random_decoder(seed, LSTMCell)
        lengths = torch.randint(3, 8, (6,))
        state = decoder.start(torch.randn(6, 7, 12), torch.arange(7) < lengths.unsqueeze(1))
        with torch.no_grad():
            found = beam_search(decoder, state, 4, 20, penalty, 4, attention_window=window, **IDS)
            for row, hypotheses in enumerate(found):
                for tokens, score in hypotheses:
                    if len(tokens) < 20:  # ended with EOS
                        want = _rescored(decoder, state, row, tokens, window, penalty)
                        assert score == pytest.approx(want, abs=1e-4), (seed, row, tokens)
                        checked += 1
    assert checked > 20
