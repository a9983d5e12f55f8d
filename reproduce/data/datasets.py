"""Datasets of the paper, as PyTorch datasets with the paper's preprocessing.

``load_dataset(name)`` returns a :class:`DataBundle` with three views of one dataset:
``train`` (with the paper's augmentation), ``train_eval`` (the same training images without
augmentation, for bundle measurements and training accuracy) and ``test``.

Datasets
--------
``digits``
    scikit-learn's handwritten digits (bundled with scikit-learn, never downloaded): 1,797
    images of 8x8 px, pixel values 0..16 divided by 16 (float32 in [0, 1]). A stratified
    80/20 train/test split that depends on ``seed`` (1,437 train / 360 test images). The images
    keep their 8 px size (no resizing): the convolutional nets of this project work on 8 px
    inputs (their stem and stages reduce 8 -> 4 -> 2 -> 1 px, and the max-pool is only used for
    inputs wider than 50 px). **No augmentation**: the paper's resize-and-crop by 4 px would cut
    away half of an 8 px image, so ``train`` and ``train_eval`` are the same object. No
    standardisation either (the digits are treated like MNIST). The views are
    ``torch.utils.data.TensorDataset`` objects, so a training loop can read ``.tensors``.
``mnist``, ``fashion-mnist``, ``cifar10``, ``svhn`` (cropped digits), ``imagenette``
    read through ``torchvision.datasets`` (MNIST, FashionMNIST, CIFAR10, SVHN, Imagenette).
    Fashion-MNIST (10 classes of clothing, 28x28 grey, 60,000 train + 10,000 test images, in
    MNIST's idx format) gets exactly MNIST's preprocessing. Imagenette's
    ``val`` split is the test set. Each view is a :class:`TransformedDataset` around one shared
    torchvision dataset.

Preprocessing (choices taken from the authors' released TensorFlow code)
-----------------------------------------------------------------------
Pixels are scaled to [0, 1] (``tf.image.convert_image_dtype``). Then, for training images with
``augment=True``, in this order:

1. **resize-with-pad, then random crop**: the paper's "pad-and-random-crop" is, in the released
   code, ``tf.image.resize_with_pad(x, s + p, s + p)`` followed by ``tf.image.random_crop`` back
   to ``s`` px, with ``p`` = 4 (MNIST, SVHN), 6 (CIFAR-10), 10 (Imagenette).
   ``resize_with_pad`` *scales* the image (keeping its aspect ratio) until it fits the
   ``(s + p)``-px square and fills the rest with zeros, so a square image is enlarged bilinearly
   to ``s + p`` px (a small random zoom-and-shift) rather than framed by zeros. This module does
   the same (:class:`ResizeWithPad`, then ``RandomCrop``). ``p`` is the growth of the whole side,
   not a margin on each side.
2. random horizontal flip (CIFAR-10 and Imagenette only);
3. per-image standardisation (all but MNIST), :class:`PerImageStandardize`;
4. random brightness: one additive delta per image, uniform in [-0.25, 0.25), as
   ``tf.image.random_brightness`` does, and **no clipping** afterwards (TensorFlow does not clip
   either), :class:`RandomBrightness`. Because it comes after the standardisation, it is a
   real shift of the standardised image and is not undone by it. MNIST gets it too (its
   augmented training images can therefore leave [0, 1]).

Test images and ``train_eval`` images get no augmentation, but the deterministic steps: the
standardisation (all but MNIST) and, for Imagenette, ``ResizeWithPad(128)`` (letter-boxing the
photo into 128x128 px with black bars, as the released code does for its test set).

Small deviations from the released code, all deliberate:

* the order of steps is the same for every dataset; the released CIFAR-10 code standardises
  *before* the resize-and-crop, so its crops are not exactly zero-mean. Here every training
  image is standardised after cropping.
* resizing is bilinear with antialiasing (``F.interpolate(..., antialias=True)``);
  TensorFlow's default has no antialiasing, which only matters when Imagenette is shrunk.
* Imagenette is read from the smallest of torchvision's three variants that is present
  (``160px``, then ``320px``, then ``full``; ``download=True`` fetches ``160px``). The released
  code used the full-size images; since every image is letter-boxed down to 128 px, the
  variants differ only in the resampling of the source.

Checksums
---------
torchvision checks the MD5 checksums of the CIFAR-10 and SVHN files, and only the presence of
the MNIST and Imagenette files. ``load_dataset(..., verify_checksums=True)`` (the default)
keeps the CIFAR-10/SVHN checks and verifies MNIST and Fashion-MNIST too: torchvision publishes
the MD5 of each ``.gz`` (``MNIST.resources``, ``FashionMNIST.resources``), so each ``.gz`` must lie
beside its idx file in ``MNIST/raw/`` (``FashionMNIST/raw/``; ``python -m reproduce data fetch``
and torchvision's download keep them there), have its published MD5, and uncompress to the idx
file. A file that is missing its archive or has the wrong checksum raises
:class:`DatasetIntegrityError` naming it, the expected and the found MD5 and the command that
repairs it. Imagenette is not verified (no per-file checksums). ``verify_checksums=False`` only
checks that the files are there: that is for files you wrote yourself in the same format (the
tests' miniature datasets); a file that is not in the expected format then fails when it is read.
Such files are not known to be the published ones, so the data identity of an unverified load of
MNIST, Fashion-MNIST, CIFAR-10 or SVHN holds ``content``, a fingerprint of the files it read
(:func:`reproduce.data.checksums.content_fingerprint`): their runs never share a run folder with
the published data's, whose identity (and folder names) stay as before. Every MD5 is computed once
per file version and cached beside the files (:mod:`reproduce.data.checksums`), so a load of
verified data reads no file twice.

Missing data
------------
With ``download=False`` (the default) nothing is downloaded; missing files raise
:class:`DatasetNotFoundError` (a ``FileNotFoundError``) whose message names the exact path that
was searched and how to get the data. :func:`default_root` is the folder used when ``root`` is
not given.

Layout under ``root``: ``MNIST/raw/`` and ``FashionMNIST/raw/`` (the four uncompressed idx files,
each beside its ``.gz``), ``cifar-10-batches-py/``,
``SVHN/train_32x32.mat`` and ``SVHN/test_32x32.mat``, ``imagenette2-160/{train,val}/<wnid>/``.

``train_limit``
---------------
keeps the first ``train_limit`` samples of a seeded class-balanced permutation of the training
set (classes take turns, each class in a seeded random order), for ``train`` and ``train_eval``
alike. Used by small presets.
"""

