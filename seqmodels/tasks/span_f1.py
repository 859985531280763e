"""Entity-level precision, recall and F1 with conlleval's semantics, as a torchmetrics Metric.

A predicted span counts as right only when a gold span has the same type and
both the same ends. Spans are read from the tag sequences with conlleval's
rules (seqmodels.data.conll.spans), whatever the scheme (IOB1, BIO, BIOES).
Precision = right / predicted, recall = right / gold, F1 their harmonic mean
(0 where undefined), per type and micro-averaged over all spans, as conlleval
prints them. Counts are summed across processes under DDP.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric

from seqmodels.data.conll import spans


def prf(right: torch.Tensor, predicted: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
    """(..., 3): precision, recall, F1 from counts (0 where a denominator is 0)."""
    right, predicted, gold = right.double(), predicted.double(), gold.double()
    p = torch.where(predicted > 0, right / predicted.clamp(min=1), 0.0)
    r = torch.where(gold > 0, right / gold.clamp(min=1), 0.0)
    f = torch.where(p + r > 0, 2 * p * r / (p + r).clamp(min=1e-12), 0.0)
    return torch.stack([p, r, f], dim=-1).float()


class SpanF1(Metric):
    """Span precision/recall/F1 per type and micro-averaged (conlleval).

    Args:
        types: the span types (PER, LOC, ...), in the order `compute` reports them.

    `update(predicted, gold)` takes tag-name sequences, one pair per sentence;
    `compute()` returns {"precision", "recall", "f1"} (micro) and
    {"f1/<type>", ...} per type.

    Example::

        >>> m = SpanF1(["LOC", "PER"])
        >>> m.update([["B-PER", "I-PER", "O", "B-LOC"]], [["B-PER", "I-PER", "O", "B-PER"]])
        >>> {k: round(float(v), 3) for k, v in m.compute().items()}
        {'precision': 0.5, 'recall': 0.5, 'f1': 0.5, 'f1/LOC': 0.0, 'f1/PER': 0.667}
    """

    full_state_update = False
    right: torch.Tensor
    predicted: torch.Tensor
    gold: torch.Tensor

    def __init__(self, types: Sequence[str]) -> None:
        super().__init__()
        self.types = list(types)
        self.index = {t: i for i, t in enumerate(self.types)}
        for name in ("right", "predicted", "gold"):
            self.add_state(name, torch.zeros(len(self.types), dtype=torch.long), "sum")

    def update(self, predicted: Sequence[Sequence[str]], gold: Sequence[Sequence[str]]) -> None:
        right = [0] * len(self.types)
        found = [0] * len(self.types)
        wanted = [0] * len(self.types)
        for p_tags, g_tags in zip(predicted, gold, strict=True):
            p_spans, g_spans = set(spans(p_tags)), set(spans(g_tags))
            for kind, _, _ in p_spans:
                found[self.index[kind]] += 1
            for kind, _, _ in g_spans:
                wanted[self.index[kind]] += 1
            for kind, _, _ in p_spans & g_spans:
                right[self.index[kind]] += 1
        self.right += torch.tensor(right, device=self.right.device)
        self.predicted += torch.tensor(found, device=self.right.device)
        self.gold += torch.tensor(wanted, device=self.right.device)

    def compute(self) -> dict[str, torch.Tensor]:
        micro = prf(self.right.sum(), self.predicted.sum(), self.gold.sum())
        per_type = prf(self.right, self.predicted, self.gold)
        out = {"precision": micro[0], "recall": micro[1], "f1": micro[2]}
        out.update({f"f1/{t}": per_type[i, 2] for i, t in enumerate(self.types)})
        return out
