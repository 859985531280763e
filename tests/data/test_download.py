"""download(): mirrors, checksums, atomic rename and the offline message.

A local http.server on 127.0.0.1 (a daemon thread, shut down by the fixture)
stands in for the dataset hosts, so the tests need no network.
"""

import hashlib
import http.server
import os
import socket
import threading

import pytest

from seqmodels.data import download as dl
from seqmodels.data.download import (
    ChecksumError,
    DownloadError,
    check_checksum,
    download,
    file_checksum,
)
from seqmodels.errors import UserError

PAYLOAD = b"hello seqmodels\n" * 5000  # 80 kB: several chunks with a small CHUNK
SHA = hashlib.sha256(PAYLOAD).hexdigest()
MD5 = hashlib.md5(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        if self.path == "/good.bin":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)
        elif self.path == "/wrong.bin":
            body = b"not the file you want"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/truncated.bin":
            # Promise the whole file, send half, hang up: a dropped connection.
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 2])
            self.wfile.flush()
            self.close_connection = True
        else:
            self.send_error(404)

    def log_message(self, *args):  # keep test output quiet
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.timeout = 5
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture
def closed_port_url():
    # Bind then close: nothing listens there, so connecting is refused at once.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/file.tar.gz"


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(dl, "CHUNK", 4096)
    monkeypatch.setattr(dl, "TIMEOUT_S", 5.0)


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def test_download_success_and_checksum(server, tmp_path):
    dest = tmp_path / "sub" / "good.bin"
    out = download(f"{server}/good.bin", dest, sha256=SHA)
    assert out == dest
    assert dest.read_bytes() == PAYLOAD
    assert _leftovers(dest.parent) == ["good.bin"]  # no .part file left


def test_existing_file_with_right_checksum_is_not_fetched_again(tmp_path, closed_port_url):
    dest = tmp_path / "good.bin"
    dest.write_bytes(PAYLOAD)
    # The URL is unreachable: returning at once proves no fetch was tried.
    assert download(closed_port_url, dest, md5=MD5) == dest


def test_existing_corrupt_file_is_replaced(server, tmp_path):
    dest = tmp_path / "good.bin"
    dest.write_bytes(b"corrupt")
    download(f"{server}/good.bin", dest, sha256=SHA)
    assert dest.read_bytes() == PAYLOAD


def test_mirror_fallback(server, tmp_path, closed_port_url):
    dest = tmp_path / "good.bin"
    urls = [closed_port_url, f"{server}/missing.bin", f"{server}/wrong.bin", f"{server}/good.bin"]
    download(urls, dest, sha256=SHA)
    assert dest.read_bytes() == PAYLOAD
    assert _leftovers(tmp_path) == ["good.bin"]


def test_checksum_mismatch_leaves_no_file(server, tmp_path):
    dest = tmp_path / "good.bin"
    with pytest.raises(ChecksumError) as info:
        download(f"{server}/wrong.bin", dest, sha256=SHA, override="data.root=/my/copy")
    msg = str(info.value)
    assert SHA in msg
    assert hashlib.sha256(b"not the file you want").hexdigest() in msg
    assert "data.root=/my/copy" in msg
    assert "\n" not in msg
    assert _leftovers(tmp_path) == []


def test_truncated_download_leaves_no_file(server, tmp_path):
    dest = tmp_path / "good.bin"
    # No checksum given: the short read alone must be caught.
    with pytest.raises(DownloadError):
        download(f"{server}/truncated.bin", dest)
    assert _leftovers(tmp_path) == []


def test_interrupted_download_leaves_no_file(server, tmp_path, monkeypatch):
    # Ctrl-C in the middle of the stream: the part file is removed, dest never appears.
    real_fetch = dl._fetch

    def fetch_then_interrupt(url, f, desc):
        real_fetch(url, f, desc)
        f.flush()
        assert os.path.getsize(f.name) == len(PAYLOAD)
        raise KeyboardInterrupt

    monkeypatch.setattr(dl, "_fetch", fetch_then_interrupt)
    dest = tmp_path / "good.bin"
    with pytest.raises(KeyboardInterrupt):
        download(f"{server}/good.bin", dest, sha256=SHA)
    assert _leftovers(tmp_path) == []


def test_offline_message_names_file_urls_and_override(tmp_path, closed_port_url):
    dest = tmp_path / "aclImdb_v1.tar.gz"
    mirror = closed_port_url.replace("file.tar.gz", "mirror.tar.gz")
    with pytest.raises(DownloadError) as info:
        download([closed_port_url, mirror], dest, sha256=SHA, override="data.root=/path/to/imdb")
    msg = str(info.value)
    assert isinstance(info.value, UserError)
    assert "aclImdb_v1.tar.gz" in msg
    assert closed_port_url in msg and mirror in msg
    assert "data.root=/path/to/imdb" in msg
    assert "\n" not in msg
    assert _leftovers(tmp_path) == []


def test_file_url(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    dest = tmp_path / "out" / "copy.bin"
    download(src.as_uri(), dest, md5=MD5)
    assert dest.read_bytes() == PAYLOAD


def test_checksum_helpers(tmp_path):
    f = tmp_path / "f.bin"
    f.write_bytes(PAYLOAD)
    assert file_checksum(f, "sha256") == SHA
    assert file_checksum(f, "md5") == MD5
    check_checksum(f, sha256=SHA.upper())  # case-insensitive, no error
    check_checksum(f)  # no checksum: nothing to check
    with pytest.raises(ChecksumError, match=r"expected 0+, got " + MD5):
        check_checksum(f, md5="0" * 32)
