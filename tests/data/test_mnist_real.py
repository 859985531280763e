"""MNIST on the real files (SEQMODELS_TEST_DATA/mnist): all 70,000 images verified, a short
row-MNIST run, and seqmodels-predict on real digits written as PNG files."""

from __future__ import annotations

import io

import numpy as np
import pytest
from support import compose_train, real_data

from seqmodels.data.mnist import MNISTDataModule

pytestmark = pytest.mark.slow


def test_the_real_files_load_verified():
    root = real_data("mnist")
    dm = MNISTDataModule(root=str(root), mode="row", verify=True)  # md5 of the .gz, counts
    dm.setup()
    assert [len(dm.splits[k]) for k in ("train", "val", "test")] == [55_000, 5_000, 10_000]
    train = dm.splits["train"].images.float() / 255
    assert abs(train.mean().item() - 0.1307) < 0.002 and abs(train.std().item() - 0.3081) < 0.002


@pytest.fixture(scope="module")
def row_checkpoint(tmp_path_factory):
    from seqmodels.train import train

    root = real_data("mnist")
    out = tmp_path_factory.mktemp("mnist_row")
    metrics = train(
        compose_train(
            "experiment=mnist_row",
            f"data.root={root}",
            "trainer.max_epochs=1",
            "trainer.enable_progress_bar=false",
            "logger=none",
            output_dir=out,
        )
    )
    return out / "checkpoints" / "last.ckpt", metrics


def test_one_epoch_of_row_mnist_beats_90_percent(row_checkpoint):
    _, metrics = row_checkpoint
    assert metrics["test/acc"] > 0.90  # on the official 10,000 test images


def test_predict_gets_real_digits_right(row_checkpoint, tmp_path):
    from PIL import Image

    from seqmodels.data.idx import read_idx
    from seqmodels.predict import predict

    ckpt, _ = row_checkpoint
    root = real_data("mnist")
    images = read_idx(root / "t10k-images-idx3-ubyte.gz")[:20]
    labels = read_idx(root / "t10k-labels-idx1-ubyte.gz")[:20]
    right = 0
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        path = tmp_path / f"digit_{i}.png"
        Image.fromarray(np.asarray(image, dtype=np.uint8)).save(path)
        ((_, predicted, p),) = predict(
            {"ckpt_path": str(ckpt), "image": str(path)}, out=io.StringIO()
        )
        right += predicted == str(int(label))
    assert right >= 19, f"{right}/20 real digits right"
