"""A full disk or an unwritable folder is one line naming the file and the cause, exit 1;
the previous checkpoint stays whole and loadable and no partial file is left (fast: an
ENOSPC injected at the write; the slow test in test_runs_slow.py fills a real tmpfs)."""

from __future__ import annotations

import errno
import io

import pytest
import torch
from support import run_dirs

from seqmodels.data import files
from seqmodels.data.files import torch_save
from seqmodels.errors import CannotWrite

SMALL = (
    "data.num_train=256",
    "data.num_val=64",
    "data.num_test=64",
    "data.batch_size=32",
    "monitor.stop_at=null",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
)


class FullDisk:
    """`open` for files.py whose files refuse writes (ENOSPC) once `full` is set."""

    def __init__(self):
        self.full = False

    def __call__(self, path, mode="r", *args, **kwargs):
        f = io.open(path, mode, *args, **kwargs)  # noqa: UP020
        disk, write = self, f.write

        def refusing(data):
            if disk.full:
                raise OSError(errno.ENOSPC, "No space left on device")
            return write(data)

        f.write = refusing
        return f


def test_torch_save_on_a_full_disk_names_the_file_and_leaves_the_old_one(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    torch_save({"w": torch.ones(3)}, path)
    disk = FullDisk()
    monkeypatch.setattr(files, "open", disk, raising=False)
    disk.full = True
    with pytest.raises(CannotWrite) as err:
        torch_save({"w": torch.zeros(10_000)}, path)  # torch says only "unexpected pos"
    assert str(err.value) == f"cannot write {path}: No space left on device (it is left as it was)"
    assert torch.load(path)["w"].tolist() == [1.0, 1.0, 1.0]
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file


def test_a_folder_that_refuses_the_file_is_one_line(tmp_path, monkeypatch):
    def refused(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(files.tempfile, "mkstemp", refused)
    with pytest.raises(CannotWrite) as err:
        torch_save({}, tmp_path / "x.ckpt")
    assert str(err.value) == (
        f"cannot write {tmp_path / 'x.ckpt'}: Permission denied (no file was written)"
    )


def test_a_full_disk_at_a_checkpoint_is_one_line_and_keeps_the_last_one(
    run_cli, tmp_path, monkeypatch
):
    from seqmodels import checkpoint

    disk = FullDisk()
    monkeypatch.setattr(files, "open", disk, raising=False)

    class FillAtEpoch1(checkpoint.RunState):
        def on_train_epoch_start(self, trainer, pl_module):
            super().on_train_epoch_start(trainer, pl_module)
            disk.full = trainer.current_epoch >= 1

    monkeypatch.setattr("seqmodels.train.RunState", FillAtEpoch1)
    result = run_cli("train", *SMALL, "trainer.max_epochs=3", "logger=none")
    assert result.code == 1 and "Traceback" not in result.err
    (run,) = run_dirs(tmp_path)
    (line,) = result.err.strip().splitlines()
    assert line == (
        f"error: cannot write {run / 'checkpoints' / 'epoch_001.ckpt'}: "
        "No space left on device (no file was written)"
    )
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["epoch"] == 0 and last["global_step"] == 8  # the previous one, whole
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]
