"""Tests of reproduce.data.fetch and ``python -m reproduce data``, for real over HTTP.

A ThreadingHTTPServer on 127.0.0.1 (honouring ``Range: bytes=N-``) serves tiny files in the exact
published formats (MNIST idx .gz, CIFAR-10's python tar.gz, SVHN .mat, Imagenette's tgz), written
by the helpers of test_data.py. torchvision's URL/mirror and MD5 attributes are pointed at that
server and at the tiny files' checksums. Every connection is checked to go to 127.0.0.1: no test
touches the internet.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import socket
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from test_data import IMAGENETTE_WNIDS, _make_cifar, _make_imagenette, _make_mnist, _make_svhn
from torchvision.datasets import CIFAR10, MNIST, SVHN, FashionMNIST, Imagenette

from reproduce.data import fetch as fetch_module
from reproduce.data.datasets import DatasetIntegrityError, load_dataset
from reproduce.data.fetch import DATASET_NAMES, ChecksumError, FetchError, fetch, is_present, remote_files, state
from reproduce.runner.notebooks import main

LOCAL_HOSTS = {"127.0.0.1", "localhost"}


# ------------------------------------------------------------------------------------------------
# the local server
# ------------------------------------------------------------------------------------------------


@dataclass
class Request:
    path: str
    range: str | None
    status: int
    sent: int  # body bytes sent


@dataclass
class ServerState:
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    ignore_range: bool = False
    #: path -> number of body bytes after which the next response for it is cut off (once)
    cut_once: dict[str, int] = field(default_factory=dict)
    #: path -> seconds the server waits before each body byte it sends for that path
    trickle: dict[str, float] = field(default_factory=dict)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        state: ServerState = self.server.state  # type: ignore[attr-defined]
        path = urlsplit(self.path).path
        body = state.files.get(path)
        wanted = self.headers.get("Range")
        if body is None:
            self._answer(path, wanted, 404, b"not found", {})
            return
        start = 0
        if wanted and not state.ignore_range:
            assert wanted.startswith("bytes=") and wanted.endswith("-"), wanted
            start = int(wanted[len("bytes="):-1])
            if start >= len(body):
                self._answer(path, wanted, 416, b"", {"Content-Range": f"bytes */{len(body)}"})
                return
        payload = body[start:]
        headers = {"Content-Type": "application/octet-stream"}
        if start:
            headers["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
        cut = state.cut_once.pop(path, None)
        self._answer(path, wanted, 206 if start else 200, payload, headers, cut=cut)

    def _answer(self, path: str, wanted: str | None, status: int, payload: bytes, headers: dict,
                cut: int | None = None) -> None:  # fmt: skip
        sent = payload if cut is None else payload[:cut]
        self.server.state.requests.append(Request(path, wanted, status, len(sent)))  # type: ignore[attr-defined]
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))  # the full length, even when cut off
        self.end_headers()
        pause = self.server.state.trickle.get(path)  # type: ignore[attr-defined]
        if pause is None:
            self.wfile.write(sent)
        else:
            try:
                for i in range(len(sent)):
                    time.sleep(pause)
                    self.wfile.write(sent[i:i + 1])
            except OSError:  # the client gave up
                self.close_connection = True
                return
        if cut is not None:
            self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class Server:
    state: ServerState
    base: str

    def url(self, path: str) -> str:
        return self.base + path

    def requests_for(self, filename: str) -> list[Request]:
        return [r for r in self.state.requests if r.path.endswith("/" + filename)]


@pytest.fixture(autouse=True)
def no_internet(monkeypatch):
    """Every outgoing TCP connection must go to this machine; no proxy is consulted."""
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    real = socket.create_connection

    def local_only(address, *args, **kwargs):
        assert address[0] in LOCAL_HOSTS, f"a test tried to connect to {address}"
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", local_only)


@pytest.fixture
def server() -> Iterator[Server]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.state = ServerState()  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield Server(httpd.state, f"http://127.0.0.1:{httpd.server_address[1]}/")  # type: ignore[attr-defined]
    finally:
        httpd.shutdown()
        httpd.server_close()


# ------------------------------------------------------------------------------------------------
# tiny datasets in the published formats
# ------------------------------------------------------------------------------------------------


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _tgz(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(folder, arcname=folder.name)
    return buffer.getvalue()


@dataclass
class Tiny:
    files: dict[str, dict[str, bytes]]  # dataset -> published file name -> bytes
    cifar_md5: dict[str, str]  # file in cifar-10-batches-py -> md5
    mnist: dict
    fashion: dict
    svhn: dict
    cifar_test_labels: list[int]


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Tiny:
    rng = np.random.default_rng(0)
    work = tmp_path_factory.mktemp("published")
    files: dict[str, dict[str, bytes]] = {}

    mnist = _make_mnist(work / "m", rng)
    raw = work / "m" / "MNIST" / "raw"
    files["mnist"] = {f"{p.name}.gz": gzip.compress(p.read_bytes(), mtime=0) for p in sorted(raw.iterdir())}
    fashion = _make_mnist(work / "f", rng, folder="FashionMNIST")
    raw = work / "f" / "FashionMNIST" / "raw"
    files["fashion-mnist"] = {f"{p.name}.gz": gzip.compress(p.read_bytes(), mtime=0) for p in sorted(raw.iterdir())}

    *_, cifar_test_labels = _make_cifar(work / "c", rng)
    batches = work / "c" / "cifar-10-batches-py"
    cifar_md5 = {p.name: _md5(p.read_bytes()) for p in batches.iterdir()}
    files["cifar10"] = {"cifar-10-python.tar.gz": _tgz(batches)}

    svhn = _make_svhn(work / "s", rng)
    files["svhn"] = {p.name: p.read_bytes() for p in (work / "s" / "SVHN").iterdir()}

    _make_imagenette(work / "i", rng)
    files["imagenette"] = {"imagenette2-160.tgz": _tgz(work / "i" / "imagenette2-160")}
    return Tiny(files, cifar_md5, mnist, fashion, svhn, cifar_test_labels)


@pytest.fixture
def mirror(server: Server, tiny: Tiny, monkeypatch) -> Server:
    """Serve the tiny files and point torchvision's URL and MD5 attributes at them."""
    for name, published in tiny.files.items():
        for filename, data in published.items():
            server.state.files[f"/{name}/{filename}"] = data
    md5 = {name: {f: _md5(d) for f, d in published.items()} for name, published in tiny.files.items()}

    monkeypatch.setattr(MNIST, "mirrors", [server.url("mnist/")])
    monkeypatch.setattr(MNIST, "resources", [(f, md5["mnist"][f]) for f, _ in MNIST.resources])
    monkeypatch.setattr(FashionMNIST, "mirrors", [server.url("fashion-mnist/")])
    monkeypatch.setattr(FashionMNIST, "resources", [(f, md5["fashion-mnist"][f]) for f, _ in FashionMNIST.resources])

    monkeypatch.setattr(CIFAR10, "url", server.url("cifar10/cifar-10-python.tar.gz"))
    monkeypatch.setattr(CIFAR10, "tgz_md5", md5["cifar10"]["cifar-10-python.tar.gz"])
    monkeypatch.setattr(CIFAR10, "train_list", [[f, tiny.cifar_md5[f]] for f, _ in CIFAR10.train_list])
    monkeypatch.setattr(CIFAR10, "test_list", [[f, tiny.cifar_md5[f]] for f, _ in CIFAR10.test_list])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": tiny.cifar_md5[CIFAR10.meta["filename"]]})

    split_list = {s: [server.url(f"svhn/{f}"), f, md5["svhn"][f]] for s, (_, f, _) in SVHN.split_list.items()
                  if s != "extra"}  # fmt: skip
    monkeypatch.setattr(SVHN, "split_list", split_list)

    monkeypatch.setitem(
        Imagenette._ARCHIVES,
        "160px",
        (server.url("imagenette/imagenette2-160.tgz"), md5["imagenette"]["imagenette2-160.tgz"]),
    )
    for name in DATASET_NAMES:  # the table now reads only the local server
        for remote in remote_files(name, "/unused"):
            assert {urlsplit(u).hostname for u in remote.urls} == {"127.0.0.1"}, remote.urls
    return server


