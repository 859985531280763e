"""WER and PER against hand-worked examples with several references per source."""

from __future__ import annotations

import pytest

from seqmodels.tasks.sequence_errors import (
    SequenceErrorRate,
    TokenErrorRate,
    closest_reference,
    edit_distance,
)


@pytest.mark.parametrize(
    "a,b,distance",
    [
        ([], [], 0),
        ([1, 2, 3], [], 3),
        ([], [1, 2], 2),
        ([1, 2, 3], [1, 2, 3], 0),
        ([1, 2, 3], [1, 9, 3], 1),  # one substitution
        ([1, 2, 3], [1, 3], 1),  # one deletion
        ([1, 3], [1, 2, 3], 1),  # one insertion
        ([1, 2, 3, 4], [2, 1, 4, 3], 3),  # no transpositions: three edits (hand-worked DP)
        ([7, 8, 9], [1, 2], 3),  # kitten/sitting-like: 2 substitutions + 1 deletion
    ],
)
def test_edit_distance(a, b, distance):
    assert edit_distance(a, b) == distance == edit_distance(b, a)


def test_closest_reference_is_the_first_among_equals():
    # [1, 2] is 1 edit from both [1, 2, 3] (length 3) and [1, 9] (length 2): the first counts.
    assert closest_reference([1, 2], [[5, 5, 5, 5], [1, 2, 3], [1, 9]]) == (1, 3)
    assert closest_reference([1, 2], [[1, 9], [1, 2, 3]]) == (1, 2)


def test_wer_and_per_with_several_references():
    outputs = [
        [1, 2, 3],  # equals the second reference: right, 0 edits of 3
        [1, 2],  # 1 edit from [1, 2, 4] (the closest: length 3); wrong
        [5, 6, 7, 8],  # 2 edits from [5, 6] (length 2), 3 from [9, 9, 9, 9]: wrong
        [],  # empty output against [4, 4]: 2 deletions of 2; wrong
    ]
    references = [
        [[1, 2, 4], [1, 2, 3]],
        [[1, 2, 4], [3, 3, 3, 3, 3]],
        [[9, 9, 9, 9], [5, 6]],
        [[4, 4]],
    ]
    wer, per = SequenceErrorRate(), TokenErrorRate()
    # In two batches: the metrics sum counts, so the split must not matter.
    wer.update(outputs[:1], references[:1])
    per.update(outputs[:1], references[:1])
    wer.update(outputs[1:], references[1:])
    per.update(outputs[1:], references[1:])
    assert float(wer.compute()) == pytest.approx(3 / 4)
    # sum of the closest references' edits / sum of their lengths: (0+1+2+2) / (3+3+2+2)
    assert float(per.compute()) == pytest.approx(5 / 10)


def test_all_right_is_zero():
    wer, per = SequenceErrorRate(), TokenErrorRate()
    wer.update([[1], [2, 3]], [[[1]], [[4], [2, 3]]])
    per.update([[1], [2, 3]], [[[1]], [[4], [2, 3]]])
    assert float(wer.compute()) == 0.0 and float(per.compute()) == 0.0
