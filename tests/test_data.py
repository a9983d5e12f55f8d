"""Tests of reproduce.data: the embedded digits, and each torchvision loader on tiny files written here
in the exact on-disk format torchvision reads. Nothing is downloaded."""

from __future__ import annotations

import gzip
import hashlib
import math
import pickle
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.datasets import load_digits
from torch.utils.data import TensorDataset
from torchvision.datasets import MNIST, FashionMNIST

from reproduce.data.datasets import (
    DATASETS,
    DataBundle,
    DatasetIntegrityError,
    DatasetNotFoundError,
    PerImageStandardize,
    dataset_shape,
    dataset_train_size,
    RandomBrightness,
    ResizeWithPad,
    balanced_order,
    default_root,
    load_dataset,
    measurement_samples,
)

IMAGENETTE_WNIDS = [
    "n01440764", "n02102040", "n02979186", "n03000684", "n03028079",
    "n03394916", "n03417042", "n03425413", "n03445777", "n03888257",
]  # fmt: skip


def _standardized(image_chw_uint8: np.ndarray) -> torch.Tensor:
    """Hand-written per-image standardisation of a uint8 image (independent of the module)."""
    x = image_chw_uint8.astype(np.float64) / 255.0
    std = max(x.std(), 1.0 / math.sqrt(x.size))
    return torch.from_numpy((x - x.mean()) / std).float()


def _items(dataset) -> list[tuple[torch.Tensor, int]]:
    return [dataset[i] for i in range(len(dataset))]


# ------------------------------------------------------------------------------------------------
# digits
# ------------------------------------------------------------------------------------------------


def test_digits_shapes_values_and_sizes():
    data = load_dataset("digits")
    assert isinstance(data, DataBundle)
    assert (data.name, data.num_classes, data.in_channels, data.image_size) == ("digits", 10, 1, 8)
    assert isinstance(data.train, TensorDataset) and isinstance(data.test, TensorDataset)
    x_train, y_train = data.train.tensors
    x_test, y_test = data.test.tensors
    assert x_train.shape == (1437, 1, 8, 8) and x_test.shape == (360, 1, 8, 8)
    assert x_train.dtype == torch.float32 and y_train.dtype == torch.int64
    assert float(x_train.min()) == 0.0 and float(x_train.max()) == 1.0
    # pixels are the original 0..16 values divided by 16
    assert torch.equal(x_train * 16, torch.round(x_train * 16))
    assert set(y_train.tolist()) == set(range(10)) == set(y_test.tolist())
    # no augmentation for digits: train and train_eval are the same images
    assert data.train_eval is data.train


def test_digits_split_is_a_stratified_partition_of_all_digits():
    digits = load_digits()
    data = load_dataset("digits", seed=3)
    x_all = np.concatenate([data.train.tensors[0].numpy(), data.test.tensors[0].numpy()]).reshape(-1, 64)
    y_all = np.concatenate([data.train.tensors[1].numpy(), data.test.tensors[1].numpy()])
    expected = sorted(zip(map(bytes, (digits.data / 16).astype(np.float32)), digits.target.tolist()))
    assert sorted(zip(map(bytes, x_all), y_all.tolist())) == expected
    totals = Counter(digits.target.tolist())
    test_counts = Counter(data.test.tensors[1].tolist())
    for label, total in totals.items():
        assert abs(test_counts[label] - 0.2 * total) <= 1, (label, test_counts[label], total)


def test_digits_split_depends_on_seed_only():
    a, b, c = load_dataset("digits", seed=0), load_dataset("digits", seed=0), load_dataset("digits", seed=1)
    assert torch.equal(a.train.tensors[0], b.train.tensors[0]) and torch.equal(a.test.tensors[1], b.test.tensors[1])
    assert not torch.equal(a.train.tensors[0], c.train.tensors[0])


def test_digits_flat():
    image = load_dataset("digits", seed=2)
    flat = load_dataset("digits", seed=2, flat=True)
    assert flat.train.tensors[0].shape == (1437, 64) and flat.test.tensors[0].shape == (360, 64)
    assert torch.equal(flat.train.tensors[0], image.train.tensors[0].reshape(-1, 64))


