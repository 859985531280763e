"""The inference contract of TaskModule: seqmodels-predict, -export and -sample ask the task
module, so a task of one's own works with the commands without a change to them, and a
task that does not support a command says so in one line."""

from __future__ import annotations

import io

import pytest
import torch
from support import compose_train

from seqmodels.errors import UserError
from seqmodels.predict import predict
from seqmodels.sample import sample_checkpoint
from seqmodels.tasks.base import TaskModule
from seqmodels.tasks.inference import PredictInputs, Prediction
from seqmodels.train import train


class Shout(TaskModule):
    """A task of one's own that answers text= with the text in capitals."""

    def __init__(self, size: int = 2) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.linear = torch.nn.Linear(size, size)

    def read_request(self, datamodule, request):
        if request.get("text") is None:
            raise UserError("Shout reads text=")
        return PredictInputs([str(request["text"])], ["text"])

    def predict_request(self, inputs, request):
        return [t.upper() * int(request.get("nbest") or 1) for t in inputs.batch]

    def format_prediction(self, datamodule, inputs, predicted):
        rows = list(zip(inputs.names, predicted, strict=True))
        return Prediction([f"{p}  {n}" for n, p in rows], rows)


@pytest.fixture(scope="module")
def shout_checkpoint(tmp_path_factory):
    """A parity run's checkpoint whose task is Shout (as seqmodels-train writes one)."""
    out = tmp_path_factory.mktemp("shout")
    with torch.random.fork_rng():
        train(
            compose_train(
                "task=parity",
                "trainer.max_epochs=1",
                "trainer.limit_train_batches=2",
                "trainer.limit_val_batches=1",
                "trainer.enable_progress_bar=false",
                "logger=none",
                "test=false",
                output_dir=out,
            )
        )
    checkpoint = torch.load(
        out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False
    )
    checkpoint["seqmodels_config"]["task"] = {"_target_": f"{__name__}.Shout"}
    checkpoint["hyper_parameters"] = {"size": 2}
    checkpoint["state_dict"] = Shout().state_dict()
    torch.save(checkpoint, out / "shout.ckpt")
    return out / "shout.ckpt"


def test_predict_asks_the_task_for_reading_running_and_printing(shout_checkpoint):
    out = io.StringIO()
    rows = predict({"ckpt_path": str(shout_checkpoint), "text": "hi", "nbest": 2}, out=out)
    assert rows == [("text", "HIHI")]  # the options reach the task (nbest)
    assert out.getvalue() == "HIHI  text\n"
    with pytest.raises(UserError, match="Shout reads text="):
        predict({"ckpt_path": str(shout_checkpoint), "csv": "x.csv"}, out=io.StringIO())


def test_what_a_task_does_not_support_is_one_line_naming_it(shout_checkpoint, run_cli):
    result = run_cli("export", f"ckpt_path={shout_checkpoint}", "format=pt2")
    assert result.code == 1 and "Traceback" not in result.err
    assert result.err.strip() == (
        "error: seqmodels-export cannot export a Shout checkpoint: the task does not define "
        "an inference program (TaskModule.inference_program)"
    )
    with pytest.raises(UserError, match="is a Shout checkpoint, not a language model"):
        sample_checkpoint(str(shout_checkpoint), out=io.StringIO())
    task = Shout()
    assert not task.can_sample()
    with pytest.raises(UserError, match="this is a Shout checkpoint, which does not generate"):
        next(iter(task.sample(None)))
    with pytest.raises(UserError, match="cannot use a Shout checkpoint"):
        TaskModule.read_request(task, None, {"text": "x"})
