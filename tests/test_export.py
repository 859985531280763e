"""seqmodels-export: each task kind's inference path written as ONNX (run with onnxruntime)
and as torch.export's pt2 archive, against the checkpoint's own module and against
seqmodels-predict / seqmodels-sample on the README's kinds of input; the command's
one-line errors.

Checkpoints come from short runs on the small synthetic datasets (conftest.small_data);
the numbers compared are the trained weights' outputs, whatever they learned.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
import torch
from support import compose_train, real_data, small_data_overrides

from seqmodels.checkpoint import load_run
from seqmodels.export import export
from seqmodels.export.programs import program_for
from seqmodels.export.recurrent_onnx import OnnxRecurrent, with_onnx_layers
from seqmodels.nn import GRU, LSTM, RNN
from seqmodels.predict import predict, read_images
from seqmodels.sample import sample_checkpoint
from seqmodels.tasks.base import TaskModule
from seqmodels.train import train

QUICK = (
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "test=false",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "logger=none",
)
SMALL_MODEL = ("model.hidden_size=16",)

RUNS = {  # name -> (task, overrides)
    "imdb": ("imdb", ()),
    "imdb_gru_bidirectional_mean": (
        "imdb",
        ("model=gru", "model.num_layers=2", "model.bidirectional=true", "task.pooling=mean"),
    ),
    "imdb_rnn_relu_meanmax": (
        "imdb",
        ("model=rnn", "model.nonlinearity=relu", "model.num_layers=2", "task.pooling=meanmax"),
    ),
    "parity": ("parity", ()),
    "mnist": ("mnist", ("model.num_layers=1",)),
    "forecast": ("forecast", ("model=gru", "task.head_hidden=16")),
    # the recipes' forecaster: a layer over the horizon, and an ensemble of two
    "forecast_mq": (
        "forecast",
        (
            "model=gru",
            "task.head_hidden=16",
            "task.horizon_encoder={_target_:seqmodels.nn.GRU,hidden_size:8,bidirectional:true}",
            "task.members=2",
        ),
    ),
    "chargen": ("chargen", ("task.embedding_dim=8", "model.num_layers=2")),
    "chargen_gru": ("chargen", ("model=gru", "task.embedding_dim=8")),
    "imdb_swish_rnn": ("imdb", ("model=rnn", "model.nonlinearity=swish")),
    "imdb_peephole": ("imdb", ("model=custom",)),  # a cell of one's own: no ONNX operator
}
SLOW = {"imdb_gru_bidirectional_mean", "imdb_rnn_relu_meanmax", "chargen_gru", "imdb_swish_rnn"}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, small_data):
    """name -> last.ckpt of a short run, trained on first use."""
    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            task, extra = RUNS[name]
            out = tmp_path_factory.mktemp(name)
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    train(
                        compose_train(
                            f"task={task}",
                            *small_data_overrides(task, small_data),
                            *SMALL_MODEL,
                            *extra,
                            *QUICK,
                            output_dir=out,
                        )
                    )
            finally:
                torch.set_num_threads(threads)
            made[name] = out / "checkpoints" / "last.ckpt"
        return made[name]

    return get


def params(names):
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in names]


def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def run_onnx(path: Path, inputs: dict[str, torch.Tensor]) -> list[np.ndarray]:
    return session(path).run(None, {k: v.numpy() for k, v in inputs.items()})


def eager(ckpt: Path, inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    _, task, dm = load_run(ckpt)
    with torch.no_grad():
        out = program_for(task, dm).module(*inputs.values())
    return list(out) if isinstance(out, tuple) else [out]


def inputs_of(ckpt: Path, batch: int, time: int | None = None) -> dict[str, torch.Tensor]:
    _, task, dm = load_run(ckpt)
    return program_for(task, dm).example(batch, time)


def close(got, want, tol=1e-4):
    """Equal to tol, relative to 1 + |value| (a forecast is in the data's units)."""
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(np.asarray(g), w.numpy(), atol=tol, rtol=tol)


# -- ONNX round trips --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", params(["imdb", "imdb_gru_bidirectional_mean", "imdb_rnn_relu_meanmax", "parity"])
)
def test_token_classifier_onnx_takes_any_batch_and_length(checkpoints, name, tmp_path):
    ckpt = checkpoints(name)
    out = io.StringIO()
    path = export({"ckpt_path": str(ckpt), "format": "onnx", "out": str(tmp_path / "m.onnx")}, out)
    model = onnx.load(str(path))
    kind = {"imdb_gru_bidirectional_mean": "GRU", "imdb_rnn_relu_meanmax": "RNN"}.get(name, "LSTM")
    layers = int(load_run(ckpt)[1].encoder.num_layers)  # one node per layer, both directions
    assert [n.op_type for n in model.graph.node].count(kind) == layers  # ONNX's own operator
    ids, lengths = model.graph.input
    assert [d.dim_param for d in ids.type.tensor_type.shape.dim] == ["batch", "time"]
    assert f"{layers} {kind}" in out.getvalue()
    for batch, time in ((1, 1), (1, 30), (5, 3), (4, 17)):  # never the traced (2, 5)
        x = inputs_of(ckpt, batch, time)
        got = run_onnx(path, x)
        close(got, eager(ckpt, x))
        np.testing.assert_allclose(got[0].sum(-1), 1.0, atol=1e-5)