# ------------------------------------------------------------------------------------------------
# tests
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DATASET_NAMES)
def test_fetch_each_dataset_then_load_it(name, mirror, tiny, tmp_path):
    assert not is_present(name, tmp_path)
    report = fetch([name], tmp_path, progress=False)
    assert report.ok and report[name].status == "fetched"
    assert sorted(report[name].downloaded) == sorted(tiny.files[name])
    assert is_present(name, tmp_path)
    # tar archives are unpacked and removed, the .gz stay (their MD5s verify the idx files); no partial
    # file or temporary folder is left
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith((".part", ".unpacking", ".tgz", ".tar.gz"))]
    assert leftovers == []
    kept = sorted(p.name for p in tmp_path.rglob("*.gz"))
    assert kept == (sorted(tiny.files[name]) if name.endswith("mnist") else [])
    data = load_dataset(name, root=tmp_path)  # checksums verified against the patched MD5s
    if name == "mnist":
        assert [y for _, y in (data.test[i] for i in range(len(data.test)))] == tiny.mnist["t10k"][1].tolist()
        assert len(data.train) == 6
    elif name == "fashion-mnist":
        assert [data.test[i][1] for i in range(len(data.test))] == tiny.fashion["t10k"][1].tolist()
        assert report[name].location == tmp_path / "FashionMNIST" / "raw" and len(data.train) == 6
    elif name == "cifar10":
        assert len(data.train) == 10 and [data.test[i][1] for i in range(3)] == tiny.cifar_test_labels
    elif name == "svhn":
        assert len(data.train) == 5 and [data.test[i][1] for i in range(3)] == [3, 0, 7]
    else:
        assert len(data.train) == 10 and list(data.train.base.wnids) == IMAGENETTE_WNIDS
    assert all(r.status == 200 and r.range is None for r in mirror.state.requests)


