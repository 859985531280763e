"""What TensorBoard shows: the dashboard layout, stable tags, run names, the HParams table,
media at the validation scalars' step, the gradient-through-time view."""

from __future__ import annotations

import numpy as np
import pytest
from support import run_dirs, small_data_overrides
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.custom_scalar import layout_pb2
from tensorboard.plugins.hparams import plugin_data_pb2

from seqmodels.tasks.gradient_flow import render
from seqmodels.tensorboard import HPARAMS, METRICS, SHOWN


def events_of(run):
    events = EventAccumulator(str(run), size_guidance={"images": 0, "tensors": 0})
    events.Reload()
    return events


def layout_of(events):
    """The Custom Scalars layout: [(category, chart title, tags)] in order."""
    (event,) = events.Tensors("custom_scalars__config__")[-1:]
    layout = layout_pb2.Layout()
    layout.ParseFromString(event.tensor_proto.string_val[0])
    return [
        (c.title, chart.title, [t.strip("^$").replace("\\", "") for t in chart.multiline.tag])
        for c in layout.category
        for chart in c.chart
    ]


def hparams_of(events):
    content = events.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    return experiment.experiment, start.session_start_info


def test_heatmap_has_one_panel_per_direction():
    one = render([np.linspace(-5, 0, 30)[None]] * 3)
    two = render([np.stack([np.linspace(-5, 0, 30), np.linspace(0, -5, 30)])] * 3)
    assert one.dtype == np.uint8 and one.shape[2] == 3 and one.shape[1] >= 640
    assert two.shape[0] > one.shape[0] and two.shape[1] == one.shape[1]


@pytest.mark.parametrize("task", ["mnist", "chargen"])
def test_media_go_at_the_validation_scalars_step(run_cli, small_data, tmp_path, task):
    result = run_cli(
        "train",
        f"task={task}",
        *small_data_overrides(task, small_data),
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=2",
        "trainer.enable_progress_bar=false",
        "model.hidden_size=8",
    )
    assert result.code == 0, result.err
    (run,) = run_dirs(tmp_path)
    events = events_of(run)
    val_steps = [e.step for e in events.Scalars("val/loss")]
    assert val_steps == [2, 5]
    media = {"mnist": ("val/digits", "images"), "chargen": ("val/sample/text_summary", "tensors")}
    tag, kind = media[task]
    got = events.Images(tag) if kind == "images" else events.Tensors(tag)
    assert [e.step for e in got] == val_steps
    assert [e.step for e in events.Images("grad_flow/steps")] == val_steps
    main = {
        "mnist": ("accuracy", ["train/acc", "val/acc"]),
        "chargen": ("bits per character", ["train/bpc", "val/bpc"]),
    }[task]
    # The dashboard opens on train vs validation: the loss, then the task's main metric.
    assert layout_of(events)[:2] == [
        ("train vs validation", "loss", ["train/loss", "val/loss"]),
        ("train vs validation", *main),
    ]


@pytest.mark.slow
def test_a_sweep_as_tensorboard_shows_it(run_cli, tmp_path):
    result = run_cli(
        "train",
        "-m",
        "model=rnn,gru",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=20",
        "trainer.log_every_n_steps=5",
        "trainer.enable_progress_bar=false",
    )
    assert result.code == 0, result.err
    runs = run_dirs(tmp_path)
    # Run folders (what the run selector shows) named by each job's overrides.
    names = "trainer.limit_train_batches=20,trainer.log_every_n_steps=5,trainer.max_epochs=2"
    assert [r.name for r in runs] == [f"0_model=rnn,{names}", f"1_model=gru,{names}"]
    assert all(r.parent.parent.name == "parity" for r in runs)  # outputs/parity/<time>-<tag>/
    for run, model in zip(runs, ("RNN", "GRU"), strict=True):
        events = events_of(run)
        scalars = set(events.Tags()["scalars"])
        assert "train/lr" in scalars and not any(t.startswith(("lr-", "hparams/")) for t in scalars)
        assert "epoch" not in scalars
        charts = {title: tags for _, title, tags in layout_of(events)}
        assert charts["loss"] == ["train/loss", "val/loss"]  # train and val on one chart
        (event,) = events.Tensors("custom_scalars__config__")[-1:]
        assert b"^train/loss$" in event.tensor_proto.string_val[0]  # not train/loss_step
        assert charts["learning rate"] == ["train/lr"]
        val_steps = [e.step for e in events.Scalars("val/acc")]
        assert [e.step for e in events.Images("grad_flow/steps")] == val_steps
        assert [e.step for e in events.Scalars("grad_flow/first_over_last")] == val_steps
        experiment, session = hparams_of(events)
        assert [h.name for h in experiment.hparam_infos] == [name for name, _, _ in HPARAMS]
        assert {h.name for h in experiment.hparam_infos if h.differs} == SHOWN
        assert [m.name.tag for m in experiment.metric_infos] == [tag for tag, _ in METRICS]
        values = session.hparams
        assert values["model"].string_value == model and values["task"].string_value == "parity"
        assert values["epochs"].number_value == 2 and values["params"].number_value > 0
        assert values["lr"].number_value == pytest.approx(0.003)
        assert "val/best_acc" in scalars and "test/acc" in scalars
