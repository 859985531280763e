"""IDX parsing: the real MNIST test files, synthetic round-trips, and broken files."""

import gzip
from pathlib import Path

import numpy as np
import pytest

from seqmodels.data.download import file_checksum
from seqmodels.data.idx import read_idx, write_idx
from seqmodels.errors import UserError

SHARED_MNIST = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mnist"
needs_shared = pytest.mark.skipif(
    not SHARED_MNIST.is_dir(), reason=f"real MNIST files not found at {SHARED_MNIST}"
)


@needs_shared
def test_real_t10k_files():
    images = read_idx(SHARED_MNIST / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(SHARED_MNIST / "t10k-labels-idx1-ubyte.gz")
    assert file_checksum(SHARED_MNIST / "t10k-images-idx3-ubyte.gz", "md5") == (
        "9fb629c4189551a2d022fa330f9573f3"
    )
    assert file_checksum(SHARED_MNIST / "t10k-labels-idx1-ubyte.gz", "md5") == (
        "ec29112dd5afa0611ce80d1b7f02629c"
    )
    assert images.shape == (10_000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10_000,) and labels.dtype == np.uint8
    assert labels[:5].tolist() == [7, 2, 1, 0, 4]  # the well-known first test digits
    assert np.bincount(labels).tolist()[:2] == [980, 1135]  # MNIST's test class counts
    assert images.max() == 255 and images[0, 0, 0] == 0  # dark border, full-range strokes


@pytest.mark.parametrize("dtype", ["u1", "i1", ">i2", "<i4", "f4", "f8"])
@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_round_trip(tmp_path, dtype, name):
    rng = np.random.default_rng(0)
    array = (rng.standard_normal((3, 4, 5)) * 100).astype(dtype)
    path = write_idx(tmp_path / name, array)
    back = read_idx(path)
    assert back.dtype == array.dtype.newbyteorder("=")
    np.testing.assert_array_equal(back, array)
    assert path.read_bytes()[:2] == (b"\x1f\x8b" if name.endswith(".gz") else b"\x00\x00")
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temp file left behind


def test_header_matches_spec(tmp_path):
    raw = write_idx(tmp_path / "x", np.zeros((2, 3), dtype=np.uint8)).read_bytes()
    assert raw[:4] == bytes([0, 0, 0x08, 2])
    assert raw[4:12] == (2).to_bytes(4, "big") + (3).to_bytes(4, "big")
    assert len(raw) == 12 + 6


def test_truncated_gzip(tmp_path):
    path = write_idx(
        tmp_path / "x.gz", np.random.default_rng(0).integers(0, 255, (50, 28, 28), dtype=np.uint8)
    )
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(UserError, match=r"x\.gz: truncated gzip file .*download it again"):
        read_idx(path)


def test_corrupt_gzip(tmp_path):
    path = write_idx(
        tmp_path / "x.gz", np.random.default_rng(0).integers(0, 255, (50, 28, 28), dtype=np.uint8)
    )
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 16] = bytes(16)  # zero out deflate data mid-stream
    path.write_bytes(bytes(raw))
    with pytest.raises(UserError, match=r"x\.gz: corrupt gzip file"):
        read_idx(path)


def test_truncated_idx_data(tmp_path):
    raw = write_idx(tmp_path / "x", np.zeros((10, 28, 28), dtype=np.uint8)).read_bytes()
    (tmp_path / "x.gz").write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(
        UserError, match=r"truncated IDX file: shape \(10, 28, 28\) needs 7840 bytes"
    ):
        read_idx(tmp_path / "x.gz")


def test_extra_bytes(tmp_path):
    path = write_idx(tmp_path / "x", np.zeros((4,), dtype=np.int32))
    path.write_bytes(path.read_bytes() + b"junk")
    with pytest.raises(UserError, match=r"corrupt IDX file: .*\(4 extra\)"):
        read_idx(path)


def test_not_idx(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(b"<html><body>404 Not Found</body></html>"))
    with pytest.raises(UserError, match=r"not an IDX file \(magic number 0x3c68746d"):
        read_idx(path)


def test_truncated_header_and_tiny_files(tmp_path):
    (tmp_path / "a").write_bytes(bytes([0, 0, 8, 3, 0, 0]))
    with pytest.raises(UserError, match=r"truncated IDX header \(6 bytes, needs 16\)"):
        read_idx(tmp_path / "a")
    (tmp_path / "b").write_bytes(b"\x00")
    with pytest.raises(UserError, match="too short to be an IDX file"):
        read_idx(tmp_path / "b")
    with pytest.raises(UserError, match="IDX file not found"):
        read_idx(tmp_path / "missing.gz")


def test_write_rejects_unknown_dtype(tmp_path):
    with pytest.raises(UserError, match="no IDX type code"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))
    assert not list(tmp_path.iterdir())
