"""Time per training step and per epoch of any recipe, on this machine.

Composes the train config with your overrides, builds the datamodule and task
module as seqmodels-train does, and times `--steps` optimizer steps through
Lightning (after `--warmup` untimed ones; no validation, no logger). Prints the
median step time and the projected epoch: median x steps per epoch, where steps
per epoch is the train dataloader's length or `--epoch-steps` (for a stand-in
dataset smaller than the real one).

    .venv/bin/python scripts/bench_epoch.py experiment=mnist_row
    .venv/bin/python scripts/bench_epoch.py experiment=mnist_pixel_cpu data.root=<MNIST folder>
    .venv/bin/python scripts/bench_epoch.py --epoch-steps 430 experiment=mnist_pixel_cpu \\
        data.root=<a stand-in: the t10k files as the training files> data.verify=false

`--losses` also prints every step's training loss (warm-up steps included), so two
runs that differ only in model.engine can be checked for the same loss curve.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("overrides", nargs="*", help="Hydra overrides, as for seqmodels-train")
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument(
        "--epoch-steps",
        type=int,
        default=0,
        help="steps per epoch to project to (0: the train dataloader's length)",
    )
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--losses", action="store_true", help="print every step's training loss")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    import lightning as L
    from hydra import compose, initialize_config_dir

    from seqmodels.cli import config_dir
    from seqmodels.train import build, set_numerics

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as out:
        with initialize_config_dir(config_dir(), version_base="1.3"):
            cfg = compose("train", overrides=[f"paths.output_dir={out}", *args.overrides])
        set_numerics(cfg)
        L.seed_everything(cfg.seed, verbose=False)
        datamodule, module = build(cfg)

        times: list[float] = []
        losses: list[float] = []

        class StepTimer(L.Callback):
            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                self.start = time.perf_counter()

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                if batch_idx >= args.warmup:
                    times.append(time.perf_counter() - self.start)
                if args.losses:
                    loss = outputs["loss"] if isinstance(outputs, dict) else outputs
                    losses.append(float(loss))

        trainer_cfg = {k: v for k, v in cfg.trainer.items() if k != "_target_"}
        trainer_cfg.update(
            max_epochs=1,
            max_steps=-1,
            max_time=None,
            fast_dev_run=False,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=0,
            limit_train_batches=args.warmup + args.steps,
            callbacks=[StepTimer()],
        )
        L.Trainer(**trainer_cfg).fit(module, datamodule=datamodule)

    epoch_steps = args.epoch_steps or len(datamodule.train_dataloader())
    step = statistics.median(times)
    print(
        f"{' '.join(args.overrides) or 'default run'} on {module.device} "
        f"(torch threads={torch.get_num_threads()}):"
    )
    print(
        f"  step: median {step * 1000:.1f} ms over {len(times)} steps "
        f"(min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f})"
    )
    epoch = step * epoch_steps
    print(f"  epoch of {epoch_steps} steps: {epoch:.0f} s = {epoch / 60:.1f} min (training only)")
    if args.losses:
        print("  losses: " + " ".join(f"{v:.7f}" for v in losses))


if __name__ == "__main__":
    main()
