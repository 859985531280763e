"""The one exception type for a user's mistake.

Raise `UserError` (or a subclass) with a message that says what is wrong and
how to fix it. The command-line entry points print such errors as one line,
without a traceback, and exit with status 1. `HYDRA_FULL_ERROR=1` shows the
traceback anyway.

It subclasses ValueError so that library users (and `pytest.raises(ValueError)`)
see the type they expect for bad arguments. `CannotWrite` is the one for a
file the machine refuses (a full disk, a read-only folder): the user's to fix.
`Preempted` is not an error but a stop the commands also print as one line
(seqmodels.preemption raises it); it lives here so that the command line
catches it without loading Lightning.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

# What a full or closed filesystem answers: the user's to fix, not a bug.
UNWRITABLE = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EFBIG}


class UserError(ValueError):
    """Bad input from the user: a config value, a path, a file's contents."""


class CannotWrite(UserError):
    """A file that cannot be written: `path` and the cause (`strerror`)."""

    def __init__(self, path: str | os.PathLike, err: OSError) -> None:
        self.path, self.strerror = Path(path), err.strerror or str(err)
        kept = "it is left as it was" if self.path.exists() else "no file was written"
        super().__init__(f"cannot write {self.path}: {self.strerror} ({kept})")


class Preempted(BaseException):
    """The run stopped for a signal. Not an Exception: nothing between the trainer and the
    command line may take it for an error. `exit_status` is 128 + the signal's number."""

    def __init__(self, message: str, signum: int, hand_over: Callable[[], None] | None = None):
        super().__init__(message)
        self.signum, self.exit_status = signum, 128 + signum
        self.hand_over = hand_over  # submitit's requeue, where it runs the job