def test_digits_train_limit_is_a_class_balanced_subset():
    full = load_dataset("digits", seed=5)
    small = load_dataset("digits", seed=5, train_limit=50)
    x, y = small.train.tensors
    assert len(small.train) == len(small.train_eval) == 50
    assert Counter(y.tolist()) == {c: 5 for c in range(10)}
    full_rows = {(bytes(r.numpy()), int(t)) for r, t in zip(full.train.tensors[0], full.train.tensors[1])}
    assert all((bytes(r.numpy()), int(t)) in full_rows for r, t in zip(x, y))
    assert torch.equal(small.test.tensors[0], full.test.tensors[0])  # the test set is untouched
    for bad in (0, -3, 1438, 2.5, True):
        with pytest.raises(ValueError, match="train_limit"):
            load_dataset("digits", train_limit=bad)


def test_balanced_order_prefixes_take_turns():
    labels = [0] * 6 + [1] * 3 + [2] * 9
    order = balanced_order(labels, seed=4)
    assert sorted(order.tolist()) == list(range(18))
    first_nine = Counter(labels[i] for i in order[:9])
    assert first_nine == {0: 3, 1: 3, 2: 3}
    assert not np.array_equal(order, balanced_order(labels, seed=5))


# ------------------------------------------------------------------------------------------------
# measurement samples
# ------------------------------------------------------------------------------------------------


def test_measurement_samples_from_training_set_deterministic():
    data = load_dataset("digits", seed=0)
    x, y = measurement_samples(data, 64, seed=7)
    assert x.shape == (64, 1, 8, 8) and x.dtype == torch.float32 and y.shape == (64,) and y.dtype == torch.int64
    x2, y2 = measurement_samples(data, 64, seed=7)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    x3, _ = measurement_samples(data, 64, seed=8)
    assert not torch.equal(x, x3)
    rows = {(bytes(r.numpy()), int(t)): i for i, (r, t) in enumerate(zip(*data.train_eval.tensors))}
    picked = [rows.get((bytes(r.numpy()), int(t))) for r, t in zip(x, y)]
    assert None not in picked
    assert len(set(picked)) >= 60  # distinct samples (digits holds a few duplicate images)
    assert len(set(y.tolist())) > 5  # a shuffle, not the first rows of one class


class _PlantedAugmentation(torch.utils.data.Dataset):
    """Training view whose 'augmentation' adds uniform noise in [0, 0.5) from torch's global RNG
    to image i, which is the constant i (so the clean image of a sample names its index)."""

    def __init__(self, clean: TensorDataset):
        self.clean = clean

    def __len__(self):
        return len(self.clean)

    def __getitem__(self, i):
        x, y = self.clean[i]
        return x + 0.5 * torch.rand(x.shape), y


def test_fresh_measurement_batch_without_augmentation_is_the_same_samples_clean():
    """Released outside auto-tune: a fresh shuffled training batch read *unaugmented*. Each image
    is the constant of its index, so the unaugmented batch must hold exact training images (whole
    numbers, distinct), the same samples as the augmented batch of that draw, which lies in
    [clean, clean + 0.5)."""
    n = 40
    images = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 2, 2).clone()
    clean = TensorDataset(images, torch.arange(n) % 4)
    data = DataBundle("planted", _PlantedAugmentation(clean), clean, clean, 4, 1, 2)
    xa, ya = measurement_samples(data, 16, seed=3, draw=5)
    xu, yu = measurement_samples(data, 16, seed=3, draw=5, augment=False)
    ids = xu[:, 0, 0, 0]
    assert torch.equal(ids, ids.round()) and len(set(ids.tolist())) == 16
    assert torch.equal(xu, images[ids.long()]) and torch.equal(yu, ids.long() % 4) and torch.equal(ya, yu)
    noise = xa - xu
    assert (noise >= 0).all() and (noise < 0.5).all() and noise.max() > 0
    assert not torch.equal(measurement_samples(data, 16, seed=3, draw=6, augment=False)[0], xu)  # another draw
    with pytest.raises(ValueError, match="augment must be True or False, got 'no'"):
        measurement_samples(data, 16, seed=3, draw=5, augment="no")


def test_measurement_samples_rejects_bad_n():
    data = load_dataset("digits", train_limit=30)
    assert measurement_samples(data, 30, seed=0)[0].shape[0] == 30
    for bad in (0, -1, 31):
        with pytest.raises(ValueError, match="n must be"):
            measurement_samples(data, bad, seed=0)


