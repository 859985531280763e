"""MNIST read as a sequence: 28 rows of 28 pixels, or 784 pixels one at a time.

`mode` picks how a 28×28 digit becomes a sequence x of shape (T, F):
- `row`: T=28 steps of F=28 features (one image row per step),
- `pixel`: T=784 steps of F=1 (raster order; the classic "sequential MNIST"),
- `pixel_permuted`: the same 784 pixels in a fixed random order drawn from
  `permutation_seed` (Le et al. 2015). The order is part of the model: it is
  returned by `state_dict()`, so every checkpoint carries it and eval/predict
  reuse it without redrawing.

Files: the four canonical IDX .gz files in `root` (or torchvision's
`root/MNIST/raw/` layout, gzipped or not). Missing files are downloaded into
`root` from the usual mirrors and md5-checked. `verify=False` loads local files
that are not the canonical ones (same names, any number of images): that is how
tests feed small synthetic digits, and how a user trains on their own.

Pixels are scaled to [0, 1], then normalised with MNIST's training-set mean and
std; `val_size` images drawn with `split_seed` from train are held out for
validation; the official 10,000 test images are the test set.
"""

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from seqmodels.data.batching import data_loader, split_sampler
from seqmodels.data.download import ChecksumError, DownloadError, check_checksum, download
from seqmodels.data.idx import read_idx
from seqmodels.data.splits import holdout
from seqmodels.errors import UserError

MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
# split -> (images file, labels file); md5s of the canonical .gz files (torchvision's list)
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
COUNTS = {"train": 60_000, "test": 10_000}
SIDE = 28
MEAN, STD = 0.1307, 0.3081  # of the 60,000 training pixels, scaled to [0, 1]
MODES = ("row", "pixel", "pixel_permuted")
CLASS_NAMES = [str(d) for d in range(10)]


def draw_permutation(seed: int) -> torch.Tensor:
    """The fixed pixel order of `pixel_permuted`, a LongTensor of 784 indices."""
    return torch.randperm(SIDE * SIDE, generator=torch.Generator().manual_seed(seed))


def to_sequence(images: torch.Tensor, mode: str, permutation: torch.Tensor | None = None):
    """uint8 digits (..., 28, 28) in 0..255 -> normalised float sequences (..., T, F)."""
    x = (images.float() / 255.0 - MEAN) / STD
    if mode == "row":
        return x
    x = x.flatten(-2)
    if mode == "pixel_permuted":
        x = x[..., permutation]
    return x.unsqueeze(-1)


def from_sequence(x: torch.Tensor, mode: str, permutation: torch.Tensor | None = None):
    """The inverse of `to_sequence`: (..., T, F) -> digits (..., 28, 28) in [0, 1]."""
    x = x.float() * STD + MEAN
    if mode != "row":
        x = x.squeeze(-1)
        if mode == "pixel_permuted":
            assert permutation is not None
            x = torch.empty_like(x).index_copy_(-1, permutation, x)
        x = x.unflatten(-1, (SIDE, SIDE))
    return x.clamp(0.0, 1.0)