def test_second_fetch_downloads_nothing(mirror, tmp_path):
    first = fetch(None, tmp_path, progress=False)
    assert [r.status for r in first.results] == ["fetched"] * 5
    served = len(mirror.state.requests)
    assert served == 4 + 4 + 1 + 2 + 1  # every published file once
    second = fetch(None, tmp_path, progress=False)
    assert [r.status for r in second.results] == ["already there"] * 5
    assert all(r.downloaded == () for r in second.results)
    assert len(mirror.state.requests) == served
    assert "already there" in str(second)


def test_partial_download_is_resumed_with_a_range_request(mirror, tiny, tmp_path):
    data = tiny.files["svhn"]["train_32x32.mat"]
    folder = tmp_path / "SVHN"
    folder.mkdir()
    (folder / "train_32x32.mat.part").write_bytes(data[:1000])
    fetch(["svhn"], tmp_path, progress=False)
    (request,) = mirror.requests_for("train_32x32.mat")
    assert (request.range, request.status, request.sent) == ("bytes=1000-", 206, len(data) - 1000)
    assert (folder / "train_32x32.mat").read_bytes() == data and not (folder / "train_32x32.mat.part").exists()
    load_dataset("svhn", root=tmp_path)


def test_interrupted_transfer_keeps_the_part_and_the_next_fetch_resumes(mirror, tiny, tmp_path):
    data = tiny.files["cifar10"]["cifar-10-python.tar.gz"]
    mirror.state.cut_once["/cifar10/cifar-10-python.tar.gz"] = 700
    with pytest.raises(FetchError, match="resume") as info:
        fetch(["cifar10"], tmp_path, progress=False)
    assert info.value.report["cifar10"].status == "failed"
    part = tmp_path / "cifar-10-python.tar.gz.part"
    assert part.read_bytes() == data[:700]
    assert not (tmp_path / "cifar-10-batches-py").exists()
    assert fetch(["cifar10"], tmp_path, progress=False)["cifar10"].status == "fetched"
    assert [r.range for r in mirror.requests_for("cifar-10-python.tar.gz")] == [None, "bytes=700-"]
    load_dataset("cifar10", root=tmp_path)