from __future__ import annotations

import math
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, TensorDataset
from torchvision.datasets import CIFAR10, MNIST, SVHN, FashionMNIST, Imagenette
from torchvision.transforms import v2

from reproduce.config.seeds import derive_seed
from reproduce.data.checksums import cached_md5, content_fingerprint, file_md5, gunzipped_md5  # noqa: F401

__all__ = [
    "DATASETS",
    "DataBundle",
    "DatasetIntegrityError",
    "DatasetNotFoundError",
    "PerImageStandardize",
    "RandomBrightness",
    "ResizeWithPad",
    "TransformedDataset",
    "balanced_order",
    "default_root",
    "load_dataset",
    "measurement_samples",
    "MEASUREMENT_SAMPLES",
    "dataset_tensors",
    "dataset_shape",
    "dataset_train_size",
    "IMAGENETTE_SIZES",
    "IDX_DATASETS",
]

DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10", "svhn", "imagenette")

#: the datasets in MNIST's idx format, and the torchvision class that reads each: its ``resources``
#: hold the published MD5 of each ``.gz``, its ``mirrors`` the sources (read by :mod:`.fetch` too),
#: and its name is the folder under ``root`` (``MNIST/raw``, ``FashionMNIST/raw``)
IDX_DATASETS: MappingProxyType = MappingProxyType({"mnist": MNIST, "fashion-mnist": FashionMNIST})

