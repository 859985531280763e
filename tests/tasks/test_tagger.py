"""task=tagging end to end on a toy CoNLL-2003 file: both heads train (fast_dev_run); a run
logs token accuracy, entity F1, per-tag F1, the confusion image and the examples table; the
CRF learns the toy entities; resume= ends where the uninterrupted run ends; predict prints
each token with its tag; a malformed line is one line naming file and line; the span metric
matches hand-worked cases (and seqeval where installed); the export carries the CRF."""

from __future__ import annotations

import io
import signal

import pytest
import torch
from support import compose_train, run_dirs, signal_at, small_data_overrides

from seqmodels.tasks.span_f1 import SpanF1

BASE = (
    "task=tagging",
    "model=lstm",
    "task.optimizer.lr=0.02",
    "task.dropout=0.1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "callbacks.early_stopping=null",
    "monitor.metric=val/f1",
)


def overrides(small_data, *more):
    return (*BASE, *small_data_overrides("tagging", small_data), *more)


def load(path):
    return torch.load(path, map_location="cpu", weights_only=False)


# -- the span metric ---------------------------------------------------------------------


def test_span_f1_hand_worked():
    m = SpanF1(["LOC", "ORG", "PER"])
    gold = [
        ["B-PER", "I-PER", "O", "B-LOC", "O"],
        ["B-ORG", "I-ORG", "I-ORG", "O", "B-PER"],
    ]
    predicted = [
        ["B-PER", "I-PER", "O", "B-LOC", "I-LOC"],  # PER right; LOC one token too long
        ["B-ORG", "I-ORG", "I-ORG", "O", "B-LOC"],  # ORG right; PER typed LOC
    ]
    m.update(predicted, gold)
    got = {k: round(float(v), 4) for k, v in m.compute().items()}
    # 4 predicted, 4 gold, 2 right: P = R = F1 = 0.5. LOC: 0 of 2 predicted, 0 of 1 gold.
    assert got == {
        "precision": 0.5,
        "recall": 0.5,
        "f1": 0.5,
        "f1/LOC": 0.0,
        "f1/ORG": 1.0,
        "f1/PER": round(2 * 0.5 * 1.0 / 1.5, 4),  # P 1/1, R 1/2
    }
    m.reset()
    m.update([["O", "O"]], [["B-PER", "O"]])  # nothing predicted: P, F1 = 0 (not NaN)
    assert float(m.compute()["f1"]) == 0.0


def test_span_f1_agrees_with_seqeval():
    seqeval = pytest.importorskip("seqeval.metrics", reason="seqeval is not installed")
    torch.manual_seed(0)
    tags = ["O", "B-A", "I-A", "B-B", "I-B"]
    gold = [[tags[int(i)] for i in torch.randint(0, 5, (12,))] for _ in range(40)]
    predicted = [[t if torch.rand(()) < 0.7 else "O" for t in s] for s in gold]
    m = SpanF1(["A", "B"])
    m.update(predicted, gold)
    got = m.compute()
    assert float(got["f1"]) == pytest.approx(seqeval.f1_score(gold, predicted), abs=1e-6)
    assert float(got["precision"]) == pytest.approx(
        seqeval.precision_score(gold, predicted), abs=1e-6
    )
    assert float(got["recall"]) == pytest.approx(seqeval.recall_score(gold, predicted), abs=1e-6)


# -- runs --------------------------------------------------------------------------------


@pytest.mark.parametrize("head", ["crf", "softmax"])
@pytest.mark.parametrize("chars", ["lstm", "cnn"])
def test_both_heads_train(run_cli, small_data, head, chars):
    result = run_cli(
        "train",
        *overrides(small_data, "trainer=debug", "logger=none", f"task.head={head}"),
        f"task.char_encoder={chars}",
    )
    assert result.code == 0, result.err


@pytest.fixture(scope="module")
def trained(tmp_path_factory, small_data):
    """One 12-epoch run on the toy NER file (tensorboard on), shared by the tests below."""
    from seqmodels.train import train

    out = tmp_path_factory.mktemp("tagging_run")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        metrics = train(
            compose_train(*overrides(small_data, "trainer.max_epochs=12"), output_dir=out)
        )
    finally:
        torch.set_num_threads(threads)
    return out, metrics


