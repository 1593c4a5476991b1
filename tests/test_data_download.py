"""Downloads and dataset preparation against a local HTTP server on 127.0.0.1 that the tests start:
resuming with Range requests, truncated transfers, checksums, HTTP errors, safe unpacking."""

from __future__ import annotations

import hashlib
import io
import socket
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch

from flexvid.cli.main import main as flexvid_main
from flexvid.data.base import build_dataset
from flexvid.data.download import MARKER_FILE, DownloadError, download, unpack_archive
from flexvid.data.prepare import prepare_carla
from flexvid.errors import DatasetError


class FileServer:
    """Serves in-memory files. `files[path]` is the body; paths in `cut_once` send only half the body
    (with the full Content-Length) the first time; paths in `always_cut` always do."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut_once: set[str] = set()
        self.always_cut: set[str] = set()
        self.range_headers: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                asked = self.headers.get("Range")
                server.range_headers.append(asked)
                start = int(asked.split("=")[1].split("-")[0]) if asked else 0
                if start >= len(body) and asked:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206 if asked else 200)
                if asked:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                payload = body[start:]
                if self.path in server.always_cut or self.path in server.cut_once:
                    server.cut_once.discard(self.path)
                    payload = payload[: len(payload) // 2]
                    self.close_connection = True
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture
def server():
    files = FileServer()
    files.thread.start()
    yield files
    files.httpd.shutdown()
    files.httpd.server_close()


def carla_archive(numbers=(0, 1, 2, 3), frames=6) -> bytes:
    """A tar.gz laid out like the authors' no-traffic.tar.gz: no-traffic/video_<i>.pt, coords, actions."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as bundle:
        for n in numbers:
            for name, payload in (
                (f"video_{n}.pt", _torch_bytes(torch.full((frames, 8, 8, 3), 10 * n, dtype=torch.uint8))),
                (f"coords_{n}.npy", _npy_bytes(np.zeros((frames, 2)))),
                (f"actions_{n}.npy", _npy_bytes(np.zeros((frames, 3), np.float32))),
            ):
                member = tarfile.TarInfo(f"no-traffic/{name}")
                member.size = len(payload)
                bundle.addfile(member, io.BytesIO(payload))
    return buffer.getvalue()


def _torch_bytes(tensor: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    torch.save(tensor, buffer)
    return buffer.getvalue()


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_download_resumes_with_range(server, tmp_path):
    body = bytes(range(256)) * 64
    server.files["/data.bin"] = body
    server.cut_once.add("/data.bin")
    dest = tmp_path / "data.bin"
    with pytest.raises(DownloadError, match=r"stopped after 8192 of 16384 bytes; run the same command again to resume"):
        download(server.url("/data.bin"), dest, progress=False)
    assert not dest.exists() and (tmp_path / "data.bin.part").stat().st_size == 8192
    download(server.url("/data.bin"), dest, progress=False, sha256=hashlib.sha256(body).hexdigest())
    assert dest.read_bytes() == body and not (tmp_path / "data.bin.part").exists()
    assert server.range_headers == [None, "bytes=8192-"]


def test_download_of_complete_part_file_finishes(server, tmp_path):
    server.files["/done.bin"] = b"x" * 100
    (tmp_path / "done.bin.part").write_bytes(b"x" * 100)
    download(server.url("/done.bin"), tmp_path / "done.bin", progress=False)
    assert (tmp_path / "done.bin").read_bytes() == b"x" * 100


def test_download_errors(server, tmp_path):
    server.files["/file"] = b"payload" * 10
    with pytest.raises(DownloadError, match="has SHA-256 .* not the expected"):
        download(server.url("/file"), tmp_path / "file", sha256="0" * 64, progress=False)
    assert not (tmp_path / "file").exists() and not (tmp_path / "file.part").exists()
    with pytest.raises(DownloadError, match="failed with HTTP 404"):
        download(server.url("/absent.tar.gz"), tmp_path / "absent", progress=False)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DownloadError, match="Cannot reach"):
        download(f"http://127.0.0.1:{port}/x", tmp_path / "x", progress=False, timeout=5)


def test_carla_download_command_prepares_dataset(server, tmp_path, capsys):
    server.files["/no-traffic.tar.gz"] = carla_archive()
    dest = tmp_path / "datasets" / "carla"
    argv = ["data", "carla", "--download", str(dest), "--url", server.url("/no-traffic.tar.gz"), "--num_test", "1"]
    with pytest.raises(SystemExit) as exit_info:
        flexvid_main(argv + ["--no_progress"])
    assert exit_info.value.code == 0
    assert (dest / MARKER_FILE).is_file()
    assert (dest / "video_test.csv").read_text().splitlines() == [",path", "3,video_3.pt"]
    assert sorted(p.name for p in dest.parent.iterdir()) == ["carla"]  # archive and staging removed
    train = build_dataset("carla_no_traffic", "train", T=4, image_size=8, data_dir=dest)
    assert len(train) == 3 and train[1][0].shape == (4, 3, 8, 8)
    assert "ready" in capsys.readouterr().out
    requests = len(server.range_headers)
    prepare_carla(dest, url=server.url("/no-traffic.tar.gz"), progress=False)  # already prepared: no download
    assert len(server.range_headers) == requests


def test_truncated_download_never_leaves_a_dataset(server, tmp_path):
    server.files["/no-traffic.tar.gz"] = carla_archive()
    server.always_cut.add("/no-traffic.tar.gz")
    dest = tmp_path / "carla"
    with pytest.raises(DownloadError, match="stopped after"):
        prepare_carla(dest, url=server.url("/no-traffic.tar.gz"), num_test=1, progress=False)
    assert not dest.exists()
    partial = tmp_path / "carla.no-traffic.tar.gz.part"
    with pytest.raises(DatasetError, match="damaged or incomplete"):
        prepare_carla(dest, archive=partial, num_test=1, progress=False)
    assert not dest.exists() and sorted(p.name for p in tmp_path.iterdir()) == [partial.name]


def test_existing_unprepared_destination_is_refused(tmp_path):
    dest = tmp_path / "carla"
    dest.mkdir()
    (dest / "something").write_text("half-unpacked")
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(carla_archive())
    with pytest.raises(DatasetError, match="holds no completed preparation"):
        prepare_carla(dest, archive=archive, num_test=1, progress=False)
    with pytest.raises(DatasetError, match="Archive .* does not exist"):
        prepare_carla(tmp_path / "other", archive=tmp_path / "nope.tar.gz", progress=False)


def test_unsafe_zip_member_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("train/../../escaped.txt", "boo")
    with pytest.raises(DatasetError, match="unsafe path"):
        unpack_archive(archive, tmp_path / "out")
    assert not (tmp_path / "escaped.txt").exists()
