"""seqmodels-train that sends itself a signal (SIGKILL unless told) at optimizer step N,
for the resume and preemption tests.

    python tests/kill_at_step.py N [SIGNAL] [overrides ...]

A real signal, not an exception. SIGKILL: nothing runs after it (no teardown, no
flush), as when a machine loses power or the OOM killer strikes. SIGTERM or
SIGUSR1: what a scheduler sends before it stops a job.
"""

import os
import signal
import sys

from seqmodels import checkpoint, cli
from seqmodels import train as train_module

STEP = int(sys.argv.pop(1))
SIGNAL = (
    signal.Signals[sys.argv.pop(1)]
    if sys.argv[1:2] and sys.argv[1].startswith("SIG")
    else signal.SIGKILL
)


class KillAtStep(checkpoint.RunState):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        super().on_train_batch_start(trainer, pl_module, batch, batch_idx)
        if trainer.global_step == STEP and not getattr(self, "sent", False):
            self.sent = True
            os.kill(os.getpid(), SIGNAL)


train_module.RunState = KillAtStep  # type: ignore[misc]
cli.train()