def test_a_run_logs_accuracy_f1_per_tag_confusion_and_examples(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, metrics = trained
    events = EventAccumulator(str(run), size_guidance={"images": 0, "tensors": 0, "scalars": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/acc", "val/acc", "val/f1", "val/f1/PER", "test/acc", "test/f1"} <= scalars
    assert {"val/tag_f1/O", "val/tag_f1/B-PER", "val/tag_f1/I-LOC"} <= scalars
    assert len(events.Scalars("val/tag_f1/B-PER")) == 12  # every epoch
    assert len(events.Images("val/confusion")) == 12
    assert [t for t in events.Tags()["tensors"] if t.startswith("val/examples")]


def test_the_toy_entities_are_learnt(trained):
    _, metrics = trained
    # "mr X" is a person and "in [New] Y" a place: 12 epochs get most spans right.
    assert metrics["test/f1"] > 0.8 and metrics["test/acc"] > 0.9


def test_predict_prints_each_token_with_its_tag(trained, tmp_path):
    from seqmodels.predict import predict

    run, _ = trained
    ckpt = str(run / "checkpoints" / "last.ckpt")
    out = io.StringIO()
    ((name, tokens, tags),) = predict(
        {"ckpt_path": ckpt, "text": "mr Brown lives in New Lima ."}, out=out
    )
    assert name == "text" and tokens == ["mr", "Brown", "lives", "in", "New", "Lima", "."]
    assert out.getvalue().splitlines()[:7] == [
        f"{w}\t{t}" for w, t in zip(tokens, tags, strict=True)
    ]
    assert tags[1] == "B-PER" and tags[4:6] == ["B-LOC", "I-LOC"]  # the data's IOB1 read as BIO
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("mr Jones lives in Oslo .\n\nmr Smith Taylor lives in Rome .\n")
    out = io.StringIO()
    found = predict({"ckpt_path": ckpt, "file": str(sentences)}, out=out)
    assert [n for n, _, _ in found] == ["line 1", "line 3"]
    assert "# line 3\nmr\tO\nSmith\tB-PER\nTaylor\tI-PER\n" in out.getvalue()


def test_export_carries_the_crf_beside_the_emissions(trained, tmp_path):
    import json

    from seqmodels.export import export

    run, _ = trained
    path = export(
        {
            "ckpt_path": str(run / "checkpoints" / "last.ckpt"),
            "format": "pt2",
            "out": str(tmp_path / "tagger.pt2"),
        },
        stream=io.StringIO(),
    )
    files = {"seqmodels.json": ""}
    program = torch.export.load(str(path), extra_files=files)
    meta = json.loads(files["seqmodels.json"])
    assert meta["decoding"] == "viterbi" and len(meta["crf"]["transitions"]) == len(meta["tags"])
    words = torch.tensor([[meta["vocabulary"].index("mr"), 1, 0]])
    chars = torch.zeros(1, 3, meta["max_word_len"], dtype=torch.long)
    emissions = program.module()(
        words, chars, torch.ones(1, 3, dtype=torch.long), torch.tensor([2])
    )
    assert emissions.shape == (1, 3, len(meta["tags"]))


def test_resume_ends_where_the_uninterrupted_run_ends(run_cli, small_data, tmp_path):
    common = overrides(small_data, "logger=none", "callbacks.gradient_flow=null")
    common = (*common, "task.word_dropout=0.5")  # the dropped words come from the RNG too
    whole = run_cli("train", *common, "trainer.max_epochs=2", outputs=tmp_path / "whole")
    assert whole.code == 0, whole.err
    part = run_cli("train", *common, "trainer.max_epochs=1", outputs=tmp_path / "part")
    assert part.code == 0, part.err
    (run,) = run_dirs(tmp_path / "part")
    again = run_cli("train", f"resume={run}", "trainer.max_epochs=2", outputs=tmp_path / "part")
    assert again.code == 0, again.err
    (reference,) = run_dirs(tmp_path / "whole")
    a = load(reference / "checkpoints" / "last.ckpt")
    b = load(run / "checkpoints" / "last.ckpt")
    assert a["global_step"] == b["global_step"] > 0
    for name, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][name]), name


def test_preemption_mid_epoch_resumes_exactly(run_cli, small_data, tmp_path, monkeypatch):
    """SIGTERM in the middle of the second epoch saves that step; the resumed run ends with
    the weights of a run that was never stopped (word dropout draws from the RNG too)."""
    common = (
        *overrides(small_data, "logger=none", "callbacks.gradient_flow=null"),
        "task.word_dropout=0.5",
        "trainer.max_epochs=3",
    )
    whole = run_cli("train", *common, outputs=tmp_path / "whole")
    assert whole.code == 0, whole.err
    (reference,) = run_dirs(tmp_path / "whole")
    per_epoch = load(reference / "checkpoints" / "last.ckpt")["global_step"] // 3
    assert per_epoch >= 3
    signal_at(monkeypatch, per_epoch + 1)  # the second batch of the second epoch
    stopped = run_cli("train", *common, outputs=tmp_path / "part")
    assert stopped.code == 128 + signal.SIGTERM, stopped.err
    (run,) = run_dirs(tmp_path / "part")
    assert load(run / "checkpoints" / "last.ckpt")["global_step"] == per_epoch + 2
    again = run_cli("train", f"resume={run}", outputs=tmp_path / "part")
    assert again.code == 0, again.err
    a = load(reference / "checkpoints" / "last.ckpt")
    b = load(run / "checkpoints" / "last.ckpt")
    assert a["global_step"] == b["global_step"]
    for name, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][name]), name


def test_a_malformed_line_is_one_line_naming_file_and_line(run_cli, small_data, tmp_path):
    bad = tmp_path / "bad.conll"
    lines = (small_data / "ner.conll").read_text(encoding="utf-8").splitlines()
    lines[9] = "Smith"  # no tag
    bad.write_text("\n".join(lines), encoding="utf-8")
    result = run_cli("train", *overrides(small_data, "trainer=debug"), f"data.path={bad}")
    assert result.code == 1 and "Traceback" not in result.err
    (line,) = [x for x in result.err.splitlines() if x.startswith("error:")]
    assert str(bad) in line and "line 10" in line


def test_onnx_export_gives_the_models_emissions(trained, tmp_path):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (seqmodels[export])")
    from seqmodels.export import export

    run, _ = trained
    stream = io.StringIO()
    path = export(
        {
            "ckpt_path": str(run / "checkpoints" / "last.ckpt"),
            "format": "onnx",
            "out": str(tmp_path / "tagger.onnx"),
        },
        stream=stream,
    )
    # the export runs the file with onnxruntime on another batch and length, and writes
    # nothing unless it matches PyTorch
    assert path.is_file() and "checked: onnxruntime gives PyTorch's outputs" in stream.getvalue()
