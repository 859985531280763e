"""task=chargen through the framework, and seqmodels-sample on the checkpoint it writes."""

from __future__ import annotations

import io
import os
import pathlib
import subprocess
import sys

import pytest
import torch
from support import TEXT, compose_train

from seqmodels.checkpoint import CONFIG_KEY
from seqmodels.sample import sample_checkpoint
from seqmodels.train import train

SMALL = (
    "task=chargen",
    "model.hidden_size=16",
    "task.embedding_dim=8",
    "data.batch_size=4",
    "data.seq_len=16",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chargen")
    text = tmp / "text.txt"
    text.write_text(TEXT)
    train(
        compose_train(
            *SMALL,
            f"data.path={text}",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=2",
            "trainer.limit_val_batches=2",
            "test=false",
            output_dir=tmp / "run",
        )
    )
    text.unlink()  # sampling needs no text file
    return tmp / "run" / "checkpoints" / "last.ckpt"


def test_fast_dev_run_on_a_small_text(run_cli, tmp_path):
    (tmp_path / "text.txt").write_text(TEXT)
    result = run_cli("train", *SMALL, f"data.path={tmp_path / 'text.txt'}", "trainer=debug")
    assert result.code == 0, result.err
    assert "test/loss=" in result.out and "test/bpc=" in result.out and "test/ppl=" in result.out


def test_checkpoint_carries_the_vocabulary(checkpoint):
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    assert ckpt["CharTextDataModule"]["vocab"] == "".join(sorted(set(TEXT)))
    assert ckpt[CONFIG_KEY]["task"]["_target_"].endswith("LanguageModel")


def test_sample_streams_prime_then_length_characters(checkpoint, run_cli):
    args = (f"ckpt_path={checkpoint}", "prime=to be", "length=60", "temperature=0.8", "seed=3")
    first = run_cli("sample", *args).out
    assert first.startswith("to be") and first.endswith("\n")
    assert len(first) == len("to be") + 60 + 1 and set(first) <= set(TEXT)
    assert run_cli("sample", *args).out == first  # same seed, same text


class Recorder(io.StringIO):
    def __init__(self):
        super().__init__()
        self.events: list[str] = []

    def write(self, s):
        self.events.append("w" + s)
        return super().write(s)

    def flush(self):
        self.events.append("f")


def test_each_character_is_flushed_as_it_is_made(checkpoint):
    out = Recorder()
    text = sample_checkpoint(str(checkpoint), prime="the", length=25, seed=0, out=out)
    assert out.getvalue() == text + "\n" and len(text) == 3 + 25
    generated = out.events[2 : 2 + 2 * 25]  # after the prime and its flush
    assert all(e.startswith("w") and len(e) == 2 for e in generated[0::2])
    assert generated[1::2] == ["f"] * 25


@pytest.mark.parametrize(
    "override,message",
    [
        ("temperature=0", "error: temperature=0 must be > 0"),
        ("temperature=-0.5", "error: temperature=-0.5 must be > 0"),
        ("temperature=inf", "error: temperature=inf must be > 0"),
        ("length=-3", "error: length=-3 must be an integer >= 0"),
        # The text has ':' but no capitals.
        (
            "prime=ROMEO:",
            "error: 'ROMEO:' has 4 character(s) outside the model's vocabulary: "
            "'E' 'M' 'O' 'R'; use only",
        ),
    ],
)
def test_bad_input_is_one_clear_line(checkpoint, run_cli, override, message):
    result = run_cli("sample", f"ckpt_path={checkpoint}", override)
    err = result.err.strip()
    assert result.code == 1 and err.startswith(message) and "\n" not in err


def test_missing_checkpoint_is_one_clear_line(run_cli, tmp_path):
    result = run_cli("sample", f"ckpt_path={tmp_path / 'none.ckpt'}")
    assert (
        result.code == 1
        and result.err.startswith("error: ckpt_path=")
        and "checkpoint not found" in result.err
    )


def test_a_classifier_checkpoint_is_refused(run_cli, tmp_path):
    # A parity classifier checkpoint, written as seqmodels-train writes it.
    train(
        compose_train(
            "task=parity",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=2",
            "logger=none",
            "test=false",
            output_dir=tmp_path,
        )
    )
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    result = run_cli("sample", f"ckpt_path={ckpt}")
    assert result.code == 1
    assert result.err.strip() == (
        f"error: {ckpt} is a SequenceClassifier checkpoint, not a language model: "
        "seqmodels-sample needs a checkpoint trained with task=chargen"
    )


def test_each_validation_epoch_logs_a_text_sample_to_tensorboard(checkpoint):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(checkpoint.parents[1]))
    events.Reload()
    assert {"val/loss", "val/bpc", "val/ppl"} <= set(events.Tags()["scalars"])
    (sample,) = events.Tensors("val/sample/text_summary")  # one epoch, one sample
    text = sample.tensor_proto.string_val[0].decode()
    body = text.removeprefix("```\n").removesuffix("\n```")
    assert len(body) == 1 + 300 and set(body) <= set(TEXT)  # the prime "\n" + 300 characters


def test_backslash_n_in_the_prime_is_a_newline(checkpoint):
    # A command line cannot type a newline; the text has no backslash, so \n means one.
    out = io.StringIO()
    sample_checkpoint(str(checkpoint), prime="to\\nbe", length=3, seed=0, out=out)
    assert out.getvalue().startswith("to\nbe") and len(out.getvalue()) == 5 + 3 + 1


@pytest.mark.slow
def test_chargen_trains_under_ddp_with_two_cpu_processes(tmp_path):
    """trainer=ddp: Lightning relaunches the command once per process (so this runs
    the installed console script, not pytest); each process reads its own share."""
    text = tmp_path / "input.txt"
    text.write_text(TEXT * 4)
    script = pathlib.Path(sys.executable).parent / "seqmodels-train"
    result = subprocess.run(
        [
            str(script),
            "task=chargen",
            "trainer=ddp",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
            "trainer.max_epochs=1",
            "trainer.enable_progress_bar=false",
            "model.hidden_size=16",
            "data.batch_size=4",
            "data.seq_len=8",
            f"data.path={text}",
            "task.sample_length=20",
            "logger=csv",
            f"paths.root_dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test metrics: test/bpc=" in result.stdout
