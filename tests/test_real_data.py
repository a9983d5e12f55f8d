"""The real Fashion-MNIST (70,000 images) read as ``fashion-mnist``: ``make test-real-data``.

The files come from Debian's ``dataset-fashion-mnist`` package, which installs the four published
``.gz`` files in ``/usr/share/datasets/fashion-mnist/`` (``make test-real-data`` apt-installs it
when that folder is missing). The tests run only when asked for by a marker expression naming
``real_data`` (``-m real_data``), so the default ``make test`` skips them; they are skipped when
the folder is missing, and with ``REPRODUCE_REQUIRE_REAL_DATA=1`` (set by ``make test-real-data``)
fail instead.

Checksums: Debian normalises the gzip headers of the files it packages (strip-nondeterminism
drops the stored file name and resets the time stamp; the compressed data are untouched), so its
``.gz`` files are 23-24 bytes shorter than the published ones and cannot have the MD5s torchvision
publishes (``FashionMNIST.resources``). Where they do not, the files are verified against
Debian's own MD5s of them (``/var/lib/dpkg/info/dataset-fashion-mnist.md5sums``), through the same
``verify_checksums=True`` path of the loader; the test then checks what the published dataset is:
60,000 + 10,000 images of 28x28 px, 6,000 + 1,000 per class.
"""

from __future__ import annotations

import gzip
import os
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch
from torchvision.datasets import FashionMNIST

from reproduce.data.datasets import DatasetIntegrityError, dataset_tensors, file_md5, load_dataset

DEBIAN_FOLDER = Path("/usr/share/datasets/fashion-mnist")
DEBIAN_MD5SUMS = Path("/var/lib/dpkg/info/dataset-fashion-mnist.md5sums")


def _unavailable(reason: str) -> None:
    if os.environ.get("REPRODUCE_REQUIRE_REAL_DATA") == "1":
        pytest.fail(f"{reason} (REPRODUCE_REQUIRE_REAL_DATA=1)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def real_root(request: pytest.FixtureRequest, tmp_path_factory) -> Path:
    """A data root holding the Debian files as ``FashionMNIST/raw`` (each .gz beside its idx file)."""
    if "real_data" not in (request.config.getoption("markexpr", "") or ""):
        pytest.skip("real-data tests run only when selected: `make test-real-data` or `pytest -m real_data`")
    missing = [f for f, _ in FashionMNIST.resources if not (DEBIAN_FOLDER / f).is_file()]
    if missing:
        _unavailable(f"{', '.join(missing)} missing in {DEBIAN_FOLDER}: apt-get install dataset-fashion-mnist")
    root = tmp_path_factory.mktemp("real")
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for filename, _ in FashionMNIST.resources:
        shutil.copyfile(DEBIAN_FOLDER / filename, raw / filename)
        with gzip.open(raw / filename, "rb") as src, open(raw / filename.removesuffix(".gz"), "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    return root


def _debian_md5s() -> dict[str, str]:
    lines = DEBIAN_MD5SUMS.read_text().splitlines() if DEBIAN_MD5SUMS.is_file() else []
    return {Path(path).name: md5 for md5, path in (line.split(maxsplit=1) for line in lines)}


@pytest.mark.real_data
def test_real_fashion_mnist_loads_verified(real_root, monkeypatch):
    raw = real_root / "FashionMNIST" / "raw"
    published = dict(FashionMNIST.resources)
    if any(file_md5(raw / f) != md5 for f, md5 in published.items()):
        # Debian's re-headered files: refused against the published MD5s, naming the file ...
        with pytest.raises(DatasetIntegrityError, match="fashion-mnist file .*has MD5 .*expected the published"):
            load_dataset("fashion-mnist", root=real_root)
        for filename in published:  # ... only the header differs: no stored name (FNAME flag unset)
            assert (raw / filename).read_bytes()[3] & 0x08 == 0
        debian = _debian_md5s()
        assert all(file_md5(raw / f) == debian.get(f) for f in published), "the files differ from Debian's"
        monkeypatch.setattr(FashionMNIST, "resources", [(f, debian[f]) for f in published])
    data = load_dataset("fashion-mnist", root=real_root, augment=False)  # verify_checksums=True
    assert (data.num_classes, data.in_channels, data.image_size) == (10, 1, 28)
    assert len(data.train) == 60_000 and len(data.test) == 10_000
    assert Counter(data.train.base.targets.tolist()) == dict.fromkeys(range(10), 6_000)
    assert Counter(data.test.base.targets.tolist()) == dict.fromkeys(range(10), 1_000)
    x, y = dataset_tensors(data.test, torch.arange(0, 10_000, 97))
    assert x.shape == (104, 1, 28, 28) and 0.0 <= x.min() and x.max() <= 1.0 and x.max() > 0.9
    assert torch.equal(y, data.test.base.targets[::97].to(torch.int64))


@pytest.mark.real_data
def test_real_fashion_mnist_augmentation_and_fingerprint(real_root):
    import hashlib

    raw = real_root / "FashionMNIST" / "raw"
    data = load_dataset("fashion-mnist", root=real_root, verify_checksums=False)
    # unverified files are named by their contents: names and MD5s of the four idx files read
    h = hashlib.sha256()
    for f, _ in FashionMNIST.resources:
        name = f.removesuffix(".gz")
        h.update(f"{name}:{hashlib.md5((raw / name).read_bytes()).hexdigest()};".encode())
    assert data.identity["content"] == h.hexdigest()[:16]
    # the augmentation (module docstring of reproduce.data.datasets): the image enlarged to 32 px, a
    # random 28-px crop of it, plus one brightness delta in [-0.25, 0.25) over the whole image
    from reproduce.data.datasets import ResizeWithPad

    torch.manual_seed(0)
    plain, label = data.train_eval[0]
    big = ResizeWithPad(32)(plain)
    offsets, deltas = set(), []
    for _ in range(12):
        x, y = data.train[0]
        assert x.shape == (1, 28, 28) and y == label
        fits = [(i, j) for i in range(5) for j in range(5)
                if float((x - big[:, i:i + 28, j:j + 28]).std()) < 1e-5]
        assert len(fits) >= 1, "not a crop of the enlarged image plus a constant"
        i, j = fits[0]
        offsets.add((i, j))
        deltas.append(float((x - big[:, i:i + 28, j:j + 28]).mean()))
    assert len(offsets) > 1 and all(-0.25 <= d < 0.25 for d in deltas) and len(set(deltas)) > 1
