"""Runs that survive, for real: SIGKILL mid-run then resume= ends exactly where the
uninterrupted run ends; DDP metrics count every example once and print once."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from support import TEXT, run_dirs

pytestmark = pytest.mark.slow

KILLER = Path(__file__).with_name("kill_at_step.py")
SCRIPTS = Path(sys.executable).parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "0"}


def run(args, root, cwd):
    """A seqmodels command line, run in its own process, writing under root."""
    result = subprocess.run([*args, f"paths.root_dir={root}"], capture_output=True, text=True,
                            timeout=600, cwd=cwd, env=ENV)  # fmt: skip
    return result


def train_killed_at(step, overrides, root, cwd):
    return run([sys.executable, str(KILLER), str(step), *overrides], root, cwd)


def final_state(root):
    (folder,) = run_dirs(root)
    last = torch.load(folder / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    return folder, last


def printed_metric(stdout, name):
    line = next(x for x in stdout.splitlines() if x.startswith("test metrics:"))
    return float(line.split(f"{name}=")[1].split()[0])


def assert_resume_is_exact(overrides, steps_per_epoch, epochs, kill_steps, tmp_path, metric):
    whole = train_killed_at(10**9, overrides, tmp_path / "whole", tmp_path)
    assert whole.returncode == 0, whole.stderr[-3000:]
    _, reference = final_state(tmp_path / "whole")
    assert reference["global_step"] == steps_per_epoch * epochs
    for step in kill_steps:
        root = tmp_path / f"killed_at_{step}"
        killed = train_killed_at(step, overrides, root, tmp_path)
        assert killed.returncode == -9  # SIGKILL: nothing ran after it
        folder, partial = final_state(root)
        assert partial["global_step"] == step // steps_per_epoch * steps_per_epoch  # last epoch end
        resumed = run([str(SCRIPTS / "seqmodels-train"), f"resume={folder}"], root, tmp_path)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert run_dirs(root) == [folder]
        _, final = final_state(root)
        assert final["global_step"] == reference["global_step"]
        for name, tensor in reference["state_dict"].items():
            torch.testing.assert_close(final["state_dict"][name], tensor, atol=1e-6, rtol=0,
                                       msg=f"{name} after a kill at step {step}")  # fmt: skip
        assert printed_metric(resumed.stdout, metric) == pytest.approx(
            printed_metric(whole.stdout, metric), abs=1e-6)  # fmt: skip


def test_parity_killed_and_resumed_ends_like_the_uninterrupted_run(tmp_path):
    overrides = ["data.num_train=2000", "data.batch_size=64", "monitor.stop_at=null",
                 "trainer.max_epochs=10", "trainer.deterministic=true", "task.dropout=0.2",
                 "task.input_dropout=0.1", "trainer.enable_progress_bar=false"]  # fmt: skip
    steps, epochs = 2000 // 64 + 1, 10  # 32 steps per epoch (the last batch is short)
    kills = sorted(random.Random(0).sample(range(3 * steps, 8 * steps), 3))
    assert_resume_is_exact(overrides, steps, epochs, kills, tmp_path, "test/loss")


def test_chargen_killed_and_resumed_ends_like_the_uninterrupted_run(tmp_path):
    (tmp_path / "text.txt").write_text(TEXT * 4)
    overrides = ["task=chargen", f"data.path={tmp_path / 'text.txt'}", "data.batch_size=4",
                 "data.seq_len=16", "model.hidden_size=16", "model.num_layers=2",
                 "model.dropout=0.2", "task.dropout=0.1", "task.embedding_dim=8",
                 "task.sample_length=20", "trainer.max_epochs=4", "trainer.deterministic=true",
                 "trainer.enable_progress_bar=false"]  # fmt: skip
    chars = len(TEXT * 4)
    per_stream = (int(chars * 0.9) - 1) // 4
    steps = -(-per_stream // 16)
    assert_resume_is_exact(overrides, steps, 4, [steps * 2 + 3], tmp_path, "test/loss")


def test_ddp_counts_every_test_example_once_and_prints_once(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from seqmodels.checkpoint import load_run
    from seqmodels.evaluate import evaluate

    overrides = [
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.max_epochs=1",
        "data.num_train=512",
        "data.num_val=101",
        "data.num_test=1001",
        "trainer.enable_progress_bar=false",
    ]  # odd counts
    result = run([str(SCRIPTS / "seqmodels-train"), *overrides], tmp_path / "ddp", tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("test metrics:") == 1  # rank 0 only
    (folder,) = run_dirs(tmp_path / "ddp")
    events = EventAccumulator(str(folder))
    events.Reload()
    ddp = {k: events.Scalars(k)[-1].value for k in ("test/acc", "test/loss")}
    best = next((folder / "checkpoints").glob("epoch_*.ckpt"))
    _, _, datamodule = load_run(best)
    assert datamodule.num_test == 1001
    from omegaconf import OmegaConf

    single = evaluate(OmegaConf.create({"ckpt_path": str(best), "trainer": {
        "_target_": "lightning.pytorch.Trainer", "accelerator": "cpu", "devices": 1,
        "logger": False, "enable_progress_bar": False}}))  # fmt: skip
    for k, v in ddp.items():
        assert single[k] == pytest.approx(v, abs=1e-6), k
    evaluated = run(
        [
            str(SCRIPTS / "seqmodels-eval"),
            f"ckpt_path={best}",
            "trainer=ddp",
            "trainer.accelerator=cpu",
            "trainer.devices=2",
        ],
        tmp_path,
        tmp_path,
    )
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert evaluated.stdout.count("test metrics:") == 1