def test_server_that_ignores_range_restarts_the_download(mirror, tiny, tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    data = tiny.files["mnist"]["train-images-idx3-ubyte.gz"]
    (raw / "train-images-idx3-ubyte.gz.part").write_bytes(data[:50])
    mirror.state.ignore_range = True
    fetch(["mnist"], tmp_path, progress=False)
    (request,) = mirror.requests_for("train-images-idx3-ubyte.gz")
    assert (request.range, request.status, request.sent) == ("bytes=50-", 200, len(data))
    assert len(load_dataset("mnist", root=tmp_path).train) == 6


def test_a_wrong_part_is_downloaded_again_from_scratch(mirror, tiny, tmp_path):
    wrong = b"not the start of the archive"
    (tmp_path / "imagenette2-160.tgz.part").write_bytes(wrong)
    fetch(["imagenette"], tmp_path, progress=False)
    requests = mirror.requests_for("imagenette2-160.tgz")
    assert [(r.range, r.status) for r in requests] == [(f"bytes={len(wrong)}-", 206), (None, 200)]
    assert len(load_dataset("imagenette", root=tmp_path).test) == 10


def test_corrupted_download_is_deleted_and_reported_and_nothing_fetched_is_lost(mirror, tiny, tmp_path):
    fetch(["mnist", "svhn"], tmp_path, progress=False)
    good = tiny.files["cifar10"]["cifar-10-python.tar.gz"]
    bad = bytes([good[0] ^ 0xFF]) + good[1:]
    mirror.state.files["/cifar10/cifar-10-python.tar.gz"] = bad
    with pytest.raises(FetchError) as info:
        fetch(["mnist", "cifar10", "svhn"], tmp_path, progress=False)
    report = info.value.report
    assert [r.status for r in report.results] == ["already there", "failed", "already there"]
    message = report["cifar10"].error
    assert "cifar-10-python.tar.gz" in message and _md5(good) in message and _md5(bad) in message
    assert "cifar10" in str(info.value)
    # no half file, no partial folder; what was fetched before is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["MNIST", "SVHN"]
    assert len(load_dataset("mnist", root=tmp_path).train) == 6
    assert len(load_dataset("svhn", root=tmp_path).test) == 3


def test_checksum_error_names_file_expected_and_actual(mirror, tiny, tmp_path):
    mirror.state.files["/svhn/test_32x32.mat"] = b"garbage"
    with pytest.raises(FetchError) as info:
        fetch(["svhn"], tmp_path, progress=False)
    error = info.value.report["svhn"].error
    expected = _md5(tiny.files["svhn"]["test_32x32.mat"])
    source = mirror.url("svhn/test_32x32.mat")
    assert f"test_32x32.mat (from {source}) has MD5 {_md5(b'garbage')}, expected {expected}" in error
    assert not (tmp_path / "SVHN" / "test_32x32.mat").exists()
    assert not (tmp_path / "SVHN" / "test_32x32.mat.part").exists()
    assert (tmp_path / "SVHN" / "train_32x32.mat").is_file()  # the other file of the dataset stays
    assert issubclass(ChecksumError, fetch_module.DownloadError)


def test_fetch_repairs_a_present_file_that_does_not_verify(mirror, tiny, tmp_path):
    fetch(["mnist", "cifar10", "svhn"], tmp_path, progress=False)
    raw = tmp_path / "MNIST" / "raw"
    (raw / "train-images-idx3-ubyte.gz").write_bytes(b"not the published archive")
    (raw / "t10k-labels-idx1-ubyte").write_bytes(b"not the published labels")
    (tmp_path / "SVHN" / "train_32x32.mat").write_bytes(b"not the published mat")
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"not the published batch")
    assert not any(is_present(name, tmp_path) for name in ("mnist", "cifar10", "svhn"))
    mirror.state.requests.clear()
    report = fetch(["mnist", "cifar10", "svhn"], tmp_path, progress=False)
    assert [r.status for r in report.results] == ["fetched"] * 3
    # the bad downloads are downloaded again; the bad idx file is unpacked again from its verified .gz
    assert report["mnist"].downloaded == ("train-images-idx3-ubyte.gz",)
    assert report["cifar10"].downloaded == ("cifar-10-python.tar.gz",)
    assert report["svhn"].downloaded == ("train_32x32.mat",)
    assert sorted(r.path for r in mirror.state.requests) == [
        "/cifar10/cifar-10-python.tar.gz", "/mnist/train-images-idx3-ubyte.gz", "/svhn/train_32x32.mat"]
    assert all(is_present(name, tmp_path) for name in ("mnist", "cifar10", "svhn"))
    assert (raw / "t10k-labels-idx1-ubyte").read_bytes() == gzip.decompress(
        tiny.files["mnist"]["t10k-labels-idx1-ubyte.gz"])
    assert len(load_dataset("mnist", root=tmp_path).test) == 4  # verified
    assert len(load_dataset("cifar10", root=tmp_path).train) == 10 and len(load_dataset("svhn", root=tmp_path).train) == 5
    assert _leftovers(tmp_path) == [] and not list(tmp_path.rglob("*.part"))


