"""MNISTDataModule: local folders, modes, verification, permutation state, TensorBoard."""

import io
import urllib.error

import numpy as np
import pytest
import torch
from support import compose_train, real_data
from support import write_synthetic_mnist as synthetic_mnist

from seqmodels.data import download as download_module
from seqmodels.data.download import ChecksumError, DownloadError
from seqmodels.data.idx import write_idx
from seqmodels.data.mnist import (
    FILES,
    MEAN,
    STD,
    MNISTDataModule,
    from_sequence,
    shift_image,
    to_sequence,
)
from seqmodels.errors import UserError


@pytest.fixture
def root(mnist_root):
    return mnist_root


def dm_for(root, **kw):
    kw = {"verify": False, "val_size": 8, "batch_size": 4, **kw}
    return MNISTDataModule(root=str(root), **kw)


@pytest.mark.parametrize(
    "mode, shape, input_size",
    [("row", (4, 28, 28), 28), ("pixel", (4, 784, 1), 1), ("pixel_permuted", (4, 784, 1), 1)],
)
def test_batches_per_mode(root, mode, shape, input_size):
    dm = dm_for(root, mode=mode)
    dm.prepare_data()  # all files local: no download attempted
    dm.setup()
    assert [len(dm.splits[k]) for k in ("train", "val", "test")] == [40, 8, 16]
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == shape and x.dtype == torch.float32 and y.dtype == torch.int64
    assert dm.model_kwargs == {"num_classes": 10, "input_size": input_size}
    assert dm.class_names == [str(d) for d in range(10)]


def test_encoding_matches_pixels(root):
    arrays = synthetic_mnist(root)
    images = torch.from_numpy(arrays["t10k-images-idx3-ubyte.gz"])
    sets = {}
    for mode in ("row", "pixel", "pixel_permuted"):
        dm = dm_for(root, mode=mode, permutation_seed=3)
        dm.setup("test")
        sets[mode] = (dm, torch.stack([dm.splits["test"][i][0] for i in range(len(images))]))
    row, pixel = sets["row"][1], sets["pixel"][1]
    expected = (images.float() / 255 - MEAN) / STD
    torch.testing.assert_close(row, expected)
    torch.testing.assert_close(pixel[:, :, 0], expected.flatten(1))
    dm, permuted = sets["pixel_permuted"]
    perm = dm.permutation
    assert sorted(perm.tolist()) == list(range(784)) and not torch.equal(perm, torch.arange(784))
    torch.testing.assert_close(permuted[:, :, 0], pixel[:, perm, 0])
    # the inverse used for TensorBoard brings back the original digits
    torch.testing.assert_close(from_sequence(permuted, "pixel_permuted", perm), images / 255)


def test_shift_image_moves_the_digit_and_fills_with_background():
    image = torch.arange(1, 28 * 28 + 1).reshape(28, 28)
    moved = shift_image(image, 2, -1)  # two rows down, one column left
    torch.testing.assert_close(moved[2:, :-1], image[:-2, 1:])
    assert (moved[:2] == 0).all() and (moved[:, -1] == 0).all()
    torch.testing.assert_close(shift_image(image, 0, 0), image)


def test_augment_shift_moves_training_digits_only(root):
    plain, shifted = dm_for(root), dm_for(root, augment_shift=2)
    for dm in (plain, shifted):
        dm.setup()
    torch.manual_seed(0)
    draws = torch.stack([shifted.splits["train"][0][0] for _ in range(20)])
    original = plain.splits["train"][0][0]
    assert any(not torch.equal(d, original) for d in draws)  # a new shift on each read
    for d in draws:  # each one is the original moved by at most 2 pixels each way
        digit = (d * STD + MEAN) * 255
        assert any(
            torch.allclose(digit, shift_image((original * STD + MEAN) * 255, dy, dx), atol=1e-3)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
        )
    for split in ("val", "test"):
        torch.testing.assert_close(shifted.splits[split][0][0], plain.splits[split][0][0])
    with pytest.raises(UserError, match="data.augment_shift=28 must be 0"):
        dm_for(root, augment_shift=28)


def test_normalisation_on_real_test_set_is_close_to_standard():
    """MEAN/STD are the training set's; the real test set must land near 0 mean, 1 std."""
    dm = MNISTDataModule(root=str(real_data("mnist")), mode="pixel")
    dm.setup("test")
    x = to_sequence(dm.splits["test"].images, "row")
    assert abs(x.mean().item()) < 0.02 and abs(x.std().item() - 1) < 0.02


def test_real_test_set_verified():
    dm = MNISTDataModule(root=str(real_data("mnist")), mode="row", verify=True)
    dm.setup("test")  # checks md5 and counts; needs no training images
    assert len(dm.splits["test"]) == 10_000
    x, y = dm.splits["test"][0]
    assert y.item() == 7 and x.shape == (28, 28)