def test_padding_beyond_lengths_changes_nothing(checkpoints, tmp_path):
    ckpt = checkpoints("imdb")
    path = export(
        {"ckpt_path": str(ckpt), "format": "onnx", "out": str(tmp_path / "m.onnx")}, io.StringIO()
    )
    x = inputs_of(ckpt, 3, 6)
    longer = torch.cat([x["ids"], torch.randint(2, 10, (3, 9))], dim=1)  # junk after the lengths
    a = run_onnx(path, x)[0]
    b = run_onnx(path, {"ids": longer, "lengths": x["lengths"]})[0]
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_image_classifier_onnx_reads_raw_pixels(checkpoints, tmp_path):
    ckpt = checkpoints("mnist")
    path = export(
        {"ckpt_path": str(ckpt), "format": "onnx", "out": str(tmp_path / "m.onnx")}, io.StringIO()
    )
    model = onnx.load(str(path))
    (images,) = model.graph.input
    assert images.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert [d.dim_param or d.dim_value for d in images.type.tensor_type.shape.dim] == [
        "batch",
        28,
        28,
    ]
    assert "LSTM" in [n.op_type for n in model.graph.node]
    for batch in (1, 7):
        x = inputs_of(ckpt, batch)
        close(run_onnx(path, x), eager(ckpt, x))
    meta = json.loads({p.key: p.value for p in model.metadata_props}["seqmodels"])
    assert meta["class_names"] == [str(i) for i in range(10)]


@pytest.mark.parametrize("name", ["forecast", "forecast_mq"])
def test_forecaster_onnx(checkpoints, name, tmp_path):
    ckpt = checkpoints(name)
    path = export(
        {"ckpt_path": str(ckpt), "format": "onnx", "out": str(tmp_path / "m.onnx")}, io.StringIO()
    )
    assert "GRU" in [n.op_type for n in onnx.load(str(path)).graph.node]
    for batch in (1, 6):
        x = inputs_of(ckpt, batch)
        close(run_onnx(path, x), eager(ckpt, x))


