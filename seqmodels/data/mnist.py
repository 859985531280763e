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
std; the first `val_size` images of a seeded shuffle of train are held out for
validation; the official 10,000 test images are the test set.
"""

from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from seqmodels.data.download import ChecksumError, DownloadError, check_checksum, download
from seqmodels.data.idx import read_idx
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
            x = torch.empty_like(x).index_copy_(-1, permutation, x)
        x = x.unflatten(-1, (SIDE, SIDE))
    return x.clamp(0.0, 1.0)


class Digits(Dataset):
    """(sequence, label) pairs, encoded from uint8 digits on the fly (4× less memory)."""

    def __init__(self, images, labels, mode, permutation):
        self.images, self.labels = images, labels
        self.mode, self.permutation = mode, permutation

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return to_sequence(self.images[i], self.mode, self.permutation), self.labels[i]


class MNISTDataModule(L.LightningDataModule):
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
    ):
        super().__init__()
        if mode not in MODES:
            raise UserError(f"data.mode={mode} is not an MNIST mode; use one of {', '.join(MODES)}")
        self.save_hyperparameters()
        self.root = Path(root).expanduser()
        self.mode = mode
        # drawn here, not in setup: predict needs it too, and a checkpoint's copy
        # (load_state_dict) overwrites it in place so live datasets see the change
        self.permutation = draw_permutation(permutation_seed) if mode == "pixel_permuted" else None
        self.train_set = self.val_set = self.test_set = None

    # -- what the network needs ------------------------------------------------------
    @property
    def model_kwargs(self) -> dict:
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
        paths = [self._find(n) for n in FILES[split]]
        if None in paths:  # setup() without prepare_data(), as a library user may call it
            self.prepare_data((split,))
            paths = [self._find(n) for n in FILES[split]]
        images, labels = (read_idx(p) for p in paths)
        img_path, lbl_path = paths
        hint = "pass data.verify=false to load files that are not the canonical MNIST ones"
        if self.hparams.verify:
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

    def setup(self, stage: str | None = None):
        if stage in (None, "fit", "validate") and self.train_set is None:
            images, labels = self._load("train")
            n = len(labels)
            v = self.hparams.val_size
            n_val = round(v * n) if isinstance(v, float) else int(v)
            if not 0 < n_val < n:
                raise UserError(
                    f"data.val_size={v} leaves no training or no validation images out of "
                    f"{n}; pick a count between 1 and {n - 1} (or a fraction)"
                )
            order = torch.randperm(
                n, generator=torch.Generator().manual_seed(self.hparams.split_seed)
            )
            val, train = order[:n_val], order[n_val:]
            self.train_set = Digits(images[train], labels[train], self.mode, self.permutation)
            self.val_set = Digits(images[val], labels[val], self.mode, self.permutation)
        if stage in (None, "test") and self.test_set is None:
            self.test_set = Digits(*self._load("test"), self.mode, self.permutation)

    def _loader(self, dataset, shuffle=False):
        w = self.hparams.num_workers
        return DataLoader(
            dataset,
            batch_size=self.hparams.batch_size,
            shuffle=shuffle,
            num_workers=w,
            persistent_workers=w > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self):
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self):
        return self._loader(self.val_set)

    def test_dataloader(self):
        return self._loader(self.test_set)

    # -- what a checkpoint must carry -------------------------------------------------
    def state_dict(self):
        return {"mode": self.mode, "permutation": self.permutation, "mean": MEAN, "std": STD}

    def load_state_dict(self, state):
        if state.get("mode") != self.mode:
            raise UserError(
                f"the checkpoint was trained with data.mode={state.get('mode')}, not "
                f"data.mode={self.mode}; drop the data.mode override"
            )
        if self.mode == "pixel_permuted":
            perm = torch.as_tensor(state["permutation"], dtype=torch.long)
            if not torch.equal(perm.sort().values, torch.arange(SIDE * SIDE)):
                raise UserError("the checkpoint's MNIST permutation is not a permutation of 784")
            self.permutation.copy_(perm)  # in place: datasets built in setup share it

    # -- TensorBoard -------------------------------------------------------------------
    def log_examples(self, writer, x, lengths, preds, targets, global_step, max_digits=32):
        """A grid of validation digits, each captioned `predicted/true` (green when right)."""
        preds = preds.argmax(-1) if preds.ndim == 2 else preds  # accept logits too
        n = min(max_digits, len(x))
        digits = from_sequence(x[:n].cpu(), self.mode, self.permutation).numpy()
        pairs = list(zip(preds[:n].tolist(), targets[:n].tolist(), strict=True))
        writer.add_image("val/digits", digit_grid(digits, pairs), global_step, dataformats="HWC")
        wrong = [f"{i}: predicted {p}, true {t}" for i, (p, t) in enumerate(pairs) if p != t]
        writer.add_text(
            "val/digits",
            f"{n - len(wrong)}/{n} right (captions: predicted/true, grid in reading order). "
            + ("Wrong: " + "; ".join(wrong) if wrong else ""),
            global_step,
        )

    # -- predict ------------------------------------------------------------------------
    def encode_for_predict(self, request):
        """`image=digit.png|digit.npy` -> (x (N, T, F), None, display names)."""
        image = request.get("image")
        if not image:
            given = [k for k in ("text", "file") if request.get(k)]
            raise UserError(
                f"an MNIST model reads a 28x28 image, not {' or '.join(given) or 'nothing'}: "
                f"pass image=digit.png (or a .npy array of shape (28, 28))"
            )
        digits, notes = read_digits(Path(image))
        x = to_sequence(digits, self.mode, self.permutation)
        names = [
            f"{image}{f'[{i}]' if len(digits) > 1 else ''}{notes}\n{ascii_digit(d)}"
            for i, d in enumerate(digits)
        ]
        return x, None, names


def read_digits(path: Path) -> tuple[torch.Tensor, str]:
    """A .png/.npy digit (28×28, or N×28×28 for .npy) -> uint8 (N, 28, 28) like MNIST's, notes.

    MNIST digits are light on a dark background; an image with a light border
    (a dark digit drawn on white) is inverted so the model sees what it was trained on.
    """
    if not path.is_file():
        raise UserError(f"image={path}: no such file")
    if path.suffix.lower() == ".npy":
        try:
            a = np.load(path, allow_pickle=False)
        except ValueError as e:
            raise UserError(f"image={path}: not a numpy .npy array ({e})") from None
        if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
            raise UserError(f"image={path}: array of type {a.dtype}, expected numbers")
        a = a.astype(np.float64)
        if a.size and a.max() <= 1.0:  # floats in [0, 1]; anything larger is 0..255
            a = a * 255.0
        a = np.clip(np.rint(a), 0, 255).astype(np.uint8)
    else:
        try:
            from PIL import Image, UnidentifiedImageError
        except ImportError:  # Pillow comes with tensorboard; say what to do if it went missing
            raise UserError(
                f"image={path}: reading images needs Pillow (pip install pillow), "
                "or pass the digit as a 28x28 .npy array"
            ) from None
        try:
            with Image.open(path) as im:
                a = np.asarray(im.convert("L"))
        except (UnidentifiedImageError, OSError) as e:
            raise UserError(f"image={path}: cannot read it as an image ({e})") from None
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[1:] != (SIDE, SIDE) or len(a) == 0:
        raise UserError(
            f"image={path} has shape {a.shape}; an MNIST model reads {SIDE}x{SIDE} grayscale "
            f"digits (a .npy may also hold N of them): resize it to {SIDE}x{SIDE} first"
        )
    border = np.concatenate([a[:, 0], a[:, -1], a[:, :, 0], a[:, :, -1]], axis=1)
    invert = border.mean(axis=1) > 127
    a = np.where(invert[:, None, None], 255 - a, a)
    notes = " (inverted: light background)" if invert.all() else ""
    return torch.from_numpy(np.ascontiguousarray(a)), notes


def ascii_digit(digit: torch.Tensor) -> str:
    """A uint8 28×28 digit as text for the terminal, without its blank top and bottom rows."""
    ramp = " .:-=+*#%@"  # two characters per pixel: terminal cells are about twice as tall
    idx = (digit.int() * len(ramp) // 256).tolist()
    return "\n".join("".join(ramp[v] * 2 for v in row).rstrip() for row in idx).strip("\n")


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
