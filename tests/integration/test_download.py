"""scripts/download_cifar10.py against a real local HTTP server: a whole file, a wrong md5, a cut connection."""
import hashlib
import http.server
import io
import random
import tarfile
import threading

import pytest

from tests.helpers_runs import call

NAME = "cifar-10-python.tar.gz"


def small_tarball() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        payload = random.Random(0).randbytes(3_000_000)  # incompressible: a 3 MB download, several chunks
        info = tarfile.TarInfo("cifar-10-batches-py/readme")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


BODY = small_tarball()
MD5 = hashlib.md5(BODY).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        # /cut: the connection drops after half the file, as a flaky network does
        self.wfile.write(BODY[:len(BODY) // 2] if self.path == "/cut" else BODY)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def download(directory, url, md5=MD5):
    return call("download_cifar10", directory, "--url", url, "--md5", md5)


def test_a_whole_download_is_kept_once_its_md5_is_right(tmp_path, server):
    code, out, err = download(tmp_path / "data", f"{server}/ok")
    assert code == 0, err
    assert (tmp_path / "data" / NAME).read_bytes() == BODY
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [NAME]
    code, out, err = download(tmp_path / "data", f"{server}/ok")
    assert code == 0 and "is already there (md5 checked)" in out


def test_a_wrong_md5_keeps_nothing(tmp_path, server):
    code, out, err = download(tmp_path, f"{server}/ok", md5="0" * 32)
    assert code == 2 and f"has md5 {MD5}, expected {'0' * 32}; nothing was kept" in err
    assert list(tmp_path.iterdir()) == []


def test_a_connection_cut_mid_file_keeps_nothing(tmp_path, server):
    code, out, err = download(tmp_path, f"{server}/cut")
    half = len(BODY) // 2
    assert code == 2 and f"was cut: {half:,} of {len(BODY):,} bytes; nothing was kept, run it again" in err, err
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_server_is_one_clean_line(tmp_path):
    code, out, err = download(tmp_path, "http://127.0.0.1:9/none")
    assert code == 2 and err.startswith("error: downloading http://127.0.0.1:9/none failed (") and "\n" == err[-1]
    assert list(tmp_path.iterdir()) == []
