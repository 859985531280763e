"""seqmodels-train that kills itself with SIGKILL at optimizer step N (for the resume tests).

    python tests/kill_at_step.py N [overrides ...]

A real kill, not an exception: nothing runs after it (no teardown, no flush), as
when a machine loses power or the OOM killer strikes.
"""

import os
import signal
import sys

from seqmodels import checkpoint, cli
from seqmodels import train as train_module

STEP = int(sys.argv.pop(1))


class KillAtStep(checkpoint.RunState):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == STEP:
            os.kill(os.getpid(), signal.SIGKILL)


train_module.RunState = KillAtStep  # type: ignore[misc]
cli.train()
