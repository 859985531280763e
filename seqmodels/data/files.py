"""Files written whole or not at all: write beside the target, then rename.

`atomic_write(path)` yields an open temporary file in the target's own folder
(so the final rename is atomic on every filesystem) and moves it into place
only when the `with` body finishes; an exception, or a kill, never leaves a
file under the final name. The file gets the permissions a plain `open()`
would give (0666 minus the umask), not mkstemp's owner-only 0600.

Temporary files are named `.<name>.<pid>.<random>.tmp`; one left behind by a
process that was killed (its pid is gone) is removed by the next writer of the
same file.

A file that cannot be written (a full disk, a quota, a read-only or foreign
folder, a folder that cannot be made because a file stands in its path) is
`CannotWrite`, one line naming the path and the cause; the target is left as
it was and the temporary file is removed. `writable_folder` makes a folder and
checks that files can be created in it, so a command that works for minutes
before it writes can say so at its start. `torch_save` is
torch.save through atomic_write, with torch's own report of a failed write
("unexpected pos ...") replaced by the OSError that caused it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import torch

from seqmodels.errors import UNWRITABLE, CannotWrite


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def remove_stale_temporaries(path: Path) -> None:
    """Delete `.<name>.<pid>.*.tmp` siblings of `path` whose writing process is gone."""
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        pid = tmp.name[len(path.name) + 2 :].split(".", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)


def blocking_file(path: Path) -> Path | None:
    """The first file (not a folder) on the way to `path`, which stops a mkdir, or None."""
    for parent in [*reversed(path.parents), path]:
        if parent.exists() and not parent.is_dir():
            return parent
    return None


def make_folder(folder: Path, name: Path) -> None:
    """mkdir -p `folder`; any refusal is CannotWrite naming `name` (what the user gave)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # ENOTDIR, EEXIST (a file in the way), EACCES, EROFS, ...
        blocker = blocking_file(folder)
        cause = (
            err if blocker is None else OSError(errno.ENOTDIR, f"{blocker} is a file, not a folder")
        )
        raise CannotWrite(name, cause) from None


def writable_folder(folder: str | os.PathLike, name: str | os.PathLike | None = None) -> None:
    """Make `folder` (and its parents) and check that a file can be created in it.

    Raises CannotWrite naming `name` (default: the folder) when it cannot."""
    folder = Path(folder)
    name = Path(name) if name is not None else folder
    make_folder(folder, name)
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise CannotWrite(name, err) from None


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside `path`; on success, fsync and rename it to `path`.

    A full disk or a folder that refuses the file is `CannotWrite` naming `path`."""
    path = Path(path)
    tmp = None
    make_folder(path.parent, path)
    try:
        remove_stale_temporaries(path)
        fd, tmp = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp"
        )
        os.close(fd)
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except OSError as err:
        if err.errno in UNWRITABLE:
            raise CannotWrite(path, err) from None
        raise
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)  # gone already after a successful rename


class _Recording:
    """A file for torch.save that keeps the OSError a write raised (torch reports only
    that its position went wrong)."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f = f
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self.f.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        self.f.flush()


def torch_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save into `path`, whole or not at all (atomic_write), CannotWrite when full."""
    with atomic_write(path) as f:
        out = _Recording(f)
        try:
            torch.save(obj, out)  # type: ignore[arg-type]
        except RuntimeError:
            if out.error is not None:
                raise out.error from None
            raise