BRIGHTNESS_MAX_DELTA = 0.25
IMAGENETTE_SIZES = ("160px", "320px", "full")


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not where they were looked for (the message says where and how to get them)."""


class DatasetIntegrityError(RuntimeError):
    """A dataset file is present but its checksum differs from the published one."""


@dataclass
class DataBundle:
    """One dataset in three views; see the module docstring for the preprocessing.

    ``train`` carries the paper's augmentation (when ``augment=True``), ``train_eval`` holds the
    same training images without it, ``test`` has no augmentation. Samples are
    ``(x, y)`` with ``x`` float32 ``[in_channels, image_size, image_size]`` (or the flat vector of
    ``in_channels * image_size**2`` values for ``flat=True``) and ``y`` an int class index.
    """

    name: str
    train: Dataset
    train_eval: Dataset
    test: Dataset
    num_classes: int
    in_channels: int
    image_size: int
    #: what makes these samples what they are (name, seed, train_limit, flat, augment); the
    #: training loop stores it in a run's checkpoint and refuses to resume on other data
    identity: dict = field(default_factory=dict)


@dataclass(frozen=True)
class _Spec:
    num_classes: int
    in_channels: int
    image_size: int
    grow: int  # resize-with-pad growth of the side before the random crop (0: no crop)
    flip: bool
    standardize: bool
    #: samples of the published training split (torchvision's MNIST, CIFAR10, SVHN(split="train"),
    #: Imagenette(split="train") = imagenette2's train folder); None for digits, whose split is
    #: made here (:func:`dataset_train_size` measures it)
    train_size: int | None = None


_SPECS = MappingProxyType(
    {
        "digits": _Spec(10, 1, 8, grow=0, flip=False, standardize=False),
        "mnist": _Spec(10, 1, 28, grow=4, flip=False, standardize=False, train_size=60_000),
        "fashion-mnist": _Spec(10, 1, 28, grow=4, flip=False, standardize=False, train_size=60_000),
        "cifar10": _Spec(10, 3, 32, grow=6, flip=True, standardize=True, train_size=50_000),
        "svhn": _Spec(10, 3, 32, grow=4, flip=False, standardize=True, train_size=73_257),
        "imagenette": _Spec(10, 3, 128, grow=10, flip=True, standardize=True, train_size=9_469),
    }
)


def dataset_train_size(name: str, seed: int = 0) -> int:
    """Samples in the training split of dataset ``name`` (without ``train_limit``), without reading
    its files: the published split's size; digits' split is made here and measured."""
    if name not in _SPECS:
        raise ValueError(f"unknown dataset {name!r}; valid choices: {', '.join(DATASETS)}")
    size = _SPECS[name].train_size
    return len(load_dataset(name, seed=seed).train) if size is None else size


def dataset_shape(name: str) -> tuple[int, int, int]:
    """``(num_classes, in_channels, image_size)`` of a dataset, without loading it."""
    if name not in _SPECS:
        raise ValueError(f"unknown dataset {name!r}; valid choices: {', '.join(DATASETS)}")
    spec = _SPECS[name]
    return spec.num_classes, spec.in_channels, spec.image_size


def default_root() -> Path:
    """Folder for the downloaded datasets.

    ``$REPRODUCE_DATA`` when set (and not empty), else ``$XDG_CACHE_HOME/reproduce/data``, else
    ``~/.cache/reproduce/data``.
    """
    explicit = os.environ.get("REPRODUCE_DATA")
    if explicit:
        return Path(explicit).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME")
    base = Path(cache).expanduser() if cache else Path.home() / ".cache"
    return base / "reproduce" / "data"


# --------------------------------------------------------------------------------------------
# transforms (tensor [C, H, W] float32 -> tensor)
# --------------------------------------------------------------------------------------------


class PerImageStandardize:
    """``tf.image.per_image_standardization``: ``(x - mean) / max(std, 1 / sqrt(numel))``.

    Mean and (population) standard deviation are taken over all pixels and channels of the one
    image; the floor on the denominator keeps uniform images finite.
    """

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(x, dtype=torch.float32).as_subclass(torch.Tensor)
        mean = x.mean()
        std = x.std(correction=0)
        floor = 1.0 / math.sqrt(x.numel())
        return (x - mean) / torch.clamp(std, min=floor)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class RandomBrightness:
    """``tf.image.random_brightness``: add one delta, uniform in ``[-max_delta, max_delta)``.

    The same delta is added to every pixel and channel of the image; the result is not clipped.
    The delta is drawn from torch's global generator (as torchvision's random transforms are).
    """

    def __init__(self, max_delta: float = BRIGHTNESS_MAX_DELTA) -> None:
        if not max_delta >= 0:
            raise ValueError(f"max_delta must be >= 0, got {max_delta!r}")
        self.max_delta = float(max_delta)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        delta = (torch.rand(()) * 2.0 - 1.0) * self.max_delta
        return x.as_subclass(torch.Tensor) + delta

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_delta={self.max_delta})"


class ResizeWithPad:
    """``tf.image.resize_with_pad(x, size, size)`` for a ``[C, H, W]`` float tensor.

    The image is scaled (bilinear, antialiased, aspect ratio kept) so that its longer side is
    ``size`` px, its shorter side becomes ``floor(short * size / long)`` px, and it is placed in a
    ``size x size`` canvas of zeros at offset ``floor((size - short * size / long) / 2)``, as
    TensorFlow does. An image that already is ``size x size`` is returned unchanged.
    """

    def __init__(self, size: int) -> None:
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise ValueError(f"size must be a positive int, got {size!r}")
        self.size = size

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = x.as_subclass(torch.Tensor)
        if x.dtype != torch.float32:
            raise ValueError(f"ResizeWithPad expects a float32 image, got dtype {x.dtype}")
        channels, height, width = x.shape
        size = self.size
        if height == size and width == size:
            return x
        longest = max(height, width)
        # integer arithmetic: the longer side becomes exactly `size`
        new_h = height * size // longest
        new_w = width * size // longest
        top = (size * longest - height * size) // (2 * longest)
        left = (size * longest - width * size) // (2 * longest)
        resized = F.interpolate(
            x.unsqueeze(0), size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True
        ).squeeze(0)
        out = x.new_zeros((channels, size, size))
        out[:, top : top + new_h, left : left + new_w] = resized
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size})"


class _PlainTensor:
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.as_tensor(x).as_subclass(torch.Tensor)

    def __repr__(self) -> str:
        return "PlainTensor()"


class _Flatten:
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1)

    def __repr__(self) -> str:
        return "Flatten()"


def _build_transform(spec: _Spec, *, augment: bool, flat: bool) -> Callable[[Any], torch.Tensor]:
    """PIL image -> float32 tensor, the pipeline of the module docstring."""
    steps: list[Callable] = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), _PlainTensor()]
    if augment:
        steps += [ResizeWithPad(spec.image_size + spec.grow), v2.RandomCrop(spec.image_size)]
        if spec.flip:
            steps.append(v2.RandomHorizontalFlip(p=0.5))
    else:
        steps.append(ResizeWithPad(spec.image_size))
    if spec.standardize:
        steps.append(PerImageStandardize())
    if augment:
        steps.append(RandomBrightness(BRIGHTNESS_MAX_DELTA))
    steps.append(_PlainTensor())
    if flat:
        steps.append(_Flatten())
    return v2.Compose(steps)


class TransformedDataset(Dataset):
    """A view of ``base`` (yielding ``(image, label)``) with ``transform`` applied to the image.

    ``indices`` (optional) selects and orders the samples of ``base``. Labels are returned as
    ``int``. Several views can share one ``base``.
    """

    def __init__(
        self, base: Dataset, transform: Callable[[Any], torch.Tensor], indices: Sequence[int] | None = None
    ) -> None:
        self.base = base
        self.transform = transform
        self.indices = None if indices is None else [int(i) for i in indices]

    def __len__(self) -> int:
        return len(self.base) if self.indices is None else len(self.indices)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if self.indices is not None:
            index = self.indices[index]
        image, label = self.base[index]
        return self.transform(image), int(label)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={len(self)}, base={type(self.base).__name__}, transform={self.transform!r})"


# --------------------------------------------------------------------------------------------
# sample selection
# --------------------------------------------------------------------------------------------


def balanced_order(labels: Sequence[int] | np.ndarray | torch.Tensor, seed: int) -> np.ndarray:
    """A seeded permutation of ``range(len(labels))`` in which the classes take turns.

    Within each class the order is random (seeded); the permutation lists every class's first
    sample, then every class's second sample, and so on (the classes of one round in a seeded
    random order). Any prefix therefore holds each class ``k // C`` or ``k // C + 1`` times, as
    long as no class runs out of samples.
    """
    y = np.asarray(labels).reshape(-1)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(y))
    rank = np.empty(len(y), dtype=np.int64)
    seen: dict[Any, int] = {}
    for position in perm:
        label = y[position].item()
        rank[position] = seen.get(label, 0)
        seen[label] = rank[position] + 1
    # sort by round, ties in the order of the random permutation
    key = np.empty(len(y), dtype=np.int64)
    key[perm] = np.arange(len(y))
    return np.lexsort((key, rank))


def _check_train_limit(train_limit: int | None, available: int) -> None:
    if train_limit is None:
        return
    if not isinstance(train_limit, (int, np.integer)) or isinstance(train_limit, bool):
        raise ValueError(f"train_limit must be None or a positive int, got {train_limit!r}")
    if not 0 < train_limit <= available:
        raise ValueError(
            f"train_limit must be None or an int in [1, {available}] (the training set size), got {train_limit!r}"
        )


#: how a run's measurements pick their samples (``docs/method.md#measurement``): a fresh seeded
#: training batch at every measurement (the released behaviour), or one fixed set for the whole run
MEASUREMENT_SAMPLES = ("fresh", "fixed")


def measurement_samples(data: DataBundle, n: int, seed: int, *, draw: int | None = None, augment: bool = True
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples to measure bundles on (``docs/method.md#measurement``), ``x`` float32 ``[n, ...]`` and ``y`` int64 ``[n]``.

    * ``draw=None``: the **fixed set** of a run: the first ``n`` indices of
      ``torch.randperm(len(data.train_eval))`` drawn with a generator seeded with ``seed``, without
      augmentation (the same ``seed`` gives the same samples, a larger ``n`` extends a smaller one).
    * ``draw=k`` (an int >= 0, e.g. the epoch): a **fresh training batch**, as the released code
      measures: ``n`` samples of the training set shuffled with a generator seeded from
      ``(seed, k)``, read through ``data.train``, i.e. *with* the training augmentation where the
      dataset has one (digits has none); the augmentation's random draws come from the same seed,
      inside ``torch.random.fork_rng`` so the training RNG is untouched. Different ``k`` give
      different batches; the same ``(seed, k)`` always the same one. ``augment=False`` gives the
      same samples read through ``data.train_eval``, without augmentation: what the released code
      measures outside auto-tune (its evaluate.py and lesion.py); its auto-tune checks see
      augmented batches (the default here, which the auto-tune search uses).

    ``n`` must be in ``[1, len(data.train_eval)]``.
    """
    source = data.train_eval
    available = len(source)
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or not 0 < n <= available:
        raise ValueError(f"n must be an int in [1, {available}] (the training set size of {data.name!r}), got {n!r}")
    if draw is None:
        generator = torch.Generator().manual_seed(int(seed))
        return dataset_tensors(source, torch.randperm(available, generator=generator)[: int(n)])
    if isinstance(draw, bool) or not isinstance(draw, (int, np.integer)) or draw < 0:
        raise ValueError(f"draw must be None (the fixed set) or an int >= 0 (a fresh batch), got {draw!r}")
    if not isinstance(augment, bool):
        raise ValueError(f"augment must be True or False, got {augment!r}")
    mixed = derive_seed(seed, draw, "measurement")
    generator = torch.Generator().manual_seed(mixed)
    index = torch.randperm(len(data.train), generator=generator)[: int(n)]
    if not augment:
        return dataset_tensors(source, index)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(mixed)
        return dataset_tensors(data.train, index)


