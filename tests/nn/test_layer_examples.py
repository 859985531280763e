"""The Example blocks in the docstrings of the cells, the layers, the literature cells and the
inits run and print what they show (the API reference is generated from these docstrings)."""

from __future__ import annotations

import doctest

import pytest
import torch

from seqmodels.nn import cells, init, literature, recurrent


@pytest.mark.parametrize("module", [cells, recurrent, literature, init], ids=lambda m: m.__name__)
def test_docstring_examples_run(module):
    torch.manual_seed(0)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0, result
