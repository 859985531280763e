"""The one exception type for a user's mistake.

Raise `UserError` (or a subclass) with a message that says what is wrong and
how to fix it. The command-line entry points print such errors as one line,
without a traceback, and exit with status 1. `HYDRA_FULL_ERROR=1` shows the
traceback anyway.

It subclasses ValueError so that library users (and `pytest.raises(ValueError)`)
see the type they expect for bad arguments.
"""


class UserError(ValueError):
    """Bad input from the user: a config value, a path, a file's contents."""
