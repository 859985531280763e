"""What seqmodels writes to TensorBoard besides Lightning's scalars, in one place.

- `TensorBoardLogger`: Lightning's, writing into the run folder itself (so the
  run selector reads `<run_name>/<time>-<tag>`, or a sweep job's overrides),
  without the `epoch` scalar Lightning adds to every log call.
- `log_layout`: the Custom Scalars dashboard, written once per run: train and
  validation of the same metric on one chart (loss, then the task's main
  metric), then learning rate, gradient norm and gradient flow.
- `log_run`: the run's row in the HParams table: one column set for every
  task (`HPARAMS`, `METRICS`), the same in every run, so a table of runs of
  several tasks keeps every column. Five of the hparams columns are shown by
  default (`SHOWN`); tick the others in the HParams tab.
- `event_file` and `quiet_writer_threads`: an event file that cannot be written
  (a full disk) fails in TensorBoard's writer thread, which prints its own
  traceback; the error reaches the run at its next write, where train.py names
  the file in one line.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from google.protobuf import struct_pb2
from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger
from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

# The HParams table of every run, whatever its task: (name, type, description).
STRING, NUMBER, BOOL = (api_pb2.DATA_TYPE_STRING, api_pb2.DATA_TYPE_FLOAT64, api_pb2.DATA_TYPE_BOOL)
HPARAMS = [
    ("task", STRING, "the task= config"),
    ("model", STRING, "the recurrent layer: RNN, LSTM or GRU"),
    ("hidden_size", NUMBER, "units per layer"),
    ("lr", NUMBER, "the optimizer's learning rate"),
    ("params", NUMBER, "trainable parameters"),
    ("num_layers", NUMBER, "stacked recurrent layers"),
    ("bidirectional", BOOL, "both directions"),
    ("engine", STRING, "model.engine"),
    ("optimizer", STRING, "the optimizer's class"),
    ("weight_decay", NUMBER, "the optimizer's weight decay"),
    ("batch_size", NUMBER, "data.batch_size"),
    ("max_epochs", NUMBER, "trainer.max_epochs"),
    ("precision", STRING, "trainer.precision"),
    ("seed", NUMBER, "the run's seed"),
    ("epochs", NUMBER, "epochs trained"),
    ("train_minutes", NUMBER, "wall time of the fit"),
]
SHOWN = {"task", "model", "hidden_size", "lr", "params"}  # the columns on by default
METRICS = [
    ("val/best_acc", "best validation accuracy (the monitored metric of classifiers)"),
    ("val/best_loss", "best validation loss (the monitored metric of language models)"),
    ("test/acc", "test accuracy, of the best checkpoint"),
    ("test/loss", "test loss, of the best checkpoint"),
    ("test/bpc", "test bits per character (language models)"),
    ("val/best_mae", "best validation MAE (forecasting)"),
    ("test/mae", "test MAE (forecasting)"),
    ("test/mape", "test MAPE in percent (forecasting)"),
    ("test/rel_mae", "test MAE over the seasonal-naive MAE (forecasting)"),
    ("val/best_wer", "best validation sequence (word) error rate, greedy (seq2seq)"),
    ("test/wer", "test sequence (word) error rate, with the configured beam (seq2seq)"),
    ("test/per", "test token (phoneme) error rate, with the configured beam (seq2seq)"),
]


class TensorBoardLogger(LightningTensorBoardLogger):
    """Lightning's TensorBoardLogger without the `epoch` scalar (a card of no use)."""

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        super().log_metrics({k: v for k, v in metrics.items() if k != "epoch"}, step)

    def log_layout(self, charts: Mapping[str, Mapping[str, Sequence[str]]]) -> None:
        """Custom Scalars, category -> chart title -> tags: each chart plots its tags together."""
        # TensorBoard reads a chart's tags as regular expressions: anchor them, or
        # "train/loss" would draw train/loss_step too.
        layout = {
            category: {
                title: ["Multiline", [f"^{re.escape(t)}$" for t in tags]]
                for title, tags in group.items()
            }
            for category, group in charts.items()
        }
        self.experiment.add_custom_scalars(layout)

    def log_run(self, hparams: Mapping[str, Any], metrics: Mapping[str, float], step: int) -> None:
        """The run's HParams row; `metrics` are written as scalars the table reads."""
        writer = self.experiment
        for tag, value in metrics.items():
            writer.add_scalar(tag, value, step)
        # `differs` orders TensorBoard's columns and shows the first five: here, SHOWN.
        infos = [
            api_pb2.HParamInfo(name=name, type=kind, description=text, differs=name in SHOWN)
            for name, kind, text in HPARAMS
        ]
        metric_infos = [
            api_pb2.MetricInfo(name=api_pb2.MetricName(tag=tag), description=text)
            for tag, text in METRICS
        ]
        start = plugin_data_pb2.SessionStartInfo()
        for name, value in hparams.items():
            start.hparams[name].CopyFrom(_value(value))
        end = plugin_data_pb2.SessionEndInfo(status=api_pb2.STATUS_SUCCESS)
        file_writer = writer._get_file_writer()
        for tag, data in (
            (
                metadata.EXPERIMENT_TAG,
                plugin_data_pb2.HParamsPluginData(
                    experiment=api_pb2.Experiment(hparam_infos=infos, metric_infos=metric_infos)
                ),
            ),
            (
                metadata.SESSION_START_INFO_TAG,
                plugin_data_pb2.HParamsPluginData(session_start_info=start),
            ),
            (
                metadata.SESSION_END_INFO_TAG,
                plugin_data_pb2.HParamsPluginData(session_end_info=end),
            ),
        ):
            data.version = metadata.PLUGIN_DATA_VERSION
            plugin = SummaryMetadata.PluginData(
                plugin_name=metadata.PLUGIN_NAME, content=data.SerializeToString()
            )
            summary = Summary(
                value=[Summary.Value(tag=tag, metadata=SummaryMetadata(plugin_data=plugin))]
            )
            file_writer.add_summary(summary, step)
        writer.flush()


def _value(value: Any) -> struct_pb2.Value:
    if isinstance(value, bool):
        return struct_pb2.Value(bool_value=value)
    if isinstance(value, (int, float)):
        return struct_pb2.Value(number_value=float(value))
    return struct_pb2.Value(string_value=str(value))


def event_file(logger: Any) -> str:
    """The event file a TensorBoard logger writes (its folder when it has none yet)."""
    writer = getattr(
        getattr(getattr(logger, "_experiment", None), "file_writer", None), "event_writer", None
    )
    return str(getattr(writer, "_file_name", None) or logger.log_dir)


@contextlib.contextmanager
def quiet_writer_threads() -> Iterator[None]:
    """No traceback from TensorBoard's writer thread for an OSError (the run reports it)."""
    previous = threading.excepthook

    def hook(args: Any) -> None:
        if (
            isinstance(args.exc_value, OSError)
            and type(args.thread).__name__ == "_AsyncWriterThread"
        ):
            return
        previous(args)

    threading.excepthook = hook
    try:
        yield
    finally:
        threading.excepthook = previous
