"""Lightning modules: what is trained, its loss, metrics and logging."""

from seqmodels.tasks.classifier import SequenceClassifier

__all__ = ["SequenceClassifier"]