# ------------------------------------------------------------------------------------------------
# transforms, checked against hand-computed values
# ------------------------------------------------------------------------------------------------


def test_per_image_standardize_hand_computed():
    x = torch.tensor([[[0.0, 1.0], [2.0, 3.0]]])
    expected = (x - 1.5) / math.sqrt(1.25)
    assert torch.allclose(PerImageStandardize()(x), expected)
    # a uniform image: std 0 is floored at 1/sqrt(numel) = 0.5, so the result is 0, not nan
    assert torch.equal(PerImageStandardize()(torch.full((1, 2, 2), 5.0)), torch.zeros(1, 2, 2))


def test_random_brightness_is_one_unclipped_additive_delta():
    torch.manual_seed(0)
    x = torch.rand(3, 4, 4)
    deltas = []
    for _ in range(200):
        shifted = RandomBrightness(0.25)(x)
        delta = shifted - x
        assert torch.allclose(delta, delta.flatten()[0].expand_as(delta), atol=1e-6)
        deltas.append(float(delta.flatten()[0]))
    assert -0.25 <= min(deltas) < -0.2 and 0.2 < max(deltas) < 0.25
    above = max(float(RandomBrightness(0.25)(torch.ones(1, 2, 2)).max()) for _ in range(50))
    assert above > 1.0  # no clipping


def test_resize_with_pad_letterboxes_like_tensorflow():
    # a 2x4 (H x W) image into 8x8: scaled to 4x8, placed at rows 2..5 on a zero canvas
    out = ResizeWithPad(8)(torch.ones(1, 2, 4))
    expected = torch.zeros(1, 8, 8)
    expected[:, 2:6, :] = 1.0
    assert torch.allclose(out, expected)
    x = torch.rand(3, 5, 5)
    assert torch.equal(ResizeWithPad(5)(x), x)
    # a square image is enlarged, not framed by zeros
    assert bool((ResizeWithPad(9)(torch.ones(1, 5, 5)) > 0.99).all())


# ------------------------------------------------------------------------------------------------
# torchvision datasets on tiny files in their real formats
# ------------------------------------------------------------------------------------------------


def _write_idx(path: Path, array: np.ndarray) -> None:
    """IDX format (big-endian): 0, 0, type 0x08 (uint8), ndim, then each dim as uint32, then data."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def _make_mnist(
    root: Path, rng: np.random.Generator, folder: str = "MNIST"
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """MNIST's four idx files (``folder="FashionMNIST"``: Fashion-MNIST's, the same format) under ``root``."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    splits = {"train": (6, [3, 1, 4, 1, 5, 9]), "t10k": (4, [2, 6, 5, 0])}
    out = {}
    for prefix, (n, labels) in splits.items():
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.array(labels, dtype=np.uint8))
        out[prefix] = (images, np.array(labels))
    return out


