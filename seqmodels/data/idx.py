"""Read and write IDX files, the format MNIST ships in.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number
of dimensions), one big-endian uint32 per dimension, then the values in
big-endian C order. Files may be gzipped (MNIST's are); we detect that from the
content, not the name.

Every way a file can be wrong (truncated download, HTML error page saved under
the right name, wrong type of file) becomes a `UserError` that names the file
and what is wrong, instead of a numpy reshape traceback.
"""

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from seqmodels.data.files import atomic_write
from seqmodels.errors import UserError

# type code -> big-endian numpy dtype (the IDX spec's table)
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when the content is gzip."""
    if not path.is_file():
        raise UserError(f"IDX file not found: {path}")
    raw = path.read_bytes()
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except EOFError as e:  # the stream stops before its end marker: a cut-off download
        raise UserError(
            f"{path}: truncated gzip file ({e}); delete it and download it again"
        ) from None
    except (OSError, zlib.error) as e:  # bad CRC, bad deflate data, bad header
        raise UserError(
            f"{path}: corrupt gzip file ({e}); delete it and download it again"
        ) from None


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Parse an IDX file (gzipped or not) into a numpy array in native byte order."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise UserError(f"{path}: {len(data)} bytes, too short to be an IDX file")
    zero, code, ndim = data[:2], data[2], data[3]
    if zero != b"\x00\x00" or code not in IDX_DTYPES or ndim == 0:
        raise UserError(
            f"{path}: not an IDX file (magic number 0x{data[:4].hex()}, expected 0x0000TTNN "
            f"with type TT in {sorted(f'{c:02x}' for c in IDX_DTYPES)} and NN >= 1 dimensions)"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise UserError(f"{path}: truncated IDX header ({len(data)} bytes, needs {header})")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(data) - header
    if found < expected:
        raise UserError(
            f"{path}: truncated IDX file: shape {shape} needs {expected} bytes of data, "
            f"found {found}; delete it and download it again"
        )
    if found > expected:
        raise UserError(
            f"{path}: corrupt IDX file: shape {shape} needs {expected} bytes of data, "
            f"found {found} ({found - expected} extra)"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))  # a native-order, writable copy


def write_idx(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write `array` as an IDX file (gzipped when `path` ends in .gz), atomically.

    Used by tests to build small synthetic MNIST folders, and by anyone who
    wants to feed their own digits to the MNIST datamodule (`data.verify=false`).
    """
    path = Path(path)
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=")
    if native not in _CODES:
        raise UserError(f"write_idx: dtype {array.dtype} has no IDX type code")
    if array.ndim == 0 or array.ndim > 255:
        raise UserError(f"write_idx: an IDX array needs 1 to 255 dimensions, got {array.ndim}")
    code = _CODES[native]
    payload = (
        bytes([0, 0, code, array.ndim])
        + np.asarray(array.shape, dtype=">u4").tobytes()
        + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    )
    if path.suffix == ".gz":
        payload = gzip.compress(payload, mtime=0)  # mtime=0: same input, same bytes
    with atomic_write(path) as f:
        f.write(payload)
    return path