def test_validation_split_is_seeded_and_disjoint(root):
    a, b, c = dm_for(root), dm_for(root), dm_for(root, split_seed=1)
    for dm in (a, b, c):
        dm.setup("fit")

    def key(dm, k):
        return sorted(
            tuple(dm.splits[k].images[i].flatten()[:8].tolist()) for i in range(len(dm.splits[k]))
        )

    assert key(a, "val") == key(b, "val") and key(a, "val") != key(c, "val")
    assert not set(key(a, "val")) & set(key(a, "train"))
    frac = dm_for(root, val_size=0.25)
    frac.setup("fit")
    assert len(frac.splits["val"]) == 12
    with pytest.raises(
        UserError, match=r"data.val_size=48 leaves no training or no validation images out of 48"
    ):
        dm_for(root, val_size=48).setup("fit")


def test_verify_rejects_non_canonical_files(root):
    with pytest.raises(ChecksumError, match=r"md5 checksum mismatch.*pass data.verify=false"):
        MNISTDataModule(root=str(root), verify=True).setup("test")


def test_verify_checks_counts_of_uncompressed_files(tmp_path):
    synthetic_mnist(tmp_path, gz=False)
    with pytest.raises(UserError, match=r"test has 16 images .* canonical MNIST has 10000"):
        MNISTDataModule(root=str(tmp_path), verify=True).setup("test")


def test_torchvision_layout_uncompressed(tmp_path):
    synthetic_mnist(tmp_path / "MNIST" / "raw", gz=False)
    dm = dm_for(tmp_path)
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.splits["train"]) == 40


def test_bad_files_are_clear_errors(root):
    write_idx(root / "t10k-labels-idx1-ubyte.gz", np.full(16, 12, dtype=np.uint8))
    with pytest.raises(UserError, match=r"labels must be digits 0..9, found 12"):
        dm_for(root).setup("test")
    write_idx(root / "t10k-labels-idx1-ubyte.gz", np.zeros(15, dtype=np.uint8))
    with pytest.raises(UserError, match=r"\(15,\) labels for 16 images"):
        dm_for(root).setup("test")
    write_idx(root / "t10k-images-idx3-ubyte.gz", np.zeros((15, 32, 32), dtype=np.uint8))
    with pytest.raises(UserError, match=r"images of shape \(32, 32\) .* needs uint8 images"):
        dm_for(root).setup("test")
    with pytest.raises(UserError, match="data.mode=rows is not an MNIST mode"):
        MNISTDataModule(root=str(root), mode="rows")


def test_offline_names_all_files_and_override(tmp_path, monkeypatch):
    synthetic_mnist(tmp_path)
    (tmp_path / "train-images-idx3-ubyte.gz").unlink()
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(download_module.urllib.request, "urlopen", offline)
    with pytest.raises(DownloadError) as e:
        dm_for(tmp_path).prepare_data()
    message = str(e.value)
    assert "\n" not in message
    assert "train-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz" in message
    assert "ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz" in message
    assert "data.root=" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == [  # nothing half-written
        "t10k-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
    ]


def test_permutation_state_round_trip(root):
    trained = dm_for(root, mode="pixel_permuted", permutation_seed=1)
    state = trained.state_dict()
    # a checkpoint must hold plain types torch.load(weights_only=True) accepts
    buffer = __import__("io").BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    restored = dm_for(root, mode="pixel_permuted", permutation_seed=2)
    restored.setup("test")  # datasets built before the state arrives (Lightning's order)
    assert not torch.equal(restored.permutation, trained.permutation)
    restored.load_state_dict(state)
    assert torch.equal(restored.permutation, trained.permutation)
    trained.setup("test")
    torch.testing.assert_close(restored.splits["test"][3][0], trained.splits["test"][3][0])
    with pytest.raises(UserError, match="trained with data.mode=pixel_permuted, not data.mode=row"):
        dm_for(root, mode="row").load_state_dict(state)


class RecordingWriter:
    def __init__(self):
        self.images, self.texts = {}, {}

    def add_image(self, tag, image, step, dataformats):
        assert dataformats == "HWC"
        self.images[tag] = (image, step)

    def add_text(self, tag, text, step):
        self.texts[tag] = (text, step)


@pytest.mark.parametrize("mode", ["row", "pixel_permuted"])
def test_log_examples_draws_the_same_digits_every_epoch(root, mode):
    dm = dm_for(root, mode=mode)
    dm.setup("fit")
    x, y = dm.example_batch()
    assert len(y) == 8 and torch.equal(x, dm.example_batch()[0])  # val_size=8: all of them
    probs = torch.nn.functional.one_hot(y, 10).float()
    probs[1] = torch.nn.functional.one_hot((y[1] + 1) % 10, 10).float() * 0.75
    writer = RecordingWriter()
    dm.log_examples(writer, (x, y, None), probs, global_step=7)
    grid, step = writer.images["val/digits"]
    assert step == 7 and grid.dtype == np.uint8 and grid.ndim == 3 and grid.shape[2] == 3
    # first tile: the digit itself, upscaled 2x, under a 12-pixel caption strip
    digit = np.rint(from_sequence(x[0], mode, dm.permutation).numpy() * 255)
    tile = grid[2 + 12 : 2 + 12 + 56 : 2, 2 : 2 + 56 : 2, 0]
    assert np.abs(tile.astype(int) - digit).max() <= 1
    text, _ = writer.texts["val/digits"]
    assert text.startswith("7/8 right (the same validation digits every epoch")
    assert f"1: predicted {(y[1].item() + 1) % 10} (0.75), true {y[1].item()}" in text
    # the captions are drawn in colour: green for right, red for wrong
    caption = grid[2:14, 2 + 60 : 2 + 60 + 56].reshape(-1, 3)
    assert (caption[:, 0] > 200).any() and not (caption[:, 1] > 200).any()


