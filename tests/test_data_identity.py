"""The data identity of files nobody verified holds their contents; checksums are cached per file version.

Planted cases: two sets of MNIST-format files with the same name and layout but other pixels, and
files replaced in place by ones of the same size and modification time.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest

from reproduce.data import checksums
from reproduce.data.checksums import CACHE_NAME, cached_md5, content_fingerprint
from reproduce.data.datasets import DatasetIntegrityError, load_dataset
from reproduce.files.storage import config_hash
from reproduce.models.nets import ModelConfig
from reproduce.training.loop import TrainConfig
from reproduce.training.runs import DataSpec, RunSpec

from test_data import _gzip_idx, _make_mnist


@pytest.fixture(autouse=True)
def _fresh_memory():
    checksums._clear_memory()
    yield
    checksums._clear_memory()


def _spec(data) -> RunSpec:
    return RunSpec("smoke", "identity", "net", ModelConfig("fnn", 10, 1, 28, fnn_width=4, fnn_depth=1),
                   TrainConfig(epochs=1), DataSpec.of(data))


def test_unverified_files_of_other_contents_get_other_identities_and_run_folders(tmp_path):
    _make_mnist(tmp_path / "a", np.random.default_rng(0))
    _make_mnist(tmp_path / "b", np.random.default_rng(1))  # same layout, same labels, other pixels
    a = load_dataset("mnist", root=tmp_path / "a", verify_checksums=False, flat=True)
    b = load_dataset("mnist", root=tmp_path / "b", verify_checksums=False, flat=True)
    assert a.identity["content"] != b.identity["content"]
    assert DataSpec.of(a) != DataSpec.of(b)
    assert _spec(a).run_dir != _spec(b).run_dir
    assert not DataSpec.of(a).matches(b) and DataSpec.of(a).matches(a)
    # the same files give the same identity, in another process's terms too (a fresh memory cache)
    checksums._clear_memory()
    again = load_dataset("mnist", root=tmp_path / "a", verify_checksums=False, flat=True)
    assert again.identity == a.identity


def test_fingerprint_is_names_and_md5s_of_the_read_files(tmp_path):
    _make_mnist(tmp_path, np.random.default_rng(0))
    raw = tmp_path / "MNIST" / "raw"
    files = [raw / n for n in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")]
    h = hashlib.sha256()
    for p in files:
        h.update(f"{p.name}:{hashlib.md5(p.read_bytes()).hexdigest()};".encode())
    data = load_dataset("mnist", root=tmp_path, verify_checksums=False)
    assert data.identity["content"] == h.hexdigest()[:16] == content_fingerprint(files)
    with pytest.raises(FileNotFoundError, match="t10k-labels"):
        content_fingerprint([raw / "t10k-labels"])


def test_verified_data_keeps_its_identity_and_folder_names(tmp_path, monkeypatch):
    from torchvision.datasets import MNIST

    _make_mnist(tmp_path, np.random.default_rng(0))
    md5s = _gzip_idx(tmp_path / "MNIST" / "raw")
    monkeypatch.setattr(MNIST, "resources", [(f, md5s[f]) for f, _ in MNIST.resources])
    data = load_dataset("mnist", root=tmp_path)  # verified against the (patched) published MD5s
    assert "content" not in data.identity
    spec = DataSpec.of(data)
    assert spec == DataSpec("mnist") and spec.content is None
    # a spec without content hashes as the four-field spec of the rounds before it
    four_fields = {"name": "mnist", "seed": 0, "train_limit": None, "flat": False}
    assert config_hash(spec) == config_hash(four_fields)
    assert config_hash(DataSpec("mnist", content="0123456789abcdef")) != config_hash(four_fields)


def test_a_declared_fingerprint_is_checked_when_the_data_is_loaded_again(tmp_path):
    _make_mnist(tmp_path, np.random.default_rng(0))
    spec = DataSpec.of(load_dataset("mnist", root=tmp_path, verify_checksums=False))
    assert spec.load(tmp_path).identity["content"] == spec.content
    target = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    target.write_bytes(target.read_bytes()[:-1] + b"\x07")  # one label changed
    with pytest.raises(DatasetIntegrityError, match=spec.content):
        spec.load(tmp_path)


def test_md5s_are_computed_once_per_file_version(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    calls = []
    real = checksums._KINDS["md5"]
    monkeypatch.setitem(checksums._KINDS, "md5", lambda p: calls.append(p) or real(p))
    assert cached_md5(path) == hashlib.md5(b"abc").hexdigest()
    assert cached_md5(path) == hashlib.md5(b"abc").hexdigest()
    checksums._clear_memory()  # a new process reads the cache file
    assert cached_md5(path) == hashlib.md5(b"abc").hexdigest()
    assert len(calls) == 1
    saved = json.loads((tmp_path / CACHE_NAME).read_text())
    assert saved["files"]["f.bin|md5"]["md5"] == hashlib.md5(b"abc").hexdigest()
    # replaced in place by a file of the same size and the same modification time
    st = path.stat()
    path.write_bytes(b"abd")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    assert cached_md5(path) == hashlib.md5(b"abd").hexdigest()
    assert len(calls) == 2


def test_a_broken_cache_file_is_ignored_and_rewritten(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"xyz")
    for broken in ("not json", "[1, 2]", json.dumps({"version": 1, "files": {"f.bin|md5": {"state": [3], "md5": 7}}})):
        (tmp_path / CACHE_NAME).write_text(broken)
        checksums._clear_memory()
        assert cached_md5(path) == hashlib.md5(b"xyz").hexdigest()
    assert json.loads((tmp_path / CACHE_NAME).read_text())["files"]["f.bin|md5"]["md5"] == hashlib.md5(b"xyz").hexdigest()


def test_an_unwritable_folder_still_gets_the_right_md5(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    path.write_bytes(b"ro")

    def refuse(*args, **kwargs):
        raise OSError(30, "Read-only file system", str(tmp_path / CACHE_NAME))

    monkeypatch.setattr(checksums, "atomic_write_text", refuse)
    assert cached_md5(path) == hashlib.md5(b"ro").hexdigest()
    assert not (tmp_path / CACHE_NAME).exists()
    with pytest.raises(ValueError, match="md5, gunzipped-md5"):
        cached_md5(path, "sha1")


def test_gunzipped_md5_is_cached_apart_from_the_archives_md5(tmp_path):
    import gzip

    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(b"payload", mtime=0))
    assert cached_md5(path, "gunzipped-md5") == hashlib.md5(b"payload").hexdigest()
    assert cached_md5(path) == hashlib.md5(path.read_bytes()).hexdigest()
    (tmp_path / "plain").write_bytes(b"not gzip")
    assert cached_md5(tmp_path / "plain", "gunzipped-md5") is None
    assert cached_md5(tmp_path / "missing") is None