def dataset_tensors(ds: Dataset, index: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Samples ``index`` (default: all) of ``ds`` as ``(x float32 [n, ...], y int64 [n])``.

    A TensorDataset is sliced directly; any other dataset is read item by item (its transform
    applies). An empty selection raises ValueError.
    """
    count = len(ds) if index is None else len(index)
    if count == 0:
        raise ValueError("no samples to read: the dataset (or the selection) is empty")
    if isinstance(ds, TensorDataset):
        x, y = ds.tensors[0], ds.tensors[1]
        if index is not None:
            x, y = x[index], y[index]
    else:
        positions = range(len(ds)) if index is None else (int(i) for i in index)
        items = [ds[i] for i in positions]
        x = torch.stack([torch.as_tensor(item[0]) for item in items])
        y = torch.tensor([int(item[1]) for item in items])
    return x.to(torch.float32).contiguous(), y.to(torch.int64)


# --------------------------------------------------------------------------------------------
# loaders
# --------------------------------------------------------------------------------------------


def load_dataset(
    name: str,
    *,
    root: str | Path | None = None,
    download: bool = False,
    seed: int = 0,
    flat: bool = False,
    augment: bool = True,
    train_limit: int | None = None,
    verify_checksums: bool = True,
) -> DataBundle:
    """Load one of :data:`DATASETS` with the preprocessing of the module docstring.

    ``root`` defaults to :func:`default_root` (unused for ``digits``). ``seed`` fixes the
    digits train/test split and the ``train_limit`` subset. ``flat=True`` yields flat vectors
    (for fully connected nets). ``augment=False`` gives ``train`` the deterministic test-time
    pipeline. ``verify_checksums`` applies to all but digits and Imagenette (see the module docstring).
    Raises ``ValueError`` for an unknown name, :class:`DatasetNotFoundError` for missing files,
    :class:`DatasetIntegrityError` for a file with a wrong checksum.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid choices: {', '.join(DATASETS)}")
    identity = {"name": name, "seed": int(seed), "train_limit": train_limit, "flat": bool(flat),
                "augment": bool(augment) and name != "digits"}
    if name == "digits":
        bundle = _load_digits(seed=seed, flat=flat, train_limit=train_limit)
    else:
        try:
            bundle = _load_torchvision(name, root=root, download=download, seed=seed, flat=flat, augment=augment,
                                       train_limit=train_limit, verify_checksums=verify_checksums)
        except DatasetNotFoundError as error:
            where = "" if root is None else f" --root {root}"
            raise DatasetNotFoundError(f"{error}\nThe one command that gets it (resumable, verified): "
                                       f"python -m reproduce data fetch {name}{where}") from error
    if not verify_checksums and name in _FINGERPRINTED:
        # files nobody verified may be anything in the right format: their contents name the data
        identity["content"] = content_fingerprint(_data_files(name, _root_path(root)))
    bundle.identity = identity
    return bundle


#: the datasets whose unverified files get a content fingerprint in the data identity (Imagenette's
#: thousands of images are neither verified nor fingerprinted; digits ships inside scikit-learn)
_FINGERPRINTED = ("mnist", "fashion-mnist", "cifar10", "svhn")


def _root_path(root: str | Path | None) -> Path:
    return Path(root).expanduser() if root is not None else default_root()


def _data_files(name: str, root: Path) -> list[Path]:
    """The files the loader of dataset ``name`` (one of :data:`_FINGERPRINTED`) reads under ``root``."""
    if name in IDX_DATASETS:
        cls = IDX_DATASETS[name]
        return [root / cls.__name__ / "raw" / os.path.splitext(f)[0] for f, _ in cls.resources]
    if name == "cifar10":
        folder = root / CIFAR10.base_folder
        return [folder / f for f, _ in CIFAR10.train_list + CIFAR10.test_list] + [folder / CIFAR10.meta["filename"]]
    return [root / "SVHN" / SVHN.split_list[s][1] for s in ("train", "test")]


def _load_torchvision(name: str, *, root: str | Path | None, download: bool, seed: int, flat: bool,
                      augment: bool, train_limit: int | None, verify_checksums: bool) -> DataBundle:
    spec = _SPECS[name]

    root_path = _root_path(root)
    if download and verify_checksums:
        # the project's fetch: resumable, verified, and it downloads again what does not verify
        # (torchvision's download skips files that are there, right or wrong)
        from reproduce.data.fetch import fetch

        fetch([name], root_path)
        download = False
    where = "" if root is None else f" --root {root}"
    if name in IDX_DATASETS:
        train_base, test_base = _idx(name, root_path, download, verify_checksums, where)
        labels = train_base.targets
    elif name == "cifar10":
        train_base, test_base = _cifar10(root_path, download, verify_checksums)
        labels = train_base.targets
    elif name == "svhn":
        train_base, test_base = _svhn(root_path, download, verify_checksums)
        labels = train_base.labels
    else:
        train_base, test_base = _imagenette(root_path, download)
        labels = [label for _, label in train_base._samples]  # torchvision 0.29 keeps (path, label) here

    _check_train_limit(train_limit, len(train_base))
    indices = None if train_limit is None else balanced_order(labels, seed)[:train_limit]
    eval_transform = _build_transform(spec, augment=False, flat=flat)
    train_transform = _build_transform(spec, augment=True, flat=flat) if augment else eval_transform
    return DataBundle(
        name=name,
        train=TransformedDataset(train_base, train_transform, indices),
        train_eval=TransformedDataset(train_base, eval_transform, indices),
        test=TransformedDataset(test_base, eval_transform),
        num_classes=spec.num_classes,
        in_channels=spec.in_channels,
        image_size=spec.image_size,
    )


def _load_digits(*, seed: int, flat: bool, train_limit: int | None) -> DataBundle:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images.astype(np.float32) / np.float32(16.0)).reshape(-1, 1, 8, 8)
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, stratify=y, random_state=seed)
    _check_train_limit(train_limit, len(y_train))
    if train_limit is not None:
        keep = balanced_order(y_train, seed)[:train_limit]
        x_train, y_train = x_train[keep], y_train[keep]
    if flat:
        x_train, x_test = x_train.reshape(len(x_train), -1), x_test.reshape(len(x_test), -1)
    train = TensorDataset(torch.from_numpy(np.ascontiguousarray(x_train)), torch.from_numpy(y_train))
    test = TensorDataset(torch.from_numpy(np.ascontiguousarray(x_test)), torch.from_numpy(y_test))
    spec = _SPECS["digits"]
    return DataBundle(
        name="digits",
        train=train,
        train_eval=train,
        test=test,
        num_classes=spec.num_classes,
        in_channels=spec.in_channels,
        image_size=spec.image_size,
    )


