"""CMUdict for real (SEQMODELS_TEST_DATA/cmudict/cmudict.dict): the prepared splits' sizes, one
reduced epoch of the g2p_cmudict recipe beating a letter-by-letter baseline on validation, and
seqmodels-predict giving phonemes for a word that is not in the dictionary."""

from __future__ import annotations

import io
from collections import Counter

import pytest
from support import compose_train, real_data

from seqmodels.data import cmudict
from seqmodels.data.seq2seq import Seq2SeqDataModule

pytestmark = pytest.mark.slow


def test_the_prepared_dictionary_has_the_documented_splits():
    words = cmudict.read(real_data("cmudict", "cmudict.dict"))
    sizes = Counter(cmudict.split_of(w) for w in words)
    assert sizes["test"] == 6355
    assert abs(sizes["train"] - 112_400) < 500 and abs(sizes["val"] - 6150) < 100
    phonemes = {p for prons in words.values() for pron in prons for p in pron}
    assert len(phonemes) == 39


def letter_by_letter_baseline(dm: Seq2SeqDataModule) -> tuple[float, float]:
    """(WER, PER) on validation of a trivial model: one phoneme per letter, each letter's most
    frequent phoneme in the training words whose spelling and pronunciation have equal length."""
    from seqmodels.tasks.sequence_errors import SequenceErrorRate, TokenErrorRate

    counts: dict[int, Counter[int]] = {}
    train = dm.splits["train"]
    for source, target in zip(train.sources, train.targets, strict=True):
        if len(source) == len(target) - 1:  # target ends with EOS
            for letter, phone in zip(source.tolist(), target.tolist(), strict=False):
                counts.setdefault(letter, Counter())[phone] += 1
    best = {letter: c.most_common(1)[0][0] for letter, c in counts.items()}
    val = dm.splits["val"]
    outputs = [[best.get(t, 0) for t in s.tolist()] for s in val.sources]
    wer, per = SequenceErrorRate(), TokenErrorRate()
    wer.update(outputs, val.references)
    per.update(outputs, val.references)
    return float(wer.compute()), float(per.compute())


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory):
    from seqmodels.train import train

    path = real_data("cmudict", "cmudict.dict")
    out = tmp_path_factory.mktemp("g2p")
    cfg = compose_train(
        "experiment=g2p_cmudict",
        f"data.path={path}",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=200",
        "trainer.limit_test_batches=2",
        "trainer.enable_progress_bar=false",
        "logger=none",
        output_dir=out,
    )
    return out / "checkpoints" / "last.ckpt", train(cfg), path


def test_one_reduced_epoch_beats_a_letter_by_letter_baseline(one_epoch):
    _, metrics, path = one_epoch
    dm = Seq2SeqDataModule(path=str(path))
    dm.setup()
    wer, per = letter_by_letter_baseline(dm)
    assert metrics["val/wer"] < wer and metrics["val/per"] < per, (metrics, wer, per)


def test_predict_gives_phonemes_for_a_word_not_in_the_dictionary(one_epoch):
    from seqmodels.predict import predict

    ckpt, _, path = one_epoch
    assert "tensorboard" not in cmudict.read(path)
    ((name, phones, score),) = predict(
        {"ckpt_path": str(ckpt), "text": "TensorBoard"}, out=io.StringIO()
    )
    arpabet = {p for prons in cmudict.read(path).values() for pron in prons for p in pron}
    assert phones and set(phones.split()) <= arpabet and score < 0
