"""Sequence and token error rates against several references, as torchmetrics Metrics.

For grapheme-to-phoneme these are the word error rate (WER) and the phoneme
error rate (PER) that the G2P literature reports:

- `SequenceErrorRate`: the fraction of sources whose output equals none of
  their references.
- `TokenErrorRate`: per source, the Levenshtein distance from the output to
  its closest reference (the first one in reference order among equals), and
  that reference's length; the rate is sum(distances) / sum(lengths) over
  the set, so long words weigh more, as in the phoneme error rate.

Both sum counts (`dist_reduce_fx="sum"`): under DDP every process's sources
count once.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric


def edit_distance(a: Sequence[int], b: Sequence[int]) -> int:
    """Levenshtein distance: insertions, deletions and substitutions, each costing 1."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def closest_reference(
    output: Sequence[int], references: Sequence[Sequence[int]]
) -> tuple[int, int]:
    """(edit distance, length) of the reference closest to the output (the first among equals)."""
    return min(((edit_distance(output, r), len(r)) for r in references), key=lambda p: p[0])


class SequenceErrorRate(Metric):
    """The fraction of outputs equal to none of their references (WER for G2P)."""

    full_state_update = False
    errors: torch.Tensor
    total: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.add_state("errors", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(
        self, outputs: Sequence[Sequence[int]], references: Sequence[Sequence[Sequence[int]]]
    ) -> None:
        wrong = sum(
            list(o) not in [list(r) for r in refs]
            for o, refs in zip(outputs, references, strict=True)
        )
        self.errors += wrong
        self.total += len(outputs)

    def compute(self) -> torch.Tensor:
        return self.errors.float() / self.total.clamp(min=1)


class TokenErrorRate(Metric):
    """sum(edit distance to the closest reference) / sum(that reference's length) (PER)."""

    full_state_update = False
    edits: torch.Tensor
    length: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.add_state("edits", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("length", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(
        self, outputs: Sequence[Sequence[int]], references: Sequence[Sequence[Sequence[int]]]
    ) -> None:
        closest = [closest_reference(o, refs) for o, refs in zip(outputs, references, strict=True)]
        self.edits += sum(e for e, _ in closest)  # one tensor update per batch, not per source
        self.length += sum(n for _, n in closest)

    def compute(self) -> torch.Tensor:
        return self.edits.float() / self.length.clamp(min=1)