def _construct(name: str, searched: Path, how: str, factory: Callable[[], Any]) -> Any:
    """Run a torchvision constructor, turning its 'not found' RuntimeError into DatasetNotFoundError."""
    try:
        return factory()
    except (RuntimeError, FileNotFoundError) as error:
        if isinstance(error, (DatasetNotFoundError, DatasetIntegrityError)):
            raise
        raise DatasetNotFoundError(
            f"{name} data could not be loaded from {searched}: {error}. To get it, pass download=True "
            f"(needs internet), or {how}"
        ) from error


def _idx(name: str, root: Path, download: bool, verify: bool, where: str) -> tuple[Dataset, Dataset]:
    """An idx-format dataset (:data:`IDX_DATASETS`): mnist (``MNIST/raw``), fashion-mnist (``FashionMNIST/raw``)."""
    cls = IDX_DATASETS[name]
    raw = root / cls.__name__ / "raw"
    names = [os.path.splitext(filename)[0] for filename, _ in cls.resources]
    how = (
        f"download {', '.join(f for f, _ in cls.resources)} from {cls.mirrors[0]} into {raw}, "
        f"and uncompress them there (gunzip -k: the .gz stay, their MD5s verify the files) to {', '.join(names)}"
    )
    missing = [raw / n for n in names if not (raw / n).is_file()]
    if missing and not download:
        raise DatasetNotFoundError(
            f"{name} data not found: looked for {', '.join(str(p) for p in missing)} (folder {raw}). To get it, "
            f"call load_dataset({name!r}, root={str(root)!r}, download=True) (needs internet), or {how}"
        )
    if verify and not missing:
        _verify_idx(name, raw, cls.resources, where)
    train = _construct(name, raw, how, lambda: cls(str(root), train=True, download=download))
    test = _construct(name, raw, how, lambda: cls(str(root), train=False, download=download))
    return train, test