def test_log_examples_with_real_tensorboard(root, tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    dm = dm_for(root, mode="pixel")
    dm.setup("fit")
    x, y = dm.example_batch()
    with SummaryWriter(tmp_path / "tb") as writer:
        dm.log_examples(writer, (x, y, None), torch.rand(len(y), 10).softmax(-1), 0)
    assert list((tmp_path / "tb").glob("events.out.tfevents*"))


# -- through the framework: recipes, checkpoints, TensorBoard -------------------------------


def mnist_cfg(experiment, root, out, *overrides):
    return compose_train(
        f"experiment={experiment}",
        f"data.root={root}",
        "data.verify=false",
        "data.val_size=8",
        "data.batch_size=4",
        "model.hidden_size=8",  # the recipes' sizes are for real training
        *overrides,
        output_dir=out,
    )


@pytest.mark.parametrize(
    "experiment, mode",
    [("mnist_row", "row"), ("mnist_pixel", "pixel"), ("mnist_pixel_permuted", "pixel_permuted")],
)
def test_recipe_fast_dev_run(root, tmp_path, experiment, mode):
    from seqmodels.train import train

    # anomaly detection makes 784-step backward passes several times slower; row keeps it
    anomaly = "true" if mode == "row" else "false"
    cfg = mnist_cfg(
        experiment, root, tmp_path / "run", "trainer=debug", f"trainer.detect_anomaly={anomaly}"
    )
    assert cfg.data.mode == mode
    metrics = train(cfg)
    assert {"test/acc", "test/loss"} <= metrics.keys()


def test_checkpoint_carries_the_permutation(root, tmp_path, monkeypatch):
    import lightning as L
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from seqmodels.checkpoint import load_run
    from seqmodels.data.mnist import draw_permutation
    from seqmodels.predict import ascii_image, predict
    from seqmodels.train import train

    out = tmp_path / "run"
    cfg = mnist_cfg(
        "mnist_pixel_permuted",
        root,
        out,
        "trainer=cpu",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "trainer.num_sanity_val_steps=0",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "data.permutation_seed=7",
    )
    train(cfg)
    ckpt = out / "checkpoints" / "last.ckpt"
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert torch.equal(saved["MNISTDataModule"]["permutation"], draw_permutation(7))

    # The checkpoint's own copy wins over what its config would draw again.
    saved["seqmodels_config"]["data"]["permutation_seed"] = 0
    torch.save(saved, tmp_path / "tampered.ckpt")
    _, module, dm = load_run(tmp_path / "tampered.ckpt")
    assert torch.equal(dm.permutation, draw_permutation(7))

    # Predict encodes a digit with it, exactly as training saw the digit.
    digit = np.zeros((28, 28), dtype=np.uint8)
    digit[5:23, 13:15] = 255
    np.save(tmp_path / "one.npy", digit)
    x = dm.encode_images(torch.from_numpy(digit)[None])
    torch.testing.assert_close(
        x[0], to_sequence(torch.from_numpy(digit), "pixel_permuted", draw_permutation(7))
    )
    assert module(x).shape == (1, 10)
    printed = io.StringIO()
    request = {"ckpt_path": str(tmp_path / "tampered.ckpt"), "image": str(tmp_path / "one.npy")}
    [(name, label, p)] = predict(request, out=printed)
    assert label in dm.class_names and 0.1 <= p <= 1.0  # the top of 10 probabilities
    assert printed.getvalue().startswith(f"{label}  {p:.3f}  {tmp_path / 'one.npy'}\n")
    assert ascii_image(torch.from_numpy(digit)) in printed.getvalue()  # the digit is drawn
    every = printed.getvalue().rstrip("\n").splitlines()[-1].split()  # "0:0.081  1:0.120 ..."
    assert [c.split(":")[0] for c in every] == dm.class_names
    probs = [float(c.split(":")[1]) for c in every]
    assert abs(sum(probs) - 1) < 0.01 and max(probs) == round(p, 3)

    # Evaluating needs only the test files: no download of the training set.
    for name in FILES["train"]:
        (root / name).unlink()
    monkeypatch.setattr(download_module, "download", lambda *a, **k: pytest.fail("downloaded"))
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, limit_test_batches=1
    )
    assert "test/acc" in trainer.test(module, datamodule=dm, verbose=False)[0]

    # The validation epoch drew the digit grid into TensorBoard.
    events = EventAccumulator(str(out))
    events.Reload()
    assert "val/digits" in events.Tags()["images"]
