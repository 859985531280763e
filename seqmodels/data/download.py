"""The one place in seqmodels that fetches a URL.

`download(urls, dest, sha256=...)` returns `dest` at once when it is already
there with the right checksum; otherwise it tries each URL (mirrors) in turn,
streams to a temporary file beside `dest` with a progress bar, checks the
checksum and only then renames it into place (files.atomic_write). A killed or
failed download therefore never leaves a file under the final name.

Every dataset also reads a local copy, so when no URL can be reached the error
names the file, the URLs and the config override that points at a local copy.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import pathlib
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import IO, Any

from seqmodels.data.files import atomic_write
from seqmodels.errors import UserError

CHUNK = 1 << 20  # 1 MiB: big enough to be fast, small enough for a smooth bar
TIMEOUT_S = 30.0  # per socket operation, not for the whole file


class DownloadError(UserError):
    """No URL could be fetched (offline, host down, 404)."""


class ChecksumError(UserError):
    """A file's checksum is not the expected one (corrupt or wrong file)."""

    def __init__(self, message: str, algo: str = "", expected: str = "", actual: str = ""):
        super().__init__(message)
        self.algo, self.expected, self.actual = algo, expected, actual


def file_checksum(path: str | os.PathLike, algo: str = "sha256") -> str:
    """Hex digest of a file, read in chunks (archives are hundreds of MB)."""
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _expected(md5: str | None, sha256: str | None) -> tuple[str, str] | None:
    # sha256 wins when both are given: it is the stronger of the two.
    if sha256:
        return "sha256", sha256.lower()
    if md5:
        return "md5", md5.lower()
    return None


def check_checksum(
    path: str | os.PathLike, *, md5: str | None = None, sha256: str | None = None
) -> None:
    """Raise ChecksumError naming expected and actual digests; no-op without a checksum."""
    want = _expected(md5, sha256)
    if want is None:
        return
    algo, digest = want
    actual = file_checksum(path, algo)
    if actual != digest:
        raise ChecksumError(
            f"{path}: {algo} checksum mismatch (expected {digest}, got {actual}); "
            "the file is corrupt or not the expected one: delete it and download again",
            algo,
            digest,
            actual,
        )


def _progress(total: int | None, desc: str):
    # tqdm comes with lightning; the bar goes to stderr and only on a terminal,
    # so logs and captured test output stay clean.
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=sys.stderr,
        disable=not sys.stderr.isatty(),
        leave=False,
    )


def _fetch(url: str, f: IO[Any], desc: str) -> None:
    """Stream `url` into the open binary file `f`."""
    req = urllib.request.Request(url, headers={"User-Agent": "seqmodels"})
    with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
        length = resp.headers.get("Content-Length") if hasattr(resp, "headers") else None
        total = int(length) if length and length.isdigit() else None
        written = 0
        with _progress(total, desc) as bar:
            for chunk in iter(lambda: resp.read(CHUNK), b""):
                f.write(chunk)
                written += len(chunk)
                bar.update(len(chunk))
        # A connection closed early is not an error for urllib: catch it here
        # so a truncated file is never mistaken for a complete one.
        if total is not None and written != total:
            raise OSError(f"connection closed after {written} of {total} bytes")


def download(
    urls: str | Sequence[str],
    dest: str | os.PathLike,
    *,
    md5: str | None = None,
    sha256: str | None = None,
    override: str = "data.root=/path/to/local/copy",
) -> pathlib.Path:
    """Fetch `dest` from the first URL that works; return its path.

    `override` is the config setting printed when every URL fails, telling the
    user how to point the dataset at a copy they already have.
    """
    urls = [urls] if isinstance(urls, str) else list(urls)
    if not urls:
        raise ValueError("download() needs at least one URL")
    dest = pathlib.Path(dest)
    if dest.exists():
        try:
            check_checksum(dest, md5=md5, sha256=sha256)
            return dest
        except ChecksumError:
            pass  # a stale or corrupt copy: fetch it again below
    failures: list[tuple[str, Exception]] = []
    for url in urls:
        try:
            with atomic_write(dest) as f:  # nothing half-written left behind
                _fetch(url, f, dest.name)
                f.flush()
                check_checksum(f.name, md5=md5, sha256=sha256)
            return dest
        except ChecksumError as e:
            # The server answered with the wrong bytes: try the next mirror, but
            # if none has the right file this is the error the user must see.
            failures.append((url, e))
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
            failures.append((url, e))

    mismatches = [e for _, e in failures if isinstance(e, ChecksumError)]
    if mismatches and len(mismatches) == len(failures):
        last = mismatches[-1]
        raise ChecksumError(
            f"downloaded {dest.name} from {', '.join(urls)} but its {last.algo} checksum is "
            f"wrong (expected {last.expected}, got {last.actual}); nothing was saved; "
            f"use a verified local copy with {override}",
            last.algo,
            last.expected,
            last.actual,
        )
    reasons = "; ".join(f"{u}: {_reason(e)}" for u, e in failures)
    raise DownloadError(
        f"could not download {dest.name} ({reasons}); if you are offline, "
        f"put a copy on disk and set {override}"
    )


def _reason(e: BaseException) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code}"
    if isinstance(e, urllib.error.URLError):
        return str(e.reason)
    if isinstance(e, ChecksumError):
        return "checksum mismatch"
    return str(e) or type(e).__name__