def _verify_idx(name: str, raw: Path, resources: Sequence[tuple[str, str]], where: str) -> None:
    """Check the idx files of ``raw`` against the published MD5s of their ``.gz`` (``resources``).

    torchvision publishes the MD5 of each ``.gz`` only, so the verified archive must lie beside its
    idx file (``data fetch`` keeps it there) and the idx file must be what it uncompresses to.
    """
    repair = (f"Repair it with: python -m reproduce data fetch {name}{where} (it downloads what does not verify), "
              f"or pass verify_checksums=False if you wrote these files yourself in the same format.")
    for filename, md5 in resources:
        archive = raw / filename
        target = raw / filename.removesuffix(".gz")
        found = cached_md5(archive)
        if found is None:
            raise DatasetIntegrityError(
                f"{name} file {target} cannot be verified: the published MD5 {md5} is that of {archive}, which is "
                f"missing. {repair}"
            )
        if found != md5:
            raise DatasetIntegrityError(
                f"{name} file {archive} has MD5 {found}, expected the published {md5}: the file is corrupted or "
                f"not the original. {repair}"
            )
        expected, actual = cached_md5(archive, "gunzipped-md5"), cached_md5(target)
        if expected != actual:
            raise DatasetIntegrityError(
                f"{name} file {target} has MD5 {actual}, expected {expected} (what {archive.name}, which has the "
                f"published MD5, uncompresses to): the file is corrupted or not the original. {repair}"
            )