def test_fetch_completes_idx_files_left_without_their_archive(mirror, tiny, tmp_path):
    fetch(["mnist"], tmp_path, progress=False)
    raw = tmp_path / "MNIST" / "raw"
    for archive in raw.glob("*.gz"):  # what an older fetch left: the idx files only
        archive.unlink()
    assert not is_present("mnist", tmp_path)
    report = fetch(["mnist"], tmp_path, progress=False)
    assert report["mnist"].status == "fetched" and sorted(report["mnist"].downloaded) == sorted(tiny.files["mnist"])
    assert is_present("mnist", tmp_path) and len(load_dataset("mnist", root=tmp_path).train) == 6


def test_status_does_not_report_a_corrupt_file_as_present(mirror, tmp_path, capsys):
    fetch(["svhn"], tmp_path, progress=False)
    (tmp_path / "SVHN" / "test_32x32.mat").write_bytes(b"corrupt")
    assert main(["data", "status", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "  svhn           does not verify (python -m reproduce data fetch svhn repairs it)" in out
    assert "  mnist          missing" in out and "present" not in out
    assert state("svhn", tmp_path) == "does not verify" and state("mnist", tmp_path) == "missing"
    fetch(["svhn"], tmp_path, progress=False)
    assert state("svhn", tmp_path) == "present"


def test_base_urls_replace_torchvision_sources(server, tiny, monkeypatch, tmp_path):
    for filename, data in tiny.files["svhn"].items():
        server.state.files[f"/elsewhere/{filename}"] = data
    patched = {s: [url, f, _md5(tiny.files["svhn"][f])] for s, (url, f, _) in SVHN.split_list.items() if s != "extra"}
    monkeypatch.setattr(SVHN, "split_list", patched)  # real URLs, tiny checksums
    remote = remote_files("svhn", tmp_path, server.url("elsewhere"))
    assert [r.urls for r in remote] == [(server.url(f"elsewhere/{s}_32x32.mat"),) for s in ("train", "test")]
    fetch(["svhn"], tmp_path, progress=False, base_urls={"svhn": server.url("elsewhere/")})
    assert {r.path for r in server.state.requests} == {"/elsewhere/train_32x32.mat", "/elsewhere/test_32x32.mat"}
    with pytest.raises(ValueError, match="valid choices"):
        fetch(["svhn"], tmp_path, base_urls={"svhn2": "http://127.0.0.1/"})


def test_unknown_names_fail_before_anything_is_downloaded(mirror, tmp_path):
    with pytest.raises(ValueError, match=r"'cifar100'; valid choices: mnist, fashion-mnist, cifar10, svhn, imagenette"):
        fetch(["mnist", "cifar100"], tmp_path, progress=False)
    with pytest.raises(ValueError, match="scikit-learn"):
        fetch(["digits"], tmp_path)
    with pytest.raises(ValueError, match="valid choices"):
        is_present("imagenet", tmp_path)
    assert mirror.state.requests == [] and list(tmp_path.iterdir()) == []


def test_command_line(mirror, tiny, tmp_path, capsys):
    assert main(["data", "fetch", "mnist", "--root", str(tmp_path)]) == 0
    assert "mnist" in capsys.readouterr().out
    assert main(["data", "fetch", "mnist", "--root", str(tmp_path)]) == 0
    assert "already there" in capsys.readouterr().out
    assert main(["data", "status", "--root", str(tmp_path)]) == 0
    status = capsys.readouterr().out
    assert "  mnist          present" in status and "  cifar10        missing" in status
    assert "  fashion-mnist  missing" in status
    mirror.state.files["/svhn/train_32x32.mat"] = b"garbage"
    assert main(["data", "fetch", "svhn", "--root", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert "could not fetch svhn" in err
    assert "svhn  failed:" in out and "MD5" in out and "train_32x32.mat" in out
    assert main(["data", "fetch", "svhn", "cifar100", "--root", str(tmp_path)]) == 2
    assert "valid choices" in capsys.readouterr().err
    assert len(load_dataset("mnist", root=tmp_path).test) == 4


def test_command_line_fetches_fashion_mnist(mirror, tiny, tmp_path, capsys):
    assert main(["data", "fetch", "fashion-mnist", "--root", str(tmp_path)]) == 0
    assert "fashion-mnist" in capsys.readouterr().out
    assert main(["data", "status", "--root", str(tmp_path)]) == 0
    status = capsys.readouterr().out
    assert "  fashion-mnist  present" in status and "  mnist          missing" in status
    assert len(load_dataset("fashion-mnist", root=tmp_path).test) == 4
    assert not (tmp_path / "MNIST").exists()


def test_root_defaults_to_reproduce_data(mirror, tmp_path, monkeypatch):
    monkeypatch.setenv("REPRODUCE_DATA", str(tmp_path / "env-root"))
    report = fetch(["mnist"], progress=False)
    assert report.root == tmp_path / "env-root" and is_present("mnist")
    assert report["mnist"].location == tmp_path / "env-root" / "MNIST" / "raw"


# ------------------------------------------------------------------------------------------------
# unpacking that fails, and what it leaves behind
# ------------------------------------------------------------------------------------------------


def _leftovers(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if ".unpacking" in p.name)


def test_corrupt_gzip_stream_with_the_published_md5_leaves_no_temporary_file(mirror, tiny, tmp_path, monkeypatch):
    name = "t10k-labels-idx1-ubyte.gz"
    good = tiny.files["mnist"][name]
    corrupt = good[:-8]  # the gzip trailer (CRC, size) is missing: the stream ends early
    mirror.state.files[f"/mnist/{name}"] = corrupt
    published = list(MNIST.resources)
    monkeypatch.setattr(MNIST, "resources", [(f, _md5(corrupt) if f == name else m) for f, m in published])
    with pytest.raises(FetchError) as info:
        fetch(["mnist"], tmp_path, progress=False)
    error = info.value.report["mnist"].error
    assert name in error and "t10k-labels-idx1-ubyte" in error and "ended" in error, error
    assert _leftovers(tmp_path) == []
    # the corrupt archive is not kept to be unpacked again: once the source is good, a rerun downloads it
    mirror.state.files[f"/mnist/{name}"] = good
    monkeypatch.setattr(MNIST, "resources", [(f, _md5(good) if f == name else m) for f, m in published])
    assert fetch(["mnist"], tmp_path, progress=False)["mnist"].status == "fetched"
    assert len(mirror.requests_for(name)) == 2
    assert _leftovers(tmp_path) == [] and len(load_dataset("mnist", root=tmp_path).test) == 4


def test_disk_full_while_gunzipping_leaves_no_temporary_file_and_keeps_the_archive(mirror, tmp_path, monkeypatch):
    import errno
    import shutil

    real = shutil.copyfileobj

    def full_disk(src, dst, length=0):
        dst.write(src.read(10))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fetch_module.shutil, "copyfileobj", full_disk)
    with pytest.raises(FetchError) as info:
        fetch(["mnist"], tmp_path, progress=False)
    error = info.value.report["mnist"].error
    assert "No space left on device" in error and "train-images-idx3-ubyte" in error, error
    assert _leftovers(tmp_path) == []
    assert (tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").is_file()  # verified: kept for the rerun
    served = len(mirror.state.requests)
    monkeypatch.setattr(fetch_module.shutil, "copyfileobj", real)
    assert fetch(["mnist"], tmp_path, progress=False)["mnist"].status == "fetched"
    assert len(mirror.requests_for("train-images-idx3-ubyte.gz")) == 1  # reused, not downloaded again
    assert len(mirror.state.requests) == served + 3
    assert _leftovers(tmp_path) == []


def test_a_stale_unpacking_leftover_does_not_block_a_rerun(mirror, tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte.unpacking").write_bytes(b"half of an earlier attempt")
    (raw / "t10k-images-idx3-ubyte.unpacking").mkdir()  # whatever it is, it is not ours to keep
    (raw / "t10k-images-idx3-ubyte.unpacking" / "junk").write_bytes(b"junk")
    assert fetch(["mnist"], tmp_path, progress=False)["mnist"].status == "fetched"
    assert _leftovers(tmp_path) == []
    assert len(load_dataset("mnist", root=tmp_path).train) == 6


# ------------------------------------------------------------------------------------------------
# a download that trickles: the overall deadline and the read timeout
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["keyword", "module attribute"])
def test_a_trickling_download_stops_at_the_overall_deadline_and_resumes_later(how, mirror, tiny, tmp_path, monkeypatch):
    data = tiny.files["svhn"]["test_32x32.mat"]
    mirror.state.trickle["/svhn/test_32x32.mat"] = 0.5  # one byte per half second: every read succeeds
    kwargs = {"deadline_s": 1.0} if how == "keyword" else {}
    if how == "module attribute":
        monkeypatch.setattr(fetch_module, "_DEADLINE_S", 1.0)
    start = time.monotonic()
    with pytest.raises(FetchError) as info:
        fetch(["svhn"], tmp_path, progress=False, **kwargs)
    assert time.monotonic() - start < 30  # generous: the deadline is 1 s, the whole file would take hours
    error = info.value.report["svhn"].error
    assert "overall deadline of 1 s" in error and mirror.url("svhn/test_32x32.mat") in error, error
    part = tmp_path / "SVHN" / "test_32x32.mat.part"
    kept = part.stat().st_size
    assert 0 < kept < len(data) and part.read_bytes() == data[:kept]
    del mirror.state.trickle["/svhn/test_32x32.mat"]
    assert fetch(["svhn"], tmp_path, progress=False)["svhn"].status == "fetched"
    assert mirror.requests_for("test_32x32.mat")[-1].range == f"bytes={kept}-"
    assert len(load_dataset("svhn", root=tmp_path).test) == 3


def test_a_stalled_download_names_the_read_timeout(mirror, tmp_path, monkeypatch):
    mirror.state.trickle["/svhn/test_32x32.mat"] = 3.0
    monkeypatch.setattr(fetch_module, "_TIMEOUT_S", 0.5)
    with pytest.raises(FetchError) as info:
        fetch(["svhn"], tmp_path, progress=False)
    error = info.value.report["svhn"].error
    assert "read timeout of 0.5 s" in error and mirror.url("svhn/test_32x32.mat") in error, error
    assert "deadline" not in error.split("read timeout")[0]


# ------------------------------------------------------------------------------------------------
# a data folder that is a file
# ------------------------------------------------------------------------------------------------


def test_a_root_that_is_a_file_is_named_and_nothing_is_downloaded(mirror, tmp_path, monkeypatch):
    file = tmp_path / "not-a-folder"
    file.write_text("a file")
    for call in (lambda: fetch(["mnist"], file, progress=False), lambda: is_present("mnist", file)):
        with pytest.raises(NotADirectoryError, match=re.escape(f"{file} is a file, not a folder")):
            call()
    with pytest.raises(NotADirectoryError, match=re.escape(f"{file} is a file, not a folder")):
        fetch(["mnist"], file / "data", progress=False)  # a folder cannot be made under it either
    monkeypatch.setenv("REPRODUCE_DATA", str(file))
    with pytest.raises(NotADirectoryError, match=r"is a file, not a folder.*\$REPRODUCE_DATA"):
        fetch(["mnist"], progress=False)
    assert mirror.state.requests == [] and file.read_text() == "a file"


def test_command_line_with_a_root_that_is_a_file_is_a_usage_error(mirror, tmp_path, monkeypatch, capsys):
    file = tmp_path / "not-a-folder"
    file.write_text("a file")
    for command in ("fetch", "status"):
        assert main(["data", command, "--root", str(file)]) == 2, command
        out, err = capsys.readouterr()
        assert f"python -m reproduce data {command}: error:" in err and f"{file} is a file, not a folder" in err
        assert "missing" not in out
    monkeypatch.setenv("REPRODUCE_DATA", str(file))
    assert main(["data", "status"]) == 2
    assert "$REPRODUCE_DATA" in capsys.readouterr().err
    assert mirror.state.requests == [] and file.read_text() == "a file"


def test_load_with_download_repairs_a_file_that_does_not_verify(mirror, tiny, tmp_path):
    fetch(["mnist"], tmp_path, progress=False)
    raw = tmp_path / "MNIST" / "raw"
    (raw / "train-labels-idx1-ubyte.gz").write_bytes(b"not the published archive")
    with pytest.raises(DatasetIntegrityError):
        load_dataset("mnist", root=tmp_path)  # without download: refused, naming the repair
    mirror.state.requests.clear()
    data = load_dataset("mnist", root=tmp_path, download=True)  # downloads what does not verify
    assert [r.path for r in mirror.state.requests] == ["/mnist/train-labels-idx1-ubyte.gz"]
    assert len(data.train) == len(load_dataset("mnist", root=tmp_path).train)  # verified now