def _make_cifar(root: Path, rng: np.random.Generator) -> tuple[np.ndarray, list[int], np.ndarray, list[int]]:
    """cifar-10-batches-py: pickled dicts with 'data' [n, 3072] uint8 (R, G, B planes) and 'labels'."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train_images, train_labels = [], []
    for b in range(1, 6):
        data = rng.integers(0, 256, size=(2, 3072), dtype=np.uint8)
        labels = [(2 * b) % 10, (2 * b + 1) % 10]
        with open(folder / f"data_batch_{b}", "wb") as f:
            pickle.dump({"batch_label": f"training batch {b} of 5", "data": data, "labels": labels}, f)
        train_images.append(data)
        train_labels += labels
    test_data = rng.integers(0, 256, size=(3, 3072), dtype=np.uint8)
    test_labels = [7, 0, 3]
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"batch_label": "testing batch 1 of 1", "data": test_data, "labels": test_labels}, f)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": names, "num_cases_per_batch": 10000, "num_vis": 3072}, f)
    return np.concatenate(train_images), train_labels, test_data, test_labels


def _make_svhn(root: Path, rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """train_32x32.mat / test_32x32.mat: X [32, 32, 3, N] uint8, y [N, 1] with 10 for the digit 0."""
    from scipy.io import savemat

    folder = root / "SVHN"
    folder.mkdir(parents=True)
    out = {}
    for split, labels in (("train", [10, 1, 2, 9, 10]), ("test", [3, 10, 7])):
        x = rng.integers(0, 256, size=(32, 32, 3, len(labels)), dtype=np.uint8)
        savemat(folder / f"{split}_32x32.mat", {"X": x, "y": np.array(labels, dtype=np.uint8).reshape(-1, 1)})
        out[split] = (x, np.array(labels))
    return out


def _make_imagenette(root: Path, rng: np.random.Generator) -> None:
    """imagenette2-160/{train,val}/<wnid>/<name>.JPEG, one 40x30 (W x H) photo per class and split."""
    for split in ("train", "val"):
        for k, wnid in enumerate(IMAGENETTE_WNIDS):
            folder = root / "imagenette2-160" / split / wnid
            folder.mkdir(parents=True)
            pixels = rng.integers(40, 256, size=(30, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{wnid}_{k}.JPEG", format="JPEG", quality=95)


def test_mnist_from_idx_files(tmp_path):
    written = _make_mnist(tmp_path, np.random.default_rng(0))
    data = load_dataset("mnist", root=tmp_path, verify_checksums=False)  # tiny files: not the published ones
    assert (data.num_classes, data.in_channels, data.image_size) == (10, 1, 28)
    assert len(data.train) == len(data.train_eval) == 6 and len(data.test) == 4
    for view, prefix in ((data.train_eval, "train"), (data.test, "t10k")):
        images, labels = written[prefix]
        for i, (x, y) in enumerate(_items(view)):
            assert x.shape == (1, 28, 28) and x.dtype == torch.float32
            assert y == labels[i]
            # MNIST: only scaled to [0, 1], no standardisation
            assert torch.allclose(x[0], torch.from_numpy(images[i] / 255.0).float(), atol=1e-6)
    torch.manual_seed(0)
    x_aug, y_aug = data.train[0]
    assert x_aug.shape == (1, 28, 28) and y_aug == 3
    assert not torch.allclose(x_aug, data.train_eval[0][0])
    flat = load_dataset("mnist", root=tmp_path, flat=True, verify_checksums=False)
    assert flat.train[0][0].shape == (784,) and flat.test[0][0].shape == (784,)


def test_cifar10_from_pickled_batches(tmp_path):
    train_rows, train_labels, test_rows, test_labels = _make_cifar(tmp_path, np.random.default_rng(1))
    data = load_dataset("cifar10", root=tmp_path, verify_checksums=False)
    assert (data.num_classes, data.in_channels, data.image_size) == (10, 3, 32)
    assert len(data.train) == 10 and len(data.test) == 3
    for view, rows, labels in ((data.train_eval, train_rows, train_labels), (data.test, test_rows, test_labels)):
        for i, (x, y) in enumerate(_items(view)):
            assert y == labels[i]
            assert torch.allclose(x, _standardized(rows[i].reshape(3, 32, 32)), atol=1e-5)
            assert abs(float(x.mean())) < 1e-5 and abs(float(x.std(correction=0)) - 1) < 1e-4
    # augmentation: active on train, absent on train_eval and test
    torch.manual_seed(0)
    first, second = data.train[4][0], data.train[4][0]
    assert first.shape == (3, 32, 32) and not torch.allclose(first, second)
    assert torch.equal(data.train_eval[4][0], data.train_eval[4][0]) and torch.equal(data.test[1][0], data.test[1][0])
    plain = load_dataset("cifar10", root=tmp_path, verify_checksums=False, augment=False)
    assert torch.equal(plain.train[4][0], plain.train_eval[4][0])
    flat = load_dataset("cifar10", root=tmp_path, verify_checksums=False, flat=True)
    assert flat.train[0][0].shape == (3072,) and torch.equal(flat.test[2][0], data.test[2][0].reshape(-1))


def test_cifar10_checksums_are_verified_by_default(tmp_path):
    _make_cifar(tmp_path, np.random.default_rng(1))
    with pytest.raises(DatasetIntegrityError, match="MD5") as info:
        load_dataset("cifar10", root=tmp_path)
    assert str(tmp_path / "cifar-10-batches-py") in str(info.value)


def test_svhn_from_mat_files(tmp_path):
    written = _make_svhn(tmp_path, np.random.default_rng(2))
    data = load_dataset("svhn", root=tmp_path, verify_checksums=False)
    assert (data.num_classes, data.in_channels, data.image_size) == (10, 3, 32)
    assert len(data.train) == 5 and len(data.test) == 3
    assert [y for _, y in _items(data.train_eval)] == [0, 1, 2, 9, 0]  # label 10 is the digit 0
    assert [y for _, y in _items(data.test)] == [3, 0, 7]
    for view, split in ((data.train_eval, "train"), (data.test, "test")):
        x_all, _ = written[split]
        for i, (x, _) in enumerate(_items(view)):
            assert torch.allclose(x, _standardized(x_all[:, :, :, i].transpose(2, 0, 1)), atol=1e-5)
    torch.manual_seed(0)
    assert not torch.allclose(data.train[1][0], data.train[1][0])
    with pytest.raises(DatasetIntegrityError, match="MD5"):
        load_dataset("svhn", root=tmp_path)


def test_imagenette_from_image_folders(tmp_path):
    _make_imagenette(tmp_path, np.random.default_rng(3))
    data = load_dataset("imagenette", root=tmp_path, train_limit=10, seed=1)
    assert (data.num_classes, data.in_channels, data.image_size) == (10, 3, 128)
    assert len(data.train) == 10 and len(data.test) == 10
    assert sorted(y for _, y in _items(data.train_eval)) == list(range(10))
    assert [y for _, y in _items(data.test)] == list(range(10))  # classes in sorted wnid order
    x, _ = data.test[0]
    assert x.shape == (3, 128, 128)
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std(correction=0)) - 1) < 1e-4
    # 40x30 letter-boxed into 128x128: content rows 16..111, black bars above and below, which are
    # the smallest value after standardisation (all photo pixels are >= 40/255)
    bars = torch.cat([x[:, :16], x[:, 112:]], dim=1)
    assert torch.allclose(bars, torch.full_like(bars, float(x.min())))
    assert bool((x[:, 17:111] > float(x.min()) + 0.1).all())
    torch.manual_seed(0)
    first, second = data.train[0][0], data.train[0][0]
    assert first.shape == (3, 128, 128) and not torch.allclose(first, second)
    assert torch.equal(data.train_eval[0][0], data.train_eval[0][0])


def test_measurement_samples_on_a_torchvision_dataset_are_unaugmented(tmp_path):
    train_rows, train_labels, _, _ = _make_cifar(tmp_path, np.random.default_rng(4))
    data = load_dataset("cifar10", root=tmp_path, verify_checksums=False)
    x, y = measurement_samples(data, 10, seed=0)
    assert x.shape == (10, 3, 32, 32) and y.dtype == torch.int64
    expected = [_standardized(r.reshape(3, 32, 32)) for r in train_rows]
    matched = [next(i for i, e in enumerate(expected) if torch.allclose(row, e, atol=1e-5)) for row in x]
    assert sorted(matched) == list(range(10))  # every training image once, none augmented
    assert [train_labels[i] for i in matched] == y.tolist()
    x2, _ = measurement_samples(data, 10, seed=0)
    assert torch.equal(x, x2)
    with pytest.raises(ValueError, match="n must be"):
        measurement_samples(data, 11, seed=0)


# ------------------------------------------------------------------------------------------------
# errors and the default root
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "searched"),
    [
        ("mnist", "MNIST/raw/train-images-idx3-ubyte"),
        ("cifar10", "cifar-10-batches-py/data_batch_1"),
        ("svhn", "SVHN/train_32x32.mat"),
        ("imagenette", "imagenette2-160"),
    ],
)
def test_missing_data_names_the_searched_path(tmp_path, name, searched):
    with pytest.raises(FileNotFoundError) as info:
        load_dataset(name, root=tmp_path)
    assert isinstance(info.value, DatasetNotFoundError)
    message = str(info.value)
    assert str(tmp_path / searched) in message
    assert "download=True" in message
    # and the one command that gets the data
    assert f"python -m reproduce data fetch {name} --root {tmp_path}" in message


def test_partial_mnist_names_the_missing_file(tmp_path):
    _make_mnist(tmp_path, np.random.default_rng(0))
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DatasetNotFoundError, match="t10k-labels-idx1-ubyte"):
        load_dataset("mnist", root=tmp_path)


def _gzip_idx(raw: Path) -> dict[str, str]:
    """Put ``<file>.gz`` beside each idx file of ``raw`` (as ``data fetch`` leaves them); their MD5s."""
    md5s = {}
    for path in sorted(raw.glob("*-ubyte")):
        data = gzip.compress(path.read_bytes(), mtime=0)
        (raw / f"{path.name}.gz").write_bytes(data)
        md5s[f"{path.name}.gz"] = hashlib.md5(data).hexdigest()
    return md5s


def test_mnist_with_other_contents_is_refused_when_verified(tmp_path):
    _make_mnist(tmp_path, np.random.default_rng(0))  # right shapes, other contents
    raw = tmp_path / "MNIST" / "raw"
    found = _gzip_idx(raw)["train-images-idx3-ubyte.gz"]
    with pytest.raises(DatasetIntegrityError) as info:
        load_dataset("mnist", root=tmp_path, verify_checksums=True)
    message = str(info.value)
    expected = dict(MNIST.resources)["train-images-idx3-ubyte.gz"]
    assert str(raw / "train-images-idx3-ubyte.gz") in message
    assert expected in message and found in message
    assert f"python -m reproduce data fetch mnist --root {tmp_path}" in message


def test_mnist_idx_files_without_their_archive_cannot_be_verified(tmp_path):
    _make_mnist(tmp_path, np.random.default_rng(0))
    with pytest.raises(DatasetIntegrityError) as info:
        load_dataset("mnist", root=tmp_path)  # the default verifies
    message = str(info.value)
    assert str(tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte.gz") in message
    assert dict(MNIST.resources)["train-images-idx3-ubyte.gz"] in message
    assert "python -m reproduce data fetch mnist" in message and "verify_checksums=False" in message


def test_mnist_idx_file_that_is_not_its_verified_archive_is_refused(tmp_path, monkeypatch):
    _make_mnist(tmp_path, np.random.default_rng(0))
    raw = tmp_path / "MNIST" / "raw"
    md5s = _gzip_idx(raw)
    monkeypatch.setattr(MNIST, "resources", [(f, md5s[f]) for f, _ in MNIST.resources])
    assert len(load_dataset("mnist", root=tmp_path).train) == 6  # archives verify, idx files match them
    target = raw / "t10k-labels-idx1-ubyte"
    expected = hashlib.md5(target.read_bytes()).hexdigest()
    target.write_bytes(target.read_bytes()[:-1] + b"\x07")
    with pytest.raises(DatasetIntegrityError) as info:
        load_dataset("mnist", root=tmp_path)
    message = str(info.value)
    assert str(target) in message and expected in message
    assert hashlib.md5(target.read_bytes()).hexdigest() in message
    assert "python -m reproduce data fetch mnist" in message


def test_fashion_mnist_from_idx_files_verified(tmp_path, monkeypatch):
    written = _make_mnist(tmp_path, np.random.default_rng(1), folder="FashionMNIST")
    md5s = _gzip_idx(tmp_path / "FashionMNIST" / "raw")
    monkeypatch.setattr(FashionMNIST, "resources", [(f, md5s[f]) for f, _ in FashionMNIST.resources])
    data = load_dataset("fashion-mnist", root=tmp_path)  # verified against the (patched) published MD5s
    assert (data.name, data.num_classes, data.in_channels, data.image_size) == ("fashion-mnist", 10, 1, 28)
    assert data.identity["name"] == "fashion-mnist"
    assert len(data.train) == len(data.train_eval) == 6 and len(data.test) == 4
    for view, prefix in ((data.train_eval, "train"), (data.test, "t10k")):
        images, labels = written[prefix]
        for i, (x, y) in enumerate(_items(view)):
            assert y == labels[i]  # as MNIST: only scaled to [0, 1], no standardisation
            assert torch.allclose(x[0], torch.from_numpy(images[i] / 255.0).float(), atol=1e-6)
    torch.manual_seed(0)
    assert data.train[0][0].shape == (1, 28, 28) and not torch.allclose(data.train[0][0], data.train_eval[0][0])
    assert load_dataset("fashion-mnist", root=tmp_path, flat=True).test[0][0].shape == (784,)
    assert dataset_shape("fashion-mnist") == (10, 1, 28) and dataset_train_size("fashion-mnist") == 60_000
    # not found: names the folder and the command that gets it
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("fashion-mnist", root=tmp_path / "empty")
    assert str(tmp_path / "empty" / "FashionMNIST" / "raw") in str(info.value)
    assert f"python -m reproduce data fetch fashion-mnist --root {tmp_path / 'empty'}" in str(info.value)


def test_fashion_mnist_files_laid_out_as_mnist_are_refused(tmp_path, monkeypatch):
    _make_mnist(tmp_path, np.random.default_rng(1), folder="MNIST")
    md5s = _gzip_idx(tmp_path / "MNIST" / "raw")
    published = set(dict(FashionMNIST.resources).values())
    assert not published & set(dict(MNIST.resources).values())  # the two datasets' MD5s differ, file by file
    # these files are Fashion-MNIST's (they have its published MD5s), placed where MNIST is read
    monkeypatch.setattr(FashionMNIST, "resources", [(f, md5s[f]) for f, _ in FashionMNIST.resources])
    with pytest.raises(DatasetIntegrityError) as info:
        load_dataset("mnist", root=tmp_path)
    message = str(info.value)
    assert "MNIST/raw/train-images-idx3-ubyte.gz" in message and md5s["train-images-idx3-ubyte.gz"] in message
    assert dict(MNIST.resources)["train-images-idx3-ubyte.gz"] in message


def test_torchvision_error_is_reraised_with_the_path(tmp_path):
    for split in ("train", "val"):  # the folders exist but hold no class folders
        (tmp_path / "imagenette2-160" / split).mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("imagenette", root=tmp_path)
    assert str(tmp_path / "imagenette2-160") in str(info.value)


def test_unknown_dataset_lists_choices():
    with pytest.raises(ValueError) as info:
        load_dataset("imagenet")
    assert "'imagenet'" in str(info.value)
    assert all(name in str(info.value) for name in DATASETS)


def test_default_root(monkeypatch, tmp_path):
    monkeypatch.setenv("REPRODUCE_DATA", str(tmp_path / "explicit"))
    assert default_root() == tmp_path / "explicit"
    monkeypatch.delenv("REPRODUCE_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert default_root() == tmp_path / "cache" / "reproduce" / "data"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_root() == tmp_path / "home" / ".cache" / "reproduce" / "data"


def test_the_studies_measure_unaugmented_batches_and_auto_tune_augmented_ones():
    """Released: evaluate.py and lesion.py measure a fresh *unaugmented* training batch; only
    auto-tune's checks see augmented ones. Planted augmentation: each clean image is the constant
    of its index, so an unaugmented measurement holds whole numbers only."""
    from types import SimpleNamespace

    from reproduce.config.scales import get_scale
    from reproduce.experiments import depth_study, fnn_map, lesion
    from reproduce.metric.bundles import bundle_callback
    from reproduce.training.loop import TrainConfig

    n = 40
    images = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 2, 2).clone()
    clean = TensorDataset(images, torch.arange(n) % 4)
    data = DataBundle("planted", _PlantedAugmentation(clean), clean, clean, 4, 1, 2)
    spec = SimpleNamespace(train=TrainConfig(epochs=1))
    x, _ = bundle_callback(data, spec, sample_size=16, seed=3, augment=False).samples(5)
    assert torch.equal(x, x.round())
    assert torch.equal(x, measurement_samples(data, 16, seed=3, draw=5, augment=False)[0])
    xa, _ = bundle_callback(data, spec, sample_size=16, seed=3).samples(5)  # rounds 1-3: augmented
    assert not torch.equal(xa, xa.round())
    # what the studies declare
    smoke = get_scale("smoke")
    declared = [depth_study.conv_spec(smoke, "plain", 4, seed=0), fnn_map.cell_spec(smoke, 4, 1, seed=0),
                lesion.run_specs(smoke, seeds=[0])[0]]
    for s in declared:
        [hook] = [h for h in s.callbacks if h.target == "reproduce.bundles:bundle_callback"]
        assert dict(hook.kwargs)["augment"] is False, s.label