def _check_files(
    name: str, root: Path, folder: Path, files: Sequence[tuple[str, str]], verify: bool, how: str
) -> None:
    missing = [folder / f for f, _ in files if not (folder / f).is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"{name} data not found: looked for {', '.join(str(p) for p in missing)} (folder {folder}). To get it, "
            f"call load_dataset({name!r}, root={str(root)!r}, download=True) (needs internet), or {how}"
        )
    if verify:
        for filename, md5 in files:
            if cached_md5(folder / filename) != md5:
                raise DatasetIntegrityError(
                    f"{name} file {folder / filename} does not have the published MD5 checksum {md5}: the file is "
                    f"corrupted or not the original. Delete it and download again (download=True), or pass "
                    f"verify_checksums=False if you wrote it yourself in the same format."
                )


def _verifies(folder: Path, files: Sequence[tuple[str, str]], verify: bool) -> bool:
    """Every file is there and, with ``verify``, has its MD5 (cached: :func:`reproduce.data.checksums.cached_md5`)."""
    return all((folder / f).is_file() and (not verify or cached_md5(folder / f) == md5) for f, md5 in files)


class _CIFAR10(CIFAR10):
    """torchvision's CIFAR10, its MD5 checks cached; with ``verify=False`` they become presence checks."""

    def __init__(self, *args: Any, verify: bool, **kwargs: Any) -> None:
        self._verify = verify  # read by the checks that CIFAR10.__init__ calls
        super().__init__(*args, **kwargs)

    def _check_integrity(self) -> bool:
        return _verifies(Path(self.root) / self.base_folder, self.train_list + self.test_list, self._verify)

    def _load_meta(self) -> None:
        if not _verifies(Path(self.root) / self.base_folder, [(self.meta["filename"], self.meta["md5"])], self._verify):
            raise RuntimeError("Dataset metadata file not found or corrupted. You can use download=True to download it")
        with open(Path(self.root) / self.base_folder / self.meta["filename"], "rb") as handle:
            self.classes = pickle.load(handle, encoding="latin1")[self.meta["key"]]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}


