"""Schedulers whose length comes from the trainer (seqmodels.tasks.optim)."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from seqmodels.tasks.optim import configure_optimizers

ONE_CYCLE = {
    "_target_": "torch.optim.lr_scheduler.OneCycleLR",
    "max_lr": 0.01,
    "pct_start": 0.1,
    "interval": "step",
}


class Tiny(L.LightningModule):
    def __init__(self, scheduler):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.scheduler = scheduler
        self.lrs: list[float] = []

    def training_step(self, batch, batch_idx):
        self.lrs.append(self.trainer.optimizers[0].param_groups[0]["lr"])
        return self.layer(batch[0]).pow(2).mean()

    def train_dataloader(self):
        data = torch.utils.data.TensorDataset(torch.randn(64, 2))
        return torch.utils.data.DataLoader(data, batch_size=4)

    def configure_optimizers(self):
        return configure_optimizers(
            self, {"_target_": "torch.optim.SGD", "lr": 0.1}, self.scheduler
        )


def fit(module, **trainer_args):
    trainer = L.Trainer(
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **trainer_args,
    )
    trainer.fit(module)
    return trainer


def test_one_cycle_spans_the_whole_run():
    module = Tiny(ONE_CYCLE)
    trainer = fit(module, max_epochs=2)  # 16 steps per epoch
    assert trainer.lr_scheduler_configs[0].scheduler.total_steps == 32
    peak = max(range(len(module.lrs)), key=module.lrs.__getitem__)
    assert peak == pytest.approx(0.1 * 32, abs=1)  # warm-up is pct_start of the run
    assert module.lrs[-1] < module.lrs[0]  # annealed by the end


@pytest.mark.parametrize("steps", [1, 3, 10])
def test_one_cycle_survives_a_run_of_a_few_steps(steps):
    # pct_start * steps - 1 <= 0 made OneCycleLR divide by zero before the first step.
    module = Tiny(ONE_CYCLE)
    fit(module, max_steps=steps)
    assert len(module.lrs) == steps
    assert module.lrs[0] == pytest.approx(0.01 / 25)  # the cycle's start (max_lr / div_factor)
    assert max(module.lrs) <= 0.01
