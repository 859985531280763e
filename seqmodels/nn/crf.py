"""A linear-chain conditional random field: the structured output layer of a tagger.

A tag sequence y_1..y_n for emissions e (the per-token tag scores a network
computes) scores

    s(y) = start[y_1] + sum_t e_t[y_t] + sum_{t>1} transitions[y_{t-1}, y_t] + end[y_n]

and the CRF's probability of it is exp(s(y)) / Z with Z the sum over every tag
sequence of the same length (Lafferty et al. 2001; Lample et al. 2016 on top of
a BiLSTM). Z comes from the forward algorithm in log space and the best
sequence from Viterbi, both in O(n * K^2) for K tags, batched, with each
sequence's own length: padding after it changes nothing.

Constraints: `allowed_transitions(tags, scheme)` builds the transitions a
span scheme allows (BIO: no I-X after O or after B-Y/I-Y, nor at the start).
A CRF given them adds `FORBIDDEN` to every other transition score (finite, so
the forward algorithm's gradients stay finite), and Viterbi never returns a
forbidden path.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

FORBIDDEN = -10000.0  # added to a forbidden transition's score: exp() of it is 0 in float32
SCHEMES = ("IOB1", "BIO", "BIOES")


def split_tag(tag: str) -> tuple[str, str]:
    """("B", "PER") for "B-PER"; ("O", "") for "O"; a tag without a prefix is ("", tag)."""
    if tag == "O":
        return "O", ""
    prefix, dash, kind = tag.partition("-")
    if dash and kind and prefix in ("B", "I", "E", "S"):
        return prefix, kind
    return "", tag


def allowed_transitions(tags: Sequence[str], scheme: str) -> Tensor:
    """The transitions a span scheme allows between `tags`, as a bool matrix.

    Row and column K = len(tags) stand for the start, K + 1 for the end:
    `allowed[i, j]` says whether tag j may follow tag i, `allowed[K, j]` whether
    a sequence may start with j, `allowed[i, K + 1]` whether it may end with i.

    - BIO (IOB2): I-X only after B-X or I-X.
    - BIOES: I-X and E-X only after B-X or I-X; B-X, S-X and O only at the start
      or after O, E-Y or S-Y; a sequence ends with O, E-X or S-X.
    - IOB1: B-X only after I-X or B-X (it separates two spans of one type).

    Tags without a scheme prefix (e.g. part-of-speech tags) are allowed
    anywhere. Raises ValueError for an unknown scheme.
    """
    scheme = scheme.upper()
    scheme = "BIO" if scheme in ("IOB2", "BIO") else scheme
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {', '.join(SCHEMES)} (or IOB2); got {scheme!r}")
    K = len(tags)
    start, end = ("START", ""), ("END", "")
    parts = [split_tag(t) for t in tags] + [start, end]
    allowed = torch.zeros(K + 2, K + 2, dtype=torch.bool)
    for i, (p, x) in enumerate(parts):
        for j, (q, y) in enumerate(parts):
            allowed[i, j] = _allowed(p, x, q, y, scheme)
    return allowed


def _allowed(p: str, x: str, q: str, y: str, scheme: str) -> bool:
    if q == "START" or p == "END":
        return False
    if p == "" or q == "":  # a tag outside the scheme
        return True
    if scheme == "BIO":
        return q != "I" or (p in ("B", "I") and x == y)
    if scheme == "IOB1":
        return q != "B" or (p in ("B", "I") and x == y)
    # BIOES: inside a span (after B or I) only I or E of its type; outside, no I or E.
    if p in ("B", "I"):
        return q in ("I", "E") and x == y
    return q not in ("I", "E")


class CRF(nn.Module):
    r"""Linear-chain CRF over `num_tags` tags: log-likelihood and Viterbi decoding.

    Args:
        num_tags: K, the number of tags.
        allowed: optional (K + 2, K + 2) bool matrix of allowed transitions, start
            (row K) and end (column K + 1) included, as `allowed_transitions` builds
            it; forbidden ones can never be decoded.

    Attributes:
        start, end: (K,) scores of starting / ending a sequence with each tag.
        transitions: (K, K) score of tag j right after tag i (row i, column j).

    Shape:
        - emissions: (B, T, K), batch first.
        - tags: (B, T) int64, values in [0, K) at the valid steps (anything after).
        - lengths: (B,) int64, each in [1, T]; None: every sequence has T steps.
        - returns of `forward`, `log_likelihood`, `log_partition`, `score`: (B,).
        - returns of `decode`: tags (B, T) int64 (0 after each length) and
          their scores (B,).

    Example::

        >>> crf = CRF(3)
        >>> emissions = torch.randn(2, 5, 3)
        >>> tags = torch.tensor([[0, 1, 2, 1, 0], [2, 2, 1, 0, 0]])
        >>> lengths = torch.tensor([5, 3])
        >>> crf(emissions, tags, lengths).shape  # negative log-likelihood per sequence
        torch.Size([2])
        >>> best, scores = crf.decode(emissions, lengths)
        >>> best.shape, bool((best[1, 3:] == 0).all())
        (torch.Size([2, 5]), True)
    """

    allowed: Tensor | None

    def __init__(self, num_tags: int, allowed: Tensor | None = None) -> None:
        super().__init__()
        if num_tags < 1:
            raise ValueError(f"num_tags must be >= 1; got {num_tags}")
        self.num_tags = num_tags
        self.start = nn.Parameter(torch.empty(num_tags))
        self.end = nn.Parameter(torch.empty(num_tags))
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags))
        if allowed is not None:
            allowed = torch.as_tensor(allowed, dtype=torch.bool)
            if allowed.shape != (num_tags + 2, num_tags + 2):
                raise ValueError(
                    f"allowed must be ({num_tags + 2}, {num_tags + 2}) (tags, start, end); "
                    f"got {tuple(allowed.shape)}"
                )
        self.register_buffer("allowed", allowed)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for p in (self.start, self.end, self.transitions):
            nn.init.uniform_(p, -0.1, 0.1)

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}, constrained={self.allowed is not None}"

    def scores(self) -> tuple[Tensor, Tensor, Tensor]:
        """(start, transitions, end) with `FORBIDDEN` added where not allowed."""
        if self.allowed is None:
            return self.start, self.transitions, self.end
        K = self.num_tags
        penalty = (~self.allowed).to(self.transitions.dtype) * FORBIDDEN
        return (
            self.start + penalty[K, :K],
            self.transitions + penalty[:K, :K],
            self.end + penalty[:K, K + 1],
        )

    @staticmethod
    def _valid(emissions: Tensor, lengths: Tensor | None) -> Tensor:
        """(B, T) bool: True at each sequence's valid steps."""
        B, T, _ = emissions.shape
        if lengths is None:
            return torch.ones(B, T, dtype=torch.bool, device=emissions.device)
        steps = torch.arange(T, device=emissions.device)
        return steps[None, :] < lengths.to(emissions.device)[:, None]

    def score(self, emissions: Tensor, tags: Tensor, lengths: Tensor | None = None) -> Tensor:
        """(B,) s(tags): the unnormalised log-score of the given tag sequences."""
        start, transitions, end = self.scores()
        valid = self._valid(emissions, lengths)
        tags = tags.masked_fill(~valid, 0)  # padding: any id, its terms are masked out
        mask = valid.to(emissions.dtype)
        emitted = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)  # (B, T)
        total = start[tags[:, 0]] + (emitted * mask).sum(1)
        if tags.size(1) > 1:
            steps = transitions[tags[:, :-1], tags[:, 1:]]  # (B, T - 1)
            total = total + (steps * mask[:, 1:]).sum(1)
        last = valid.long().sum(1) - 1
        return total + end[tags.gather(1, last.unsqueeze(1)).squeeze(1)]

    def log_partition(self, emissions: Tensor, lengths: Tensor | None = None) -> Tensor:
        """(B,) log Z: the log-sum-exp of every tag sequence's score (forward algorithm)."""
        start, transitions, end = self.scores()
        valid = self._valid(emissions, lengths)
        steps = emissions.unbind(1)  # unbind, not x[:, t]: no full-size zeros in backward
        alpha = start + steps[0]  # (B, K): log-sum over the paths ending in each tag
        for t in range(1, len(steps)):
            nxt = torch.logsumexp(alpha.unsqueeze(2) + transitions, dim=1) + steps[t]
            alpha = torch.where(valid[:, t : t + 1], nxt, alpha)
        return torch.logsumexp(alpha + end, dim=1)

    def log_likelihood(
        self, emissions: Tensor, tags: Tensor, lengths: Tensor | None = None
    ) -> Tensor:
        """(B,) log p(tags | emissions) = s(tags) - log Z."""
        return self.score(emissions, tags, lengths) - self.log_partition(emissions, lengths)

    def forward(self, emissions: Tensor, tags: Tensor, lengths: Tensor | None = None) -> Tensor:
        """(B,) the negative log-likelihood of each tag sequence: the training loss."""
        return -self.log_likelihood(emissions, tags, lengths)

    def decode(self, emissions: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(tags (B, T), scores (B,)): each sequence's best tag sequence (Viterbi) and
        its score s(tags); tags after each length are 0."""
        start, transitions, end = self.scores()
        valid = self._valid(emissions, lengths)
        steps = emissions.unbind(1)
        K = self.num_tags
        keep = torch.arange(K, device=emissions.device).expand(emissions.size(0), K)
        best = start + steps[0]
        pointers = []
        for t in range(1, len(steps)):
            top, arg = (best.unsqueeze(2) + transitions).max(dim=1)  # over the previous tag
            here = valid[:, t : t + 1]
            best = torch.where(here, top + steps[t], best)
            # Past a sequence's end its tag stays put, so the trace back starts at its last step.
            pointers.append(torch.where(here, arg, keep))
        scores, last = (best + end).max(dim=1)
        path = [last]
        for arg in reversed(pointers):
            path.append(arg.gather(1, path[-1].unsqueeze(1)).squeeze(1))
        tags = torch.stack(path[::-1], dim=1)
        return tags.masked_fill(~valid, 0), scores