class _SVHN(SVHN):
    """torchvision's SVHN, its MD5 check cached; with ``verify=False`` it becomes a presence check."""

    def __init__(self, *args: Any, verify: bool, **kwargs: Any) -> None:
        self._verify = verify
        super().__init__(*args, **kwargs)

    def _check_integrity(self) -> bool:
        return _verifies(Path(self.root), [(self.filename, self.split_list[self.split][2])], self._verify)


def _cifar10(root: Path, download: bool, verify: bool) -> tuple[Dataset, Dataset]:
    folder = root / CIFAR10.base_folder
    files = [(f, md5) for f, md5 in CIFAR10.train_list + CIFAR10.test_list] + [
        (CIFAR10.meta["filename"], CIFAR10.meta["md5"])
    ]
    how = f"download {CIFAR10.url} and extract it in {root} (it holds the folder {CIFAR10.base_folder}/)"
    if not download:
        _check_files("cifar10", root, folder, files, verify, how)
    train, test = (
        _construct("cifar10", folder, how, lambda: _CIFAR10(str(root), train=flag, download=download, verify=verify))
        for flag in (True, False)
    )
    return train, test


def _svhn(root: Path, download: bool, verify: bool) -> tuple[Dataset, Dataset]:
    folder = root / "SVHN"
    files = [(SVHN.split_list[s][1], SVHN.split_list[s][2]) for s in ("train", "test")]
    how = f"download {SVHN.split_list['train'][0]} and {SVHN.split_list['test'][0]} into {folder}"
    if not download:
        _check_files("svhn", root, folder, files, verify, how)
    train, test = (
        _construct("svhn", folder, how, lambda: _SVHN(str(folder), split=split, download=download, verify=verify))
        for split in ("train", "test")
    )
    return train, test


def _imagenette(root: Path, download: bool) -> tuple[Dataset, Dataset]:
    stems = {size: Path(Imagenette._ARCHIVES[size][0]).name.removesuffix(".tgz") for size in IMAGENETTE_SIZES}
    present = [s for s in IMAGENETTE_SIZES if all((root / stems[s] / split).is_dir() for split in ("train", "val"))]
    size = present[0] if present else IMAGENETTE_SIZES[0]
    folder = root / stems[size]
    how = (
        f"download {Imagenette._ARCHIVES[size][0]} and extract it in {root} "
        f"(it holds {stems[size]}/train/<wnid>/*.JPEG and {stems[size]}/val/<wnid>/*.JPEG)"
    )
    if not present and not download:
        searched = " or ".join(str(root / stems[s]) + "/{train,val}" for s in IMAGENETTE_SIZES)
        raise DatasetNotFoundError(
            f"imagenette data not found: looked for {searched}. To get it, call "
            f"load_dataset('imagenette', root={str(root)!r}, download=True) (needs internet), or {how}"
        )
    train, test = (
        _construct("imagenette", folder, how, lambda: Imagenette(str(root), split=split, size=size, download=download))
        for split in ("train", "val")
    )
    expected = sorted(Imagenette._WNID_TO_CLASS)
    for split, dataset in (("train", train), ("val", test)):
        if list(dataset.wnids) != expected:
            raise DatasetNotFoundError(
                f"imagenette {split} split in {folder / split} has class folders {list(dataset.wnids)}, "
                f"expected the 10 folders {expected}; {how}"
            )
    return train, test
