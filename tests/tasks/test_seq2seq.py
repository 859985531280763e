"""task=seq2seq end to end on a toy dictionary: a run logs WER/PER, the attention images and the
examples table; resume= ends where the uninterrupted run ends; predict prints outputs and
scores (beam=, nbest=, file=), and an unknown character is one line; a user's cell decodes;
checkpoints naming the attention by its old path (seqmodels.tasks.attention) still load."""

from __future__ import annotations

import io

import pytest
import torch
from support import compose_train, run_dirs, small_data_overrides

BASE = (
    "task=seq2seq",
    "model=gru",
    "model.hidden_size=16",
    "task.decoder_hidden_size=32",
    "task.embedding_dim=16",
    "task.target_embedding_dim=16",
    "task.optimizer.lr=0.01",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "callbacks.early_stopping=null",
)


def overrides(small_data, *more):
    return (*BASE, *small_data_overrides("seq2seq", small_data), *more)


def load(path):
    return torch.load(path, map_location="cpu", weights_only=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, small_data):
    """One 8-epoch run on the toy dictionary (tensorboard on), shared by the tests below."""
    from seqmodels.train import train

    out = tmp_path_factory.mktemp("seq2seq_run")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        metrics = train(
            compose_train(*overrides(small_data, "trainer.max_epochs=8"), output_dir=out)
        )
    finally:
        torch.set_num_threads(threads)
    return out, metrics


def test_a_run_logs_error_rates_attention_and_examples(trained):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, metrics = trained
    assert 0.0 <= metrics["test/wer"] <= 1.0 and 0.0 <= metrics["test/per"]
    assert metrics["test/beam_size"] == 5.0  # the configured beam decoded the test
    events = EventAccumulator(str(run), size_guidance={"images": 0, "tensors": 0})
    events.Reload()
    scalars = events.Tags()["scalars"]
    assert {"val/wer", "val/per", "val/loss", "train/loss", "test/wer", "test/per"} <= set(scalars)
    assert len(events.Scalars("val/wer")) == 8  # every epoch
    assert len(events.Images("val/attention")) == 8
    tables = [t for t in events.Tags()["tensors"] if t.startswith("val/examples")]
    assert tables


def test_the_toy_dictionary_is_learnt(trained):
    _, metrics = trained
    # Each letter has its own phoneme: 8 epochs on 400 words get most phonemes right
    # (an empty output would score PER 1.0).
    assert metrics["test/per"] < 0.6


def test_resume_ends_where_the_uninterrupted_run_ends(run_cli, small_data, tmp_path):
    common = overrides(small_data, "logger=none", "callbacks.gradient_flow=null")
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


def test_predict_prints_outputs_and_scores(trained, tmp_path):
    from seqmodels.predict import predict

    run, _ = trained
    ckpt = str(run / "checkpoints" / "last.ckpt")
    out = io.StringIO()
    ((name, phones, score),) = predict({"ckpt_path": ckpt, "text": "Banana"}, out=out)
    assert name == "text: Banana" and score <= 0.0
    line = out.getvalue().strip()
    assert line.startswith(phones) and line.endswith("text: Banana") and f"{score:.3f}" in line
    assert phones and set(phones.split()) <= {
        "AE",
        "B",
        "D",
        "EH",
        "K",
        "L",
        "M",
        "N",
        "OW",
        "R",
        "S",
        "T",
        "UW",
    }

    words = tmp_path / "words.txt"
    words.write_text("tab\n\nmost\n", encoding="utf-8")
    out = io.StringIO()
    found = predict({"ckpt_path": ckpt, "file": str(words), "beam": 4, "nbest": 3}, out=out)
    assert [n for n, _, _ in found] == ["line 1: tab"] * 3 + ["line 3: most"] * 3
    scores = [s for _, _, s in found[:3]]
    assert scores == sorted(scores, reverse=True) and len({p for _, p, _ in found[:3]}) == 3
    assert len(out.getvalue().strip().splitlines()) == 6 and "(#3)" in out.getvalue()
    # beam=1 is greedy search: one output.
    ((_, greedy, _),) = predict({"ckpt_path": ckpt, "text": "tab", "beam": 1}, out=io.StringIO())
    assert greedy


