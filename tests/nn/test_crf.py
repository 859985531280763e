"""The linear-chain CRF against brute force: every tag sequence of small cases enumerated.

log Z must equal the log-sum-exp of every sequence's score, Viterbi's path
must be the argmax over them, for sequences of different lengths in one
batch; padding after a length changes nothing; gradients pass gradcheck in
float64; constraints never let an invalid path through.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from seqmodels.nn import CRF
from seqmodels.nn.crf import allowed_transitions


def brute_scores(crf, emissions, length):
    """{tag tuple: score} over every tag sequence of `length` for one sequence (T, K)."""
    start, transitions, end = crf.scores()
    out = {}
    for tags in itertools.product(range(crf.num_tags), repeat=length):
        s = start[tags[0]] + end[tags[-1]]
        s = s + sum(emissions[t, k] for t, k in enumerate(tags))
        s = s + sum(transitions[a, b] for a, b in itertools.pairwise(tags))
        out[tags] = s
    return out


def random_crf(K, allowed=None, seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    crf = CRF(K, allowed).to(dtype)
    with torch.no_grad():  # scores of the size a trained CRF has, not the init's +-0.1
        for p in crf.parameters():
            p.normal_(0, 1)
    return crf.requires_grad_(False)


@pytest.mark.parametrize("K", [1, 2, 3])
def test_partition_score_and_best_path_match_brute_force_with_lengths(K):
    crf = random_crf(K, seed=K)
    lengths = torch.tensor([4, 1, 3, 2])
    emissions = torch.randn(4, 4, K)
    log_z = crf.log_partition(emissions, lengths)
    best, best_scores = crf.decode(emissions, lengths)
    for b, n in enumerate(lengths.tolist()):
        scores = brute_scores(crf, emissions[b], n)
        total = torch.logsumexp(torch.stack(list(scores.values())), 0)
        torch.testing.assert_close(log_z[b], total, rtol=1e-5, atol=1e-5)
        argmax = max(scores, key=lambda k: float(scores[k]))
        assert tuple(best[b, :n].tolist()) == argmax
        assert (best[b, n:] == 0).all()
        torch.testing.assert_close(best_scores[b], scores[argmax], rtol=1e-5, atol=1e-5)
        # score() of a given path is that path's score, and the likelihood its softmax
        path = torch.tensor([[(k + b) % K for k in range(4)]])
        one = crf.score(emissions[b : b + 1], path, lengths[b : b + 1])
        torch.testing.assert_close(
            one[0], scores[tuple(path[0, :n].tolist())], rtol=1e-5, atol=1e-5
        )


def test_likelihoods_of_every_path_sum_to_one():
    crf = random_crf(3)
    emissions = torch.randn(1, 3, 3, dtype=torch.float32)
    paths = torch.tensor(list(itertools.product(range(3), repeat=3)))
    ll = crf.log_likelihood(emissions.expand(len(paths), 3, 3), paths)
    torch.testing.assert_close(ll.exp().sum(), torch.tensor(1.0), rtol=1e-5, atol=1e-5)
    assert torch.equal(crf(emissions.expand(len(paths), 3, 3), paths), -ll)


def test_padding_changes_nothing():
    crf = random_crf(4)
    lengths = torch.tensor([5, 2, 3])
    emissions = torch.randn(3, 5, 4)
    tags = torch.randint(0, 4, (3, 5))
    noisy_e = emissions.clone()
    noisy_t = tags.clone()
    for b, n in enumerate(lengths.tolist()):
        noisy_e[b, n:] = torch.randn(5 - n, 4) * 100
        noisy_t[b, n:] = torch.randint(0, 4, (5 - n,))
    torch.testing.assert_close(
        crf.log_likelihood(emissions, tags, lengths), crf.log_likelihood(noisy_e, noisy_t, lengths)
    )
    a, sa = crf.decode(emissions, lengths)
    b, sb = crf.decode(noisy_e, lengths)
    assert torch.equal(a, b)
    torch.testing.assert_close(sa, sb)
    # and a batch of one, cut to its length, agrees with the padded batch
    for i, n in enumerate(lengths.tolist()):
        alone = crf.log_likelihood(emissions[i : i + 1, :n], tags[i : i + 1, :n])
        torch.testing.assert_close(alone, crf.log_likelihood(emissions, tags, lengths)[i : i + 1])
        path, _ = crf.decode(emissions[i : i + 1, :n])
        assert torch.equal(path[0], a[i, :n])


@pytest.mark.parametrize("constrained", [False, True])
def test_gradcheck_float64(constrained):
    tags = ["O", "B-A", "I-A", "B-B", "I-B"]
    allowed = allowed_transitions(tags, "BIO") if constrained else None
    crf = random_crf(5, allowed, dtype=torch.float64)
    emissions = torch.randn(3, 4, 5, dtype=torch.float64, requires_grad=True)
    gold = torch.tensor([[0, 1, 2, 0], [3, 4, 0, 0], [1, 0, 0, 0]])
    lengths = torch.tensor([4, 3, 1])

    def nll(e, start, transitions, end):
        params = {"start": start, "transitions": transitions, "end": end}
        return torch.func.functional_call(crf, params, (e, gold, lengths))

    params = [p.detach().clone().requires_grad_() for p in (crf.start, crf.transitions, crf.end)]
    assert torch.autograd.gradcheck(nll, (emissions, *params))


def test_bio_rules():
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    allowed = allowed_transitions(tags, "BIO")
    K = len(tags)
    ok = lambda a, b: bool(allowed[tags.index(a), tags.index(b)])  # noqa: E731
    assert ok("B-PER", "I-PER") and ok("I-PER", "I-PER") and ok("O", "B-LOC")
    assert not ok("O", "I-PER") and not ok("B-LOC", "I-PER") and not ok("I-LOC", "I-PER")
    assert not allowed[K, tags.index("I-PER")] and allowed[K, tags.index("B-PER")]
    assert allowed[tags.index("I-LOC"), K + 1]
    bioes = ["O", "B-X", "I-X", "E-X", "S-X"]
    allowed = allowed_transitions(bioes, "BIOES")
    ok = lambda a, b: bool(allowed[bioes.index(a), bioes.index(b)])  # noqa: E731
    assert ok("B-X", "E-X") and ok("E-X", "S-X") and ok("S-X", "O")
    assert not ok("B-X", "O") and not ok("O", "E-X") and not ok("I-X", "B-X")
    assert not allowed[bioes.index("B-X"), len(bioes) + 1]  # a span cannot be left open
    # tags outside any scheme (POS) are free
    assert allowed_transitions(["NOUN", "VERB"], "BIO")[:2, :2].all()
    with pytest.raises(ValueError, match="scheme"):
        allowed_transitions(tags, "BILOU")


def valid_bio(path, tags):
    previous = "O"
    for k in path:
        tag = tags[k]
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            return False
        previous = tag
    return True


def test_constraints_never_produce_an_invalid_path():
    tags = ["O", "B-A", "I-A", "B-B", "I-B"]
    crf = random_crf(5, allowed_transitions(tags, "BIO"), seed=3)
    free = random_crf(5, seed=3)
    torch.manual_seed(0)
    # emissions that push towards I- tags everywhere
    emissions = torch.randn(64, 7, 5) * 5
    emissions[..., 2] += 5
    emissions[..., 4] += 5
    lengths = torch.randint(1, 8, (64,))
    constrained, _ = crf.decode(emissions, lengths)
    unconstrained, _ = free.decode(emissions, lengths)
    for b, n in enumerate(lengths.tolist()):
        assert valid_bio(constrained[b, :n].tolist(), tags)
    # without the constraints some of them would have been invalid
    assert not all(
        valid_bio(unconstrained[b, :n].tolist(), tags) for b, n in enumerate(lengths.tolist())
    )
    # and the constrained best path is the brute-force best among valid paths
    for b in range(4):
        n = int(lengths[b])
        scores = brute_scores(free, emissions[b], n)
        best = max((p for p in scores if valid_bio(p, tags)), key=lambda p: float(scores[p]))
        assert tuple(constrained[b, :n].tolist()) == best


def test_bad_allowed_shape():
    with pytest.raises(ValueError, match="allowed"):
        CRF(3, torch.ones(3, 3, dtype=torch.bool))
