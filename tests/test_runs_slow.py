"""Runs that survive, for real: SIGKILL mid-run, a step checkpoint then SIGKILL, or a
scheduler's SIGTERM in the middle of an epoch, then resume=, ends exactly where the
uninterrupted run ends, for every task; a folder in use is refused; DDP metrics count
every example once and print once."""

from __future__ import annotations

import json
import os
import random
import signal as signal_module
import subprocess
import sys
import time
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
    result = subprocess.run(
        [*args, f"paths.root_dir={root}"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env=ENV,
    )
    return result


def train_killed_at(step, overrides, root, cwd, signal="SIGKILL"):
    return run([sys.executable, str(KILLER), str(step), signal, *overrides], root, cwd)


def final_state(root):
    (folder,) = run_dirs(root)
    last = torch.load(folder / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    return folder, last


def printed_metric(stdout, name):
    line = next(x for x in stdout.splitlines() if x.startswith("test metrics:"))
    return float(line.split(f"{name}=")[1].split()[0])


def assert_resume_is_exact(
    overrides,
    steps_per_epoch,
    epochs,
    kill_steps,
    tmp_path,
    metric,
    signal="SIGKILL",
    saved_at=None,
):
    """Stopped by `signal` at each of kill_steps, then resumed: the same final weights and
    test metric as the uninterrupted run. saved_at(step): the step last.ckpt holds then
    (default: the last epoch's end)."""
    whole = train_killed_at(10**9, overrides, tmp_path / "whole", tmp_path)
    assert whole.returncode == 0, whole.stderr[-3000:]
    _, reference = final_state(tmp_path / "whole")
    if steps_per_epoch is None:  # as many as the data gives
        steps_per_epoch = reference["global_step"] // epochs
        assert steps_per_epoch >= 3  # a middle to stop in
    assert reference["global_step"] == steps_per_epoch * epochs
    if callable(kill_steps):
        kill_steps = kill_steps(steps_per_epoch)
    for step in kill_steps:
        root = tmp_path / f"killed_at_{step}"
        killed = train_killed_at(step, overrides, root, tmp_path, signal)
        folder, partial = final_state(root)
        if signal == "SIGKILL":
            assert killed.returncode == -9  # nothing ran after it
        else:  # the step in progress finishes, last.ckpt holds it, one line, 128 + signal
            assert killed.returncode == 128 + getattr(signal_module, signal), killed.stderr[-3000:]
            epoch, batch = divmod(step, steps_per_epoch)
            line = (
                f"preempted by {signal} at step {step + 1} (epoch {epoch}, batch {batch + 1} "
                f"of {steps_per_epoch}): saved {folder / 'checkpoints' / 'last.ckpt'}; "
                f"continue with: seqmodels-train resume={folder}"
            )
            assert killed.stderr.strip().splitlines()[-1] == line
            assert "Traceback" not in killed.stderr
        expected = saved_at(step) if saved_at else step // steps_per_epoch * steps_per_epoch
        assert partial["global_step"] == expected
        resumed = run([str(SCRIPTS / "seqmodels-train"), f"resume={folder}"], root, tmp_path)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert run_dirs(root) == [folder]
        _, final = final_state(root)
        assert final["global_step"] == reference["global_step"]
        for name, tensor in reference["state_dict"].items():
            torch.testing.assert_close(
                final["state_dict"][name],
                tensor,
                atol=1e-6,
                rtol=0,
                msg=f"{name} after a kill at step {step}",
            )
        assert printed_metric(resumed.stdout, metric) == pytest.approx(
            printed_metric(whole.stdout, metric), abs=1e-6
        )


PARITY = [
    "data.num_train=2000",
    "data.batch_size=64",
    "monitor.stop_at=null",
    "trainer.max_epochs=10",
    "trainer.deterministic=true",
    "task.dropout=0.2",
    "task.input_dropout=0.1",
    "trainer.enable_progress_bar=false",
]
PARITY_STEPS = 32  # 2000 // 64 + 1 per epoch (the last batch is short)


def chargen(tmp_path):
    (tmp_path / "text.txt").write_text(TEXT * 4)
    overrides = [
        "task=chargen",
        f"data.path={tmp_path / 'text.txt'}",
        "data.batch_size=4",
        "data.seq_len=16",
        "model.hidden_size=16",
        "model.num_layers=2",
        "model.dropout=0.2",
        "task.dropout=0.1",
        "task.embedding_dim=8",
        "task.sample_length=20",
        "trainer.max_epochs=4",
        "trainer.deterministic=true",
        "trainer.enable_progress_bar=false",
    ]
    per_stream = (int(len(TEXT * 4) * 0.9) - 1) // 4
    return overrides, -(-per_stream // 16)


def test_parity_killed_and_resumed_ends_like_the_uninterrupted_run(tmp_path):
    kills = sorted(random.Random(0).sample(range(3 * PARITY_STEPS, 8 * PARITY_STEPS), 3))
    assert_resume_is_exact(PARITY, PARITY_STEPS, 10, kills, tmp_path, "test/loss")


def test_chargen_killed_and_resumed_ends_like_the_uninterrupted_run(tmp_path):
    overrides, steps = chargen(tmp_path)
    assert_resume_is_exact(overrides, steps, 4, [steps * 2 + 3], tmp_path, "test/loss")


@pytest.mark.parametrize("signal", ["SIGTERM", "SIGUSR1"])
def test_parity_preempted_mid_epoch_resumes_like_the_uninterrupted_run(tmp_path, signal):
    kills = [3 * PARITY_STEPS + 7, 6 * PARITY_STEPS + 20]
    assert_resume_is_exact(
        PARITY,
        PARITY_STEPS,
        10,
        kills,
        tmp_path,
        "test/loss",
        signal=signal,
        saved_at=lambda step: step + 1,
    )


def test_chargen_preempted_mid_epoch_carries_its_streams_on(tmp_path):
    overrides, steps = chargen(tmp_path)
    assert_resume_is_exact(
        overrides,
        steps,
        4,
        [steps + 5],
        tmp_path,
        "test/loss",
        signal="SIGTERM",
        saved_at=lambda step: step + 1,
    )


def test_parity_step_checkpoint_then_sigkill_resumes_exactly(tmp_path):
    every = ["callbacks.last_checkpoint.every_n_train_steps=5"]
    kills = [3 * PARITY_STEPS + 9, 7 * PARITY_STEPS + 23]  # 105, 247: not epoch ends

    def saved_at(step):  # the newest of the step checkpoints and the epoch ends before it
        return max(step // 5 * 5, step // PARITY_STEPS * PARITY_STEPS)

    assert_resume_is_exact(
        [*PARITY, *every], PARITY_STEPS, 10, kills, tmp_path, "test/loss", saved_at=saved_at
    )


def test_chargen_step_checkpoint_then_sigkill_resumes_exactly(tmp_path):
    overrides, steps = chargen(tmp_path)
    kill = steps * 2 + 4  # a step checkpoint every 3 steps: the last one is mid-epoch

    def saved_at(step):
        return max(step // 3 * 3, step // steps * steps)

    assert saved_at(kill) % steps
    assert_resume_is_exact(
        [*overrides, "callbacks.last_checkpoint.every_n_train_steps=3"],
        steps,
        4,
        [kill],
        tmp_path,
        "test/loss",
        saved_at=saved_at,
    )


@pytest.mark.parametrize("task", ["imdb", "mnist", "forecast", "seq2seq"])
def test_every_task_preempted_mid_epoch_resumes_like_the_uninterrupted_run(
    task, tmp_path, small_data
):
    from support import small_data_overrides

    overrides = [
        f"task={task}",
        *small_data_overrides(task, small_data),
        "trainer.max_epochs=3",
        "trainer.deterministic=true",
        "trainer.enable_progress_bar=false",
        "callbacks.early_stopping=null",
        "trainer.num_sanity_val_steps=0",
        "model.hidden_size=16",
    ]
    metric = "test/mae" if task == "forecast" else "test/loss"
    assert_resume_is_exact(
        overrides,
        None,
        3,
        lambda steps: [steps + steps // 2],
        tmp_path,
        metric,
        signal="SIGTERM",
        saved_at=lambda step: step + 1,
    )


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

    single = evaluate(
        OmegaConf.create(
            {
                "ckpt_path": str(best),
                "trainer": {
                    "_target_": "lightning.pytorch.Trainer",
                    "accelerator": "cpu",
                    "devices": 1,
                    "logger": False,
                    "enable_progress_bar": False,
                },
            }
        )
    )
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


def wait_for(predicate, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


def test_a_second_resume_of_a_running_folder_is_refused(tmp_path):
    first = subprocess.Popen(
        [
            str(SCRIPTS / "seqmodels-train"),
            *PARITY,
            "trainer.max_epochs=50",
            f"paths.root_dir={tmp_path}",
        ],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lock = wait_for(lambda: next(tmp_path.rglob("run.lock"), None))
        wait_for(lambda: (lock.parent / "checkpoints" / "last.ckpt").is_file())
        second = run(
            [str(SCRIPTS / "seqmodels-train"), f"resume={lock.parent}"], tmp_path, tmp_path
        )
        assert second.returncode == 1
        (line,) = second.stderr.strip().splitlines()
        assert line.startswith(f"error: {lock.parent} is in use: pid {first.pid} on host ")
    finally:
        first.send_signal(signal_module.SIGTERM)
        _, err = first.communicate(timeout=120)
    assert first.returncode == 143 and "preempted by SIGTERM" in err
    # Resumable once its holder is gone: one more epoch than the preempted run reached.
    last = torch.load(lock.parent / "checkpoints" / "last.ckpt", weights_only=False)
    again = run(
        [
            str(SCRIPTS / "seqmodels-train"),
            f"resume={lock.parent}",
            f"trainer.max_epochs={last['epoch'] + 2}",
        ],
        tmp_path,
        tmp_path,
    )
    assert again.returncode == 0, again.stderr[-2000:]


def test_a_full_disk_leaves_the_previous_checkpoint_loadable(run_cli, tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(small)],
        capture_output=True,
        text=True,
    )
    assert mount.returncode == 0, f"cannot mount a tmpfs here: {mount.stderr}"
    try:
        run_dir = small / "run"
        common = [
            "logger=none",
            "model.hidden_size=8",
            "task.embedding_dim=4",
            "data.num_train=256",
            "trainer.enable_progress_bar=false",
            "monitor.stop_at=null",
        ]
        assert (
            run_cli("train", *common, "trainer.max_epochs=1", f"hydra.run.dir={run_dir}").code == 0
        )
        last = run_dir / "checkpoints" / "last.ckpt"
        free = os.statvfs(small)
        (small / "filler").write_bytes(b"\0" * (free.f_bavail * free.f_frsize - 2048))
        result = run_cli("train", f"resume={run_dir}", "trainer.max_epochs=2")
        assert result.code == 1 and "Traceback" not in result.err
        (line,) = result.err.strip().splitlines()
        assert line.startswith("error: cannot write ") and "No space left on device" in line
        saved = torch.load(last, weights_only=False)  # whole and loadable
        assert saved["epoch"] == 0
        assert not [p for p in run_dir.rglob("*") if p.name.endswith(".tmp")]
    finally:
        # lazily: the in-process runs' log handlers may still hold cli.log open there
        subprocess.run(["umount", "--lazy", str(small)], check=False)


def test_a_preempted_submitit_job_requeues_and_ends_like_the_uninterrupted_run(tmp_path):
    whole = train_killed_at(10**9, PARITY, tmp_path / "whole", tmp_path)
    assert whole.returncode == 0, whole.stderr[-3000:]
    _, reference = final_state(tmp_path / "whole")
    root = tmp_path / "sweep"
    root.mkdir()
    sweep = subprocess.Popen(
        [
            str(SCRIPTS / "seqmodels-train"),
            "-m",
            "hydra/launcher=submitit_local",
            *PARITY,
            f"paths.root_dir={root}",
        ],
        cwd=root,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lock = wait_for(lambda: next(root.rglob("run.lock"), None))
    wait_for(lambda: (lock.parent / "checkpoints" / "last.ckpt").is_file())  # an epoch done
    pid = json.loads(lock.read_text())["pid"]
    os.kill(pid, signal_module.SIGUSR2)  # what submitit's own _interrupt() sends: preemption
    out, _ = sweep.communicate(timeout=600)
    assert sweep.returncode == 0, out[-3000:]
    (folder,) = run_dirs(root)
    logs = "".join(p.read_text() for p in root.rglob("*_log.*"))
    assert "preempted by SIGUSR2 at step" in logs
    assert f"submitit restarted this job: continuing {folder}" in logs
    final = torch.load(folder / "checkpoints" / "last.ckpt", weights_only=False)
    assert final["global_step"] == reference["global_step"]
    for name, tensor in reference["state_dict"].items():
        torch.testing.assert_close(final["state_dict"][name], tensor, atol=1e-6, rtol=0)