def test_predict_names_an_unknown_character_in_one_line(trained, run_cli):
    run, _ = trained
    result = run_cli("predict", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", 'text="tab9"')
    assert result.code == 1 and "Traceback" not in result.err
    (line,) = [x for x in result.err.splitlines() if x.startswith("error:")]
    assert "'9'" in line
    bad = run_cli(
        "predict",
        f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
        'text="tab"',
        "beam=2",
        "nbest=3",
    )
    assert bad.code == 1 and "nbest" in bad.err and "Traceback" not in bad.err


def test_a_users_cell_decodes(run_cli, small_data):
    result = run_cli(
        "train",
        *overrides(
            small_data,
            "trainer=debug",
            "logger=none",
            "task.decoder_cell._target_=seqmodels.nn.PeepholeLSTMCell",
            "task.attention._target_=seqmodels.nn.AdditiveAttention",
            "task.input_feeding=false",
        ),
    )
    assert result.code == 0, result.err


OLD_TARGET = "seqmodels.tasks.attention.AdditiveAttention"  # before the move to seqmodels.nn


def test_the_old_attention_target_builds_the_task():
    from seqmodels.nn import AdditiveAttention
    from seqmodels.tasks.seq2seq import Seq2Seq

    model = Seq2Seq(
        {"_target_": "seqmodels.nn.GRU", "hidden_size": 8},
        source_vocab_size=10,
        target_vocab_size=9,
        attention={"_target_": OLD_TARGET, "attention_size": 6},
    )
    assert isinstance(model.decoder.attention, AdditiveAttention)
    assert model.decoder.attention.v.in_features == 6
    assert model.hparams["attention"]["_target_"] == OLD_TARGET  # saved as given


def test_a_checkpoint_naming_the_old_attention_path_loads_and_predicts(trained, tmp_path):
    from omegaconf import OmegaConf

    from seqmodels.checkpoint import check_same_model, read_checkpoint
    from seqmodels.predict import predict

    run, _ = trained
    ckpt = run / "checkpoints" / "last.ckpt"
    checkpoint = load(ckpt)
    attention = checkpoint["hyper_parameters"]["attention"]
    assert attention["_target_"] == "seqmodels.nn.MultiplicativeAttention"
    # What the previous release wrote: the same model, its attention named by the old path.
    attention["_target_"] = "seqmodels.tasks.attention.MultiplicativeAttention"
    checkpoint["seqmodels_config"]["task"]["attention"]["_target_"] = attention["_target_"]
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    query = {"text": "Banana", "beam": 3, "nbest": 2}
    want = predict({"ckpt_path": str(ckpt), **query}, out=io.StringIO())
    got = predict({"ckpt_path": str(old), **query}, out=io.StringIO())
    assert got == want and len(got) == 2
    # Read under today's names: resume= and ckpt_path= compare it with today's config.
    new = read_checkpoint(old)
    assert (
        new["hyper_parameters"]["attention"]["_target_"] == "seqmodels.nn.MultiplicativeAttention"
    )
    config = OmegaConf.create(load(ckpt)["seqmodels_config"])
    check_same_model(old, config)
    check_same_model(old, config, key="resume")


def test_predict_pronounces_each_word_of_a_line(trained, tmp_path):
    from seqmodels.predict import predict

    run, _ = trained
    ckpt = str(run / "checkpoints" / "last.ckpt")
    alone = [
        predict({"ckpt_path": ckpt, "text": w, "beam": 3}, out=io.StringIO())[0]
        for w in ("tab", "most")
    ]
    out = io.StringIO()
    both = predict({"ckpt_path": ckpt, "text": "Tab, most!", "beam": 3}, out=out)
    assert [n for n, _, _ in both] == ["text: Tab", "text: most"]
    assert [p for _, p, _ in both] == [p for _, p, _ in alone]
    assert [s for _, _, s in both] == pytest.approx([s for _, _, s in alone], abs=1e-5)
    assert len(out.getvalue().strip().splitlines()) == 2  # one line per word
    words = tmp_path / "words.txt"
    words.write_text("tab most\n", encoding="utf-8")
    found = predict({"ckpt_path": ckpt, "file": str(words), "beam": 3}, out=io.StringIO())
    assert [n for n, _, _ in found] == ["line 1: tab", "line 1: most"]


def test_a_line_is_one_source_unless_the_model_reads_letters_without_spaces():
    from types import SimpleNamespace

    from seqmodels.tasks.seq2seq import Seq2Seq

    def data(tokens, known):
        return SimpleNamespace(
            source_tokens=tokens, source=SimpleNamespace(stoi=dict.fromkeys(known))
        )

    letters = data("char", "abcdefghijklmnopqrstuvwxyz'")
    assert Seq2Seq.sources_of("  Hello,  world's  end! ", letters) == ["Hello", "world's", "end"]
    assert Seq2Seq.sources_of("hello", letters) == ["hello"]
    assert Seq2Seq.sources_of("?!", letters) == ["?!"]  # left whole: its error names them
    # A model of characters that knows the space (a sentence translator), or of words: whole.
    assert Seq2Seq.sources_of("hello world", data("char", "helowrd ")) == ["hello world"]
    assert Seq2Seq.sources_of("hello world", data("space", ["hello", "world"])) == ["hello world"]


WORDS = ["banana", "tab", "most", "moderate"]


def test_the_exported_encoder_and_step_give_predicts_outputs_on_onnxruntime(trained, tmp_path):
    from seqmodels.export import export
    from seqmodels.export.seq2seq import transduce_onnx
    from seqmodels.predict import predict

    run, _ = trained
    ckpt = str(run / "checkpoints" / "last.ckpt")
    out = io.StringIO()
    written = export({"ckpt_path": ckpt, "format": "onnx", "out": str(tmp_path / "g2p.onnx")}, out)
    encoder, step = tmp_path / "g2p.encoder.onnx", tmp_path / "g2p.step.onnx"
    assert written == encoder and encoder.is_file() and step.is_file()
    assert "encoder: recurrent layers as 1 GRU" in out.getvalue()  # model=gru, onnx's own
    for beam, nbest in [(1, 1), (4, 3), (None, 1)]:  # None: the checkpoint's beam (5)
        want = predict(
            {"ckpt_path": ckpt, "text": " ".join(WORDS), "beam": beam, "nbest": nbest},
            out=io.StringIO(),
        )
        found = transduce_onnx(encoder, step, WORDS, beam_size=beam, nbest=nbest)
        got = [
            (f"text: {w}", text, s)
            for w, hyps in zip(WORDS, found, strict=True)
            for text, s in hyps
        ]
        assert [(n, t) for n, t, _ in got] == [(n, t) for n, t, _ in want]
        assert [s for *_, s in got] == pytest.approx([s for *_, s in want], abs=1e-4)
        assert any(t for _, t, _ in want)  # the model says something: the check compares phones


def test_the_exported_pt2_programs_decode_as_the_model(trained, tmp_path):
    from seqmodels.checkpoint import load_run
    from seqmodels.data.seq2seq import BOS, EOS
    from seqmodels.export import export
    from seqmodels.nn import beam_search

    run, _ = trained
    ckpt = str(run / "checkpoints" / "last.ckpt")
    export({"ckpt_path": ckpt, "format": "pt2", "out": str(tmp_path / "g2p")}, io.StringIO())
    encoder = torch.export.load(tmp_path / "g2p.encoder.pt2").module()
    step = torch.export.load(tmp_path / "g2p.step.pt2").module()

    class Steps:  # the step program as the searches' decoder: state (keys, prepared, mask, state)
        def step(self, tokens, state):
            logits, weights, following = step(tokens, *state)
            return logits, (*state[:3], following), weights

        def select(self, state, index):
            return (*(s[index] for s in state[:3]), state[3][:, index])

        def batch_size(self, state):
            return len(state[0])

        def device(self, state):
            return state[0].device

    _, task, datamodule = load_run(ckpt)
    source, lengths = datamodule.encode_texts(WORDS)
    with torch.no_grad():
        want = task.transduce(source, lengths, beam_size=4, nbest=2)
        max_len, penalty = (
            task.hparams["decode"]["max_len"],
            task.hparams["decode"]["length_penalty"],
        )
        got = beam_search(
            Steps(), encoder(source, lengths), 4, max_len, penalty, 2, bos=BOS, eos=EOS
        )
    assert [[t for t, _ in h] for h in got] == [[t for t, _ in h] for h in want]
    assert [s for h in got for _, s in h] == pytest.approx(
        [s for h in want for _, s in h], abs=1e-4
    )


def test_bad_decode_constraints_are_one_line():
    from seqmodels.errors import UserError
    from seqmodels.tasks.seq2seq import Seq2Seq

    encoder = {"_target_": "seqmodels.nn.GRU", "hidden_size": 8}
    for bad, named in [
        ({"attention_window": [1]}, "attention_window"),
        ({"attention_window": "1,3"}, "attention_window"),
        ({"attention_window": [1, -2]}, "attention_window"),
        ({"eos_margin": -1}, "eos_margin"),
        ({"eos_margin": 1.5}, "eos_margin"),
    ]:
        with pytest.raises(UserError, match=f"task.decode.{named}="):
            Seq2Seq(encoder, source_vocab_size=10, target_vocab_size=10, decode=bad)


def test_decode_constraints_reach_predict_and_the_onnx_search(trained, tmp_path):
    """A checkpoint whose task.decode holds the attention (attention_window, eos_margin):
    predict decodes with them (the same as beam_search given them), and the exported
    programs' search on onnxruntime reads them from the metadata and gives the same."""
    from seqmodels.checkpoint import load_run
    from seqmodels.data.seq2seq import BOS, EOS
    from seqmodels.export import export
    from seqmodels.export.seq2seq import transduce_onnx
    from seqmodels.nn import beam_search
    from seqmodels.predict import predict

    run, _ = trained
    checkpoint = load(run / "checkpoints" / "last.ckpt")
    held = {"attention_window": [0, 1], "eos_margin": 0}
    checkpoint["hyper_parameters"]["decode"].update(held)
    ckpt = tmp_path / "held.ckpt"
    torch.save(checkpoint, ckpt)
    _, task, datamodule = load_run(ckpt)
    assert "attention window [0, 1], eos margin 0" in task.decoding()
    source, lengths = datamodule.encode_texts(WORDS)
    decode = task.hparams["decode"]
    with torch.no_grad():
        found = task.transduce(source, lengths, beam_size=4, nbest=2)
        args = (task.decoder, task.encode(source, lengths), 4, decode["max_len"])
        plain = beam_search(*args, decode["length_penalty"], 2, bos=BOS, eos=EOS)
        assert found == beam_search(
            *args,
            decode["length_penalty"],
            2,
            bos=BOS,
            eos=EOS,
            attention_window=(0, 1),
            eos_margin=0,
        )
    assert found != plain  # the settings bind on these words: the check can tell
    export(
        {"ckpt_path": str(ckpt), "format": "onnx", "out": str(tmp_path / "g2p.onnx")}, io.StringIO()
    )
    want = predict({"ckpt_path": str(ckpt), "text": " ".join(WORDS), "beam": 4}, out=io.StringIO())
    got = transduce_onnx(tmp_path / "g2p.encoder.onnx", tmp_path / "g2p.step.onnx", WORDS, 4)
    assert [t for _, t, _ in want] == [h[0][0] for h in got]


def test_eval_takes_decode_overrides(trained, run_cli):
    run, metrics = trained
    ckpt = f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}"
    again = run_cli("eval", ckpt, "trainer.enable_progress_bar=false")
    assert again.code == 0, again.err
    assert "test/beam_size=5.0000" in again.out
    held = run_cli(
        "eval",
        ckpt,
        "trainer.enable_progress_bar=false",
        "+task.decode.beam_size=1",
        "+task.decode.attention_window=[0,1]",
        "+task.decode.eos_margin=0",
    )
    assert held.code == 0, held.err
    assert "test/beam_size=1.0000" in held.out  # the override decoded the test
    for bad, message in [
        ("+task.decode.beam=3", "task.decode.beam is not a decoding setting"),
        ("+task.decode.eos_margin=-1", "task.decode.eos_margin=-1"),
        ("+task.dropout=0.5", "seqmodels-eval overrides only task.decode"),
        ("+task.decode=5", "+task.decode=5: give its settings"),
    ]:
        result = run_cli("eval", ckpt, bad)
        assert result.code == 1 and message in result.err and "Traceback" not in result.err