def shift_image(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """A digit (28, 28) moved dy rows down and dx columns right; what leaves is lost,
    what enters is background (0)."""
    out = torch.zeros_like(image)
    h, w = image.shape[-2:]
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = image[
        ..., max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


class Digits(Dataset):
    """(sequence, label) pairs, encoded from uint8 digits on the fly (4× less memory);
    with `shift` > 0 each digit moves by up to that many pixels each way, drawn anew
    every time it is read (training only)."""

    def __init__(self, images, labels, mode, permutation, shift: int = 0):
        self.images, self.labels = images, labels
        self.mode, self.permutation, self.shift = mode, permutation, shift

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        image = self.images[i]
        if self.shift:
            dy, dx = torch.randint(-self.shift, self.shift + 1, (2,)).tolist()
            image = shift_image(image, dy, dx)
        return to_sequence(image, self.mode, self.permutation), self.labels[i]


class MNISTDataModule(L.LightningDataModule):
    r"""MNIST digits read as sequences: 28 rows of 28 pixels, or 784 pixels one at a time.

    The four IDX files are found in ``root`` (or torchvision's layout) or
    downloaded there and md5-checked; pixels are scaled and normalised; ``val_size``
    training images are held out for validation (see the module docstring). The
    task of ``task=mnist``; ``seqmodels-predict image=digit.png`` reads images
    through ``encode_images``.

    Args:
        root: folder of the IDX files (downloaded here when missing). Default:
            ``"data/mnist"``.
        mode: ``"row"`` (T=28 steps of 28 features), ``"pixel"`` (T=784 steps of
            1) or ``"pixel_permuted"`` (784 pixels in a fixed random order).
            Default: ``"row"``.
        batch_size: images per batch. Default: 128.
        val_size: validation images held out of train (a count or a fraction).
            Default: 5000.
        split_seed: the seed of that split. Default: 0.
        permutation_seed: the seed of the pixel order (``pixel_permuted``); the
            order travels in every checkpoint. Default: 0.
        verify: check the files are the canonical ones (``False`` reads any IDX
            files of the same names, e.g. one's own digits). Default: ``True``.
        augment_shift: each training digit moves by up to this many pixels up or
            down and left or right, drawn anew every epoch (background fills in);
            validation and test digits stay as they are. Default: 0 (off).
        num_workers: DataLoader worker processes. Default: 0.

    Shape:
        - Batches: ``(x, y)`` with x :math:`(B, T, F)` float pixels and labels y
          :math:`(B,)`.
        - ``encode_images(images)``: uint8 :math:`(N, 28, 28)` -> :math:`(N, T, F)`,
          as training reads them.
        - ``model_kwargs``: ``{"num_classes": 10, "input_size": F}``.

    Example::

        from seqmodels.data.mnist import MNISTDataModule

        dm = MNISTDataModule(root="data/mnist", mode="pixel")  # downloads 11 MB once
        dm.prepare_data()
        dm.setup()
        x, y = next(iter(dm.train_dataloader()))  # x: (128, 784, 1)
    """

    def __init__(
        self,
        root: str = "data/mnist",
        mode: str = "row",
        batch_size: int = 128,
        val_size: int | float = 5000,
        split_seed: int = 0,
        permutation_seed: int = 0,
        verify: bool = True,
        num_workers: int = 0,
        augment_shift: int = 0,
    ):
        super().__init__()
        if mode not in MODES:
            raise UserError(f"data.mode={mode} is not an MNIST mode; use one of {', '.join(MODES)}")
        self.batch_size, self.num_workers = batch_size, num_workers
        self.val_size, self.split_seed = val_size, split_seed
        self.permutation_seed, self.verify = permutation_seed, verify
        self.root = Path(root).expanduser()
        self.mode = mode
        if not 0 <= augment_shift < SIDE:
            raise UserError(
                f"data.augment_shift={augment_shift} must be 0 (off) .. {SIDE - 1} pixels"
            )
        self.augment_shift = augment_shift
        # drawn here, not in setup: predict needs it too, and a checkpoint's copy
        # (load_state_dict) overwrites it in place so live datasets see the change
        self.permutation = draw_permutation(permutation_seed) if mode == "pixel_permuted" else None
        self.splits: dict[str, Digits] = {}

    # -- what the network needs ------------------------------------------------------
    @property
    def model_kwargs(self) -> dict[str, int]:
        return {"num_classes": 10, "input_size": SIDE if self.mode == "row" else 1}

    @property
    def class_names(self) -> list[str]:
        return CLASS_NAMES

    # -- files -----------------------------------------------------------------------
    def _find(self, name: str) -> Path | None:
        """A local copy of `name`: in root or torchvision's root/MNIST/raw, .gz or not."""
        for folder in (self.root, self.root / "MNIST" / "raw"):
            for candidate in (folder / name, folder / name.removesuffix(".gz")):
                if candidate.is_file():
                    return candidate
        return None

    def prepare_data(self, splits: tuple[str, ...] | None = None):
        """Download whichever file of `splits` has no local copy (idempotent).

        Under `trainer.test` only the test files are needed: someone evaluating
        a checkpoint with just the t10k files at hand is not sent to the internet.
        """
        if splits is None:
            fn = getattr(getattr(self.trainer, "state", None), "fn", None)
            splits = ("test",) if fn == "test" else ("train", "test")
        missing = [n for s in splits for n in FILES[s] if self._find(n) is None]
        if not missing:
            return
        for name in missing:
            try:
                download(
                    [m + name for m in MIRRORS],
                    self.root / name,
                    md5=MD5[name],
                    override="data.root=/path/to/mnist",
                )
            except DownloadError as e:
                # name every missing file, so an offline user fixes it in one go
                raise DownloadError(
                    f"MNIST files missing from {self.root}: {', '.join(missing)}; {e}"
                ) from None

    def _load(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(uint8 images (N, 28, 28), int64 labels (N,)) of `split`, checked."""
        found = [self._find(n) for n in FILES[split]]
        if None in found:  # setup() without prepare_data(), as a library user may call it
            self.prepare_data((split,))
            found = [self._find(n) for n in FILES[split]]
        paths = [p for p in found if p is not None]
        images, labels = (read_idx(p) for p in paths)
        img_path, lbl_path = paths
        hint = "pass data.verify=false to load files that are not the canonical MNIST ones"
        if self.verify:
            for p, name in zip(paths, FILES[split], strict=True):
                if p.suffix == ".gz":
                    try:
                        check_checksum(p, md5=MD5[name])
                    except ChecksumError as e:
                        raise ChecksumError(f"{e}; or {hint}") from None
            if len(labels) != COUNTS[split] or len(images) != COUNTS[split]:
                raise UserError(
                    f"{img_path.parent}: {split} has {len(images)} images and {len(labels)} "
                    f"labels, canonical MNIST has {COUNTS[split]}; {hint}"
                )
        if images.ndim != 3 or images.shape[1:] != (SIDE, SIDE) or images.dtype != np.uint8:
            raise UserError(
                f"{img_path}: images of shape {images.shape[1:]} and type {images.dtype}; "
                f"MNIST needs uint8 images of shape ({SIDE}, {SIDE})"
            )
        if labels.ndim != 1 or len(labels) != len(images):
            raise UserError(
                f"{lbl_path}: {labels.shape} labels for {len(images)} images in {img_path.name}"
            )
        if len(labels) and (labels.min() < 0 or labels.max() > 9):
            raise UserError(f"{lbl_path}: labels must be digits 0..9, found {labels.max()}")
        return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))

    def setup(self, stage: str | None = None) -> None:
        """Every split for stage None; only what Lightning's stage reads otherwise."""
        if stage in (None, "fit", "validate") and "train" not in self.splits:
            images, labels = self._load("train")
            train, val = holdout(len(labels), self.val_size, self.split_seed, "images")
            self.splits["train"] = Digits(
                images[train], labels[train], self.mode, self.permutation, self.augment_shift
            )
            self.splits["val"] = Digits(images[val], labels[val], self.mode, self.permutation)
        if stage in (None, "test") and "test" not in self.splits:
            self.splits["test"] = Digits(*self._load("test"), self.mode, self.permutation)

    def _loader(self, split: str) -> DataLoader:
        w = self.num_workers
        dataset = self.splits[split]
        return data_loader(
            dataset,
            batch_size=self.batch_size,
            sampler=split_sampler(len(dataset), split == "train", self.trainer),
            num_workers=w,
            persistent_workers=w > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    # -- what a checkpoint must carry -------------------------------------------------
    def state_dict(self) -> dict:
        return {"mode": self.mode, "permutation": self.permutation, "mean": MEAN, "std": STD}

    def load_state_dict(self, state_dict: dict) -> None:
        state = state_dict
        if state.get("mode") != self.mode:
            raise UserError(
                f"the checkpoint was trained with data.mode={state.get('mode')}, not "
                f"data.mode={self.mode}; drop the data.mode override"
            )
        if self.permutation is not None:  # mode pixel_permuted
            perm = torch.as_tensor(state["permutation"], dtype=torch.long)
            if not torch.equal(perm.sort().values, torch.arange(SIDE * SIDE)):
                raise UserError("the checkpoint's MNIST permutation is not a permutation of 784")
            self.permutation.copy_(perm)  # in place: datasets built in setup share it

    # -- TensorBoard -------------------------------------------------------------------
    EXAMPLES = 32  # validation digits drawn in TensorBoard each epoch

    def example_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The first 32 validation digits: the same ones every epoch, (x, y)."""
        val = self.splits["val"]
        n = min(self.EXAMPLES, len(val))
        x, y = zip(*(val[i] for i in range(n)), strict=True)
        return torch.stack(x), torch.stack(y)

    def log_examples(self, writer: Any, batch: Any, probs: torch.Tensor, global_step: int) -> None:
        """A grid of the digits, each captioned `predicted/true` (green when right)."""
        x, targets, _ = batch
        preds = probs.argmax(-1)
        digits = from_sequence(x.cpu(), self.mode, self.permutation).numpy()
        pairs = list(zip(preds.tolist(), targets.tolist(), strict=True))
        writer.add_image("val/digits", digit_grid(digits, pairs), global_step, dataformats="HWC")
        wrong = [
            f"{i}: predicted {p} ({float(probs[i, p]):.2f}), true {t}"
            for i, (p, t) in enumerate(pairs)
            if p != t
        ]
        writer.add_text(
            "val/digits",
            f"{len(pairs) - len(wrong)}/{len(pairs)} right (the same validation digits every "
            "epoch; captions: predicted/true, grid in reading order). "
            + ("Wrong: " + "; ".join(wrong) if wrong else ""),
            global_step,
        )

    # -- predict ------------------------------------------------------------------------
    image_shape = (SIDE, SIDE)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 digits (N, 28, 28), light strokes on dark as in MNIST -> model inputs (N, T, F)."""
        return to_sequence(images, self.mode, self.permutation)


def digit_grid(digits: np.ndarray, pairs, cols: int = 8, scale: int = 2) -> np.ndarray:
    """digits (N, 28, 28) in [0, 1] -> one uint8 RGB image (H, W, 3) of captioned tiles."""
    n = len(digits)
    rows = -(-n // cols)
    cap, pad, side = 12, 2, SIDE * scale
    tile_h, tile_w = side + cap + pad, side + pad
    grid = np.zeros((rows * tile_h + pad, cols * tile_w + pad, 3), dtype=np.uint8)
    big = np.kron(digits, np.ones((scale, scale)))  # nearest-neighbour upscale
    for i in range(n):
        r, c = divmod(i, cols)
        y, x = r * tile_h + pad + cap, c * tile_w + pad
        grid[y : y + side, x : x + side] = (big[i] * 255).astype(np.uint8)[..., None]
    try:
        from PIL import Image, ImageDraw
    except ImportError:  # no captions without Pillow; the labels still go to add_text
        return grid
    image = Image.fromarray(grid)
    draw = ImageDraw.Draw(image)
    for i, (p, t) in enumerate(pairs):
        r, c = divmod(i, cols)
        color = (80, 220, 80) if p == t else (255, 70, 70)
        draw.text((c * tile_w + pad + 1, r * tile_h + pad), f"{p}/{t}", fill=color)
    return np.asarray(image)
