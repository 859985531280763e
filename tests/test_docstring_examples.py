"""The `>>>` examples in the docstrings of the task modules and datamodules run, so the API
reference generated from them cannot drift from the code."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "seqmodels.tasks.classifier",
    "seqmodels.tasks.forecaster",
    "seqmodels.tasks.language_model",
    "seqmodels.tasks.seq2seq",
    "seqmodels.data.parity",
    "seqmodels.data.text",
    "seqmodels.data.seq2seq",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0, f"{name} has no >>> example"
    assert result.failed == 0, f"{result.failed} example(s) of {name} failed (output above)"