@pytest.mark.parametrize("name", params(["chargen", "chargen_gru"]))
def test_language_model_step_onnx_carries_the_state(checkpoints, name, tmp_path):
    ckpt = checkpoints(name)
    path = export(
        {"ckpt_path": str(ckpt), "format": "onnx", "out": str(tmp_path / "m.onnx")}, io.StringIO()
    )
    _, task, dm = load_run(ckpt)
    lstm = isinstance(task.encoder, LSTM)
    names = [i.name for i in session(path).get_inputs()]
    assert names == (["token", "h", "c"] if lstm else ["token", "h"])
    tokens = torch.randint(0, dm.vocab_size, (3, 12))  # 3 streams, 12 steps
    with torch.no_grad():
        want, _ = task(tokens)  # the whole sequence at once, from a zero state
    state = [
        np.zeros((task.encoder.num_layers, 3, task.encoder.hidden_size), np.float32)
        for _ in range(2 if lstm else 1)
    ]
    s = session(path)
    for t in range(tokens.shape[1]):
        logits, *state = s.run(None, dict(zip(names, [tokens[:, t].numpy(), *state], strict=True)))
        np.testing.assert_allclose(logits, want[:, t].numpy(), atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", params(["imdb_peephole", "imdb_swish_rnn"]))
def test_a_cell_without_onnx_operator_becomes_a_scan_over_any_length(checkpoints, tmp_path, name):
    """A cell of one's own (or a swish RNN) has no ONNX operator: its steps become an ONNX
    Scan (torch's scan under torch.export), which takes any length; length=N unrolls them
    at N steps instead."""
    import onnx

    ckpt = checkpoints(name)
    path = export(
        {"ckpt_path": str(ckpt), "format": "onnx", "out": str(tmp_path / "m.onnx")}, io.StringIO()
    )
    assert "Scan" in {n.op_type for n in onnx.load(str(path)).graph.node}
    for T in (3, 17):
        x = inputs_of(ckpt, 3, T)
        close(run_onnx(path, x), eager(ckpt, x))
    out = io.StringIO()
    fixed = export(
        {"ckpt_path": str(ckpt), "format": "onnx", "out": str(tmp_path / "f.onnx"), "length": 9},
        out,
    )
    assert "fixed at 9 steps" in out.getvalue()
    x = inputs_of(ckpt, 3, 9)
    close(run_onnx(fixed, x), eager(ckpt, x))


def test_onnx_layers_give_the_layers_numbers_in_pytorch_too():
    torch.manual_seed(0)
    for layer in (
        LSTM(6, 8, num_layers=2, bidirectional=True),
        GRU(6, 8, bidirectional=True),
        RNN(6, 8, nonlinearity="relu", num_layers=2),
        LSTM(6, 8, bias=False),
    ):
        layer.eval()
        swapped = with_onnx_layers(torch.nn.Sequential(layer))[0]
        assert isinstance(swapped, OnnxRecurrent)
        x, lengths = torch.randn(4, 7, 6), torch.tensor([7, 3, 1, 5])
        LD = layer.num_layers * layer.num_directions
        h0 = torch.randn(LD, 4, 8)
        state = (h0, torch.randn(LD, 4, 8)) if isinstance(layer, LSTM) else h0
        for kwargs in ({}, {"lengths": lengths}):
            want, got = layer(x, state, **kwargs), swapped(x, state, **kwargs)
            torch.testing.assert_close(got[0], want[0], atol=1e-6, rtol=0)
            torch.testing.assert_close(got[1], want[1], atol=1e-6, rtol=0)


# -- the same answers as seqmodels-predict and seqmodels-sample ----------------------------------


REVIEWS = ["A warm, funny film.", "an awful, boring film", "wonderful acting! loved it"]


def test_onnx_reproduces_predict_on_text(checkpoints, tmp_path):
    ckpt = checkpoints("imdb")
    path = export({"ckpt_path": str(ckpt), "format": "onnx"}, io.StringIO())
    assert path == ckpt.with_suffix(".onnx")  # beside the checkpoint by default
    reviews = tmp_path / "reviews.txt"
    reviews.write_text("\n".join(REVIEWS))
    results = predict({"ckpt_path": str(ckpt), "file": str(reviews)}, out=io.StringIO())
    _, _, dm = load_run(ckpt)
    ids, lengths = dm.encode_texts(REVIEWS)
    (probs,) = session(path).run(None, {"ids": ids.numpy(), "lengths": lengths.numpy()})
    meta = json.loads(session(path).get_modelmeta().custom_metadata_map["seqmodels"])
    for (_, label, p), row in zip(results, probs, strict=True):
        assert meta["class_names"][int(row.argmax())] == label
        assert abs(float(row.max()) - p) < 1e-4
    assert meta["vocabulary"][:2] == ["<pad>", "<unk>"]
    assert [meta["vocabulary"][i] for i in ids[0, : lengths[0]]] == [
        w if w in meta["vocabulary"] else "<unk>" for w in ["a", "warm", "funny", "film"]
    ]


def test_onnx_reproduces_predict_on_an_image(checkpoints, tmp_path):
    from PIL import Image

    ckpt = checkpoints("mnist")
    path = export({"ckpt_path": str(ckpt), "format": "onnx"}, io.StringIO())
    digit = np.zeros((28, 28), dtype=np.uint8)
    digit[5:23, 13:16] = 255
    Image.fromarray(digit).save(tmp_path / "digit.png")
    ((_, label, p),) = predict(
        {"ckpt_path": str(ckpt), "image": str(tmp_path / "digit.png")}, out=io.StringIO()
    )
    pixels = np.asarray(Image.open(tmp_path / "digit.png").convert("L"))[None]  # what a user reads
    (probs,) = session(path).run(None, {"images": pixels})
    assert str(int(probs[0].argmax())) == label and abs(float(probs[0].max()) - p) < 1e-4
    images, _ = read_images(tmp_path / "digit.png", (28, 28))
    assert np.array_equal(images.numpy(), pixels)


def test_onnx_reproduces_predict_on_a_csv(checkpoints, small_data, tmp_path):
    ckpt = checkpoints("forecast")
    path = export({"ckpt_path": str(ckpt), "format": "onnx"}, io.StringIO())
    frame = pd.read_csv(small_data / "series.csv", dtype=str, keep_default_na=False)
    recent = frame.iloc[-336 - 48 :].copy()
    recent.loc[recent.index[-48:], "Demand"] = ""
    recent.to_csv(tmp_path / "recent.csv", index=False)
    rows = predict({"ckpt_path": str(ckpt), "csv": str(tmp_path / "recent.csv")}, out=io.StringIO())
    _, _, dm = load_run(ckpt)
    batch, _ = dm.encode_csv(str(tmp_path / "recent.csv"))
    (forecast,) = session(path).run(
        None,
        {"past": batch.past.numpy(), "known": batch.known.numpy(), "snaive": batch.snaive.numpy()},
    )
    np.testing.assert_allclose(forecast[0], [v for _, v in rows], atol=1e-3, rtol=1e-6)


def test_onnx_steps_reproduce_greedy_sampling(checkpoints):
    ckpt = checkpoints("chargen")
    path = export({"ckpt_path": str(ckpt), "format": "onnx"}, io.StringIO())
    text = sample_checkpoint(
        str(ckpt), prime="to be", length=40, temperature=1e-6, out=io.StringIO()
    )
    s = session(path)
    meta = json.loads(s.get_modelmeta().custom_metadata_map["seqmodels"])
    chars = meta["characters"]
    _, task, _ = load_run(ckpt)
    state = [np.zeros((task.encoder.num_layers, 1, task.encoder.hidden_size), np.float32)] * 2
    made = "to be"
    for ch in made[:-1]:  # the prime, one step at a time
        _, *state = s.run(
            None, {"token": np.array([chars.index(ch)]), "h": state[0], "c": state[1]}
        )
    token = chars.index(made[-1])
    for _ in range(40):
        logits, *state = s.run(None, {"token": np.array([token]), "h": state[0], "c": state[1]})
        token = int(logits[0].argmax())
        made += chars[token]
    assert made == text.rstrip("\n")


@pytest.mark.slow
def test_a_real_mnist_model_gives_predicts_answers_on_real_digits(tmp_path):
    """Trained for 60 steps on the real digits; onnxruntime labels 500 real test digits as the
    checkpoint does, with its probabilities."""
    from seqmodels.data.mnist import MNISTDataModule

    root = real_data("mnist")
    with contextlib.redirect_stdout(io.StringIO()):
        train(
            compose_train(
                "experiment=mnist_row",
                f"data.root={root}",
                "trainer.max_epochs=1",
                "trainer.limit_train_batches=60",
                "trainer.limit_val_batches=2",
                "test=false",
                "logger=none",
                "trainer.enable_progress_bar=false",
                output_dir=tmp_path,
            )
        )
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    path = export({"ckpt_path": str(ckpt), "format": "onnx"}, io.StringIO())
    dm = MNISTDataModule(root=str(root), mode="row")
    dm.setup()
    digits = dm.splits["test"].images[:500]  # uint8 (500, 28, 28), as in the files
    (probs,) = session(path).run(None, {"images": digits.numpy()})
    _, task, saved = load_run(ckpt)
    with torch.no_grad():
        want = task.class_probabilities(saved.encode_images(digits))
    np.testing.assert_allclose(probs, want.numpy(), atol=1e-4)
    assert (probs.argmax(1) == want.argmax(1).numpy()).all()
    labels = dm.splits["test"].labels[:500].numpy()
    assert (probs.argmax(1) == labels).mean() > 0.5  # it learned something real


# -- pt2 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["imdb", "mnist", "forecast", "forecast_mq", "chargen"])
def test_pt2_round_trip(checkpoints, name, tmp_path):
    """torch.export's archive runs with the eager numbers on another batch size (and length,
    where the layers trace with a symbolic one). Needs seqmodels.nn's layers to trace under
    torch.export with lengths (the LSTM's `native` engine syncs on them today)."""
    ckpt = checkpoints(name)
    path = export(
        {"ckpt_path": str(ckpt), "format": "pt2", "out": str(tmp_path / "m.pt2")}, io.StringIO()
    )
    extra = {"seqmodels.json": ""}
    program = torch.export.load(str(path), extra_files=extra)
    assert json.loads(extra["seqmodels.json"])["task"].endswith(
        {"forecast": "Forecaster", "forecast_mq": "Forecaster", "chargen": "LanguageModel"}.get(
            name, "SequenceClassifier"
        )
    )
    fixed = "fixed_length" in json.loads(extra["seqmodels.json"])
    time = None if name != "imdb" or fixed else 9
    for batch in (1, 3):
        x = inputs_of(ckpt, batch, time if not fixed else load_run(ckpt)[2].max_len)
        got = program.module()(*x.values())
        got = list(got) if isinstance(got, tuple) else [got]
        close([g.detach() for g in got], eager(ckpt, x), tol=1e-5)


# -- one-line errors ---------------------------------------------------------------------------


class Echo(TaskModule):
    """A task module seqmodels-export does not know."""

    def __init__(self, size: int = 2) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.linear = torch.nn.Linear(size, size)


def test_mistakes_are_one_line(run_cli, checkpoints, tmp_path):
    ckpt = checkpoints("parity")
    cases = [
        (("format=tflite", f"ckpt_path={ckpt}"), "format=tflite: give format=onnx"),
        (("format=onnx", f"ckpt_path={tmp_path / 'none.ckpt'}"), "checkpoint not found"),
        (("format=onnx",), "no checkpoint given"),
        (("format=onnx", f"ckpt_path={ckpt}", f"out={tmp_path}"), "is a folder"),
    ]
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=False)
    checkpoint["seqmodels_config"]["task"] = {"_target_": f"{__name__}.Echo"}
    checkpoint["hyper_parameters"] = {"size": 2}
    checkpoint["state_dict"] = Echo().state_dict()
    torch.save(checkpoint, tmp_path / "echo.ckpt")
    cases.append(
        (("format=onnx", f"ckpt_path={tmp_path / 'echo.ckpt'}"), "cannot export a Echo checkpoint")
    )
    for args, message in cases:
        result = run_cli("export", *args)
        assert result.code == 1, result.err
        assert result.err.startswith("error: ") and message in result.err, result.err
        assert "Traceback" not in result.err and len(result.err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["echo.ckpt"]  # nothing written


def test_out_makes_its_folders_and_an_unwritable_out_is_one_line(run_cli, checkpoints, tmp_path):
    ckpt = checkpoints("parity")
    deep = tmp_path / "new" / "folders" / "model.pt2"
    result = run_cli("export", f"ckpt_path={ckpt}", "format=pt2", f"out={deep}")
    assert result.code == 0, result.err
    assert deep.is_file() and result.out.startswith(f"wrote {deep}")

    # a file where a folder should be stops even root (chmod does not): one line, said
    # before the export's work, naming the path
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    for out in (blocker / "model.onnx", blocker / "sub" / "model.onnx"):
        result = run_cli("export", f"ckpt_path={ckpt}", "format=onnx", f"out={out}")
        assert result.code == 1
        assert result.err.strip() == (
            f"error: cannot write {out}: {blocker} is a file, not a folder (no file was written)"
        )
    assert blocker.read_text() == "not a folder"


def test_without_the_export_extra_onnx_is_one_line(run_cli, checkpoints, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "onnxscript", None)  # import raises
    result = run_cli("export", f"ckpt_path={checkpoints('parity')}", "format=onnx")
    assert result.code == 1 and "pip install 'seqmodels[export]'" in result.err


def test_the_command_prints_what_it_wrote(run_cli, checkpoints):
    ckpt = checkpoints("parity")
    result = run_cli("export", f"ckpt_path={ckpt}", "format=onnx")
    assert result.code == 0, result.err
    lines = result.out.strip().splitlines()
    assert lines[0].startswith(f"wrote {ckpt.with_suffix('.onnx')}") and "1 LSTM" in lines[0]
    assert lines[1] == "inputs:  ids int64 (batch, time), lengths int64 (batch)"
    assert lines[-1].startswith("checked: onnxruntime gives PyTorch's outputs to ")
