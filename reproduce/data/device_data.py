"""Datasets held on a device, with the paper's augmentation applied to whole batches there.

The per-sample pipeline of :mod:`reproduce.data` (a PIL image through a chain of transforms, in
a ``DataLoader``) costs more than a training step of a deep net on a GPU. This module holds the
images of a :class:`~reproduce.data.DataBundle` view on a device instead -- as the raw ``uint8``
pixels where the source has them (MNIST, CIFAR-10, SVHN), int64 labels beside them -- and runs the
same steps on whole batches with tensor ops:

1. ``uint8 -> float32`` exactly as ``v2.ToDtype(torch.float32, scale=True)`` (``* (1 / 255)``);
2. ``resize_with_pad`` to the grown side (:func:`resize_with_pad_batch`, the arithmetic of
   :class:`reproduce.data.ResizeWithPad`), then a random crop back to the image size, offsets
   ``top``, ``left`` uniform in ``0..grow`` per sample (as ``v2.RandomCrop``);
3. a horizontal flip per sample with probability 1/2 (CIFAR-10, Imagenette);
4. per-image standardisation (:class:`reproduce.data.PerImageStandardize`, batched);
5. one brightness delta per sample, uniform in ``[-0.25, 0.25)``, no clipping
   (:class:`reproduce.data.RandomBrightness`).

Crop and flip are one gather (a flip is a crop read right to left), so a batch costs a fixed
handful of kernels whatever its size. The unaugmented views (``train_eval``, ``test``) get the
deterministic steps only (1, the resize to the image size -- the identity for square images --
and 4).

Fidelity: for the same image and the same draws (offsets, flip, delta) the batched result equals
the per-sample one up to the summation order of the standardisation's mean and standard
deviation (a few 1e-7); the draws have the per-sample pipeline's distribution but come from
another random stream (a generator on the device, seeded per epoch by the training loop), so a run
with ``TrainConfig(device_data=True)`` sees other augmentations than one without.
``tests/test_device_data.py`` checks both statements.

The pipeline of a view is read from the view's own transform (:meth:`BatchPipeline.of_transform`)
and a step this module does not know is refused, so a change of :mod:`reproduce.data`'s pipeline
cannot silently diverge from this one.

Sources without uniform raw pixels (Imagenette's photos have many sizes) are held as float32
after the deterministic part of their pipeline (decode, scale to [0, 1], resize-with-pad to the
grown side for the augmented view, to the image size for the others): exact, at 4 bytes per value.
``TensorDataset`` views (the embedded digits) are held as they are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, TensorDataset
from torchvision.datasets import CIFAR10, MNIST, SVHN
from torchvision.transforms import v2

from reproduce.config.seeds import derive_seed
from reproduce.data import datasets as _data
from reproduce.data.datasets import DataBundle, PerImageStandardize, RandomBrightness, ResizeWithPad, TransformedDataset

__all__ = [
    "BatchPipeline",
    "DeviceSplit",
    "device_bundle",
    "augment_batch",
    "apply_augmentation",
    "draw_augmentation",
    "resize_with_pad_batch",
    "standardize_batch",
    "raw_images",
]


@dataclass(frozen=True)
class BatchPipeline:
    """The steps a batch goes through (see the module docstring).

    ``size`` is the output side; ``grow`` the resize-with-pad growth before the random crop (with
    ``augment``); ``flip`` a horizontal flip with probability 1/2; ``brightness`` the largest
    brightness delta (0: none); ``flat`` flattens every sample.
    """

    size: int
    grow: int = 0
    augment: bool = False
    flip: bool = False
    standardize: bool = False
    brightness: float = 0.0
    flat: bool = False

    def __post_init__(self) -> None:
        if self.size < 1 or self.grow < 0 or not self.brightness >= 0:
            raise ValueError(f"need size >= 1, grow >= 0 and brightness >= 0, got {self}")
        if not self.augment and (self.grow or self.flip or self.brightness):
            raise ValueError(f"an unaugmented pipeline has no crop, flip or brightness, got {self}")

    @property
    def input_size(self) -> int:
        """The side the crop reads from: ``size + grow`` (``size`` without augmentation)."""
        return self.size + (self.grow if self.augment else 0)

    @classmethod
    def for_dataset(cls, name: str, *, augment: bool = True, flat: bool = False) -> "BatchPipeline":
        """The pipeline :func:`reproduce.data.load_dataset` builds for ``name``'s ``train``
        (``augment=True``) or ``train_eval``/``test`` (``augment=False``) view."""
        _data.dataset_shape(name)  # ValueError naming the valid datasets
        spec = _data._SPECS[name]
        augment = bool(augment) and spec.grow > 0
        return cls(spec.image_size, spec.grow if augment else 0, augment, spec.flip and augment, spec.standardize,
                   _data.BRIGHTNESS_MAX_DELTA if augment else 0.0, bool(flat))

    @classmethod
    def of_transform(cls, transform: object) -> tuple["BatchPipeline", int]:
        """The pipeline of a :mod:`reproduce.data` view transform, and how many of its leading
        steps are the deterministic prefix ``ToImage, ToDtype, PlainTensor, ResizeWithPad``.

        ValueError for a step this module does not implement (the batched pipeline would differ).
        """
        steps = list(getattr(transform, "transforms", ()))

        def bad(i: int, why: str) -> ValueError:
            shown = steps[i] if i < len(steps) else "<end>"
            return ValueError(f"device data cannot reproduce step {i} ({shown!r}) of the pipeline {steps}: {why}")

        kinds = [v2.ToImage, v2.ToDtype, _data._PlainTensor, ResizeWithPad]
        for i, kind in enumerate(kinds):
            if i >= len(steps) or not isinstance(steps[i], kind):
                raise bad(i, f"expected {kind.__name__}")
        if steps[1].dtype not in (torch.float32, {torch.Tensor: torch.float32}) or not steps[1].scale:
            raise bad(1, "expected ToDtype(torch.float32, scale=True)")
        resized = steps[3].size
        i = 4
        size, augment, flip, standardize, brightness, flat = resized, False, False, False, 0.0, False
        if i < len(steps) and isinstance(steps[i], v2.RandomCrop):
            crop = steps[i]
            if crop.padding is not None or crop.pad_if_needed or crop.size[0] != crop.size[1]:
                raise bad(i, "only a square crop without padding is implemented")
            size, augment, i = crop.size[0], True, i + 1
            if i < len(steps) and isinstance(steps[i], v2.RandomHorizontalFlip):
                if steps[i].p != 0.5:
                    raise bad(i, "only a flip with p = 0.5 is implemented")
                flip, i = True, i + 1
        if i < len(steps) and isinstance(steps[i], PerImageStandardize):
            standardize, i = True, i + 1
        if i < len(steps) and isinstance(steps[i], RandomBrightness):
            if not augment:
                raise bad(i, "brightness without a random crop is not implemented")
            brightness, i = steps[i].max_delta, i + 1
        if i < len(steps) and isinstance(steps[i], _data._PlainTensor):
            i += 1
        if i < len(steps) and isinstance(steps[i], _data._Flatten):
            flat, i = True, i + 1
        if i != len(steps):
            raise bad(i, "unknown step")
        if augment and resized < size:
            raise bad(3, f"resize to {resized} px is smaller than the crop of {size} px")
        return cls(size, resized - size if augment else 0, augment, flip, standardize, brightness, flat), 4


# --------------------------------------------------------------------------------------------
# batched steps


def _to_float(x: torch.Tensor) -> torch.Tensor:
    """``v2.ToDtype(torch.float32, scale=True)`` for uint8 (same ops, same bits); float passes."""
    if x.dtype == torch.uint8:
        return x.to(torch.float32).mul_(1.0 / 255)
    if x.dtype != torch.float32:
        raise ValueError(f"images must be uint8 or float32, got {x.dtype}")
    return x


def resize_with_pad_batch(x: torch.Tensor, size: int) -> torch.Tensor:
    """:class:`reproduce.data.ResizeWithPad` of every image of a float32 batch ``[B, C, H, W]``."""
    if x.dim() != 4 or x.dtype != torch.float32:
        raise ValueError(f"expected a float32 batch [B, C, H, W], got {x.dtype} {tuple(x.shape)}")
    batch, channels, height, width = x.shape
    if height == size and width == size:
        return x
    longest = max(height, width)
    new_h, new_w = height * size // longest, width * size // longest
    top = (size * longest - height * size) // (2 * longest)
    left = (size * longest - width * size) // (2 * longest)
    resized = F.interpolate(x, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True)
    if (new_h, new_w) == (size, size):
        return resized
    out = x.new_zeros((batch, channels, size, size))
    out[:, :, top:top + new_h, left:left + new_w] = resized
    return out


def standardize_batch(x: torch.Tensor) -> torch.Tensor:
    """:class:`reproduce.data.PerImageStandardize` of every sample of ``x`` [B, ...]."""
    rows = x.reshape(len(x), -1)
    std, mean = torch.std_mean(rows, dim=1, correction=0, keepdim=True)
    floor = 1.0 / math.sqrt(rows.shape[1])
    return ((rows - mean) / torch.clamp(std, min=floor)).view(x.shape)


@dataclass(frozen=True)
class _Draws:
    top: torch.Tensor  # int64 [B]
    left: torch.Tensor  # int64 [B]
    flip: torch.Tensor  # bool [B]
    delta: torch.Tensor  # float32 [B]

    def __getitem__(self, index: slice | torch.Tensor) -> "_Draws":
        return _Draws(self.top[index], self.left[index], self.flip[index], self.delta[index])


def draw_augmentation(n: int, pipeline: BatchPipeline, generator: torch.Generator | None = None,
                      device: torch.device | str | None = None) -> _Draws:
    """Random parameters for ``n`` samples: crop offsets ``top``, ``left`` uniform in
    ``0..grow``, ``flip`` with probability 1/2 (when the pipeline flips), brightness ``delta``
    uniform in ``[-brightness, brightness)``. Drawn on ``device`` (default: the generator's) from
    ``generator`` (default: the device's global generator)."""
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")
    kw = dict(generator=generator, device=device)
    top = torch.randint(0, pipeline.grow + 1, (n,), **kw)
    left = torch.randint(0, pipeline.grow + 1, (n,), **kw)
    flip = (torch.rand(n, **kw) < 0.5) if pipeline.flip else torch.zeros(n, dtype=torch.bool, device=device)
    if pipeline.brightness:
        delta = (torch.rand(n, **kw) * 2.0 - 1.0) * pipeline.brightness
    else:
        delta = torch.zeros(n, dtype=torch.float32, device=device)
    return _Draws(top, left, flip, delta)


def _crop_flip(x: torch.Tensor, size: int, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Per-sample ``size x size`` crops at ``(top, left)``, read right to left where ``flip``: two gathers."""
    batch, channels, height, width = x.shape
    steps = torch.arange(size, device=x.device)
    rows = top.to(x.device)[:, None] + steps  # [B, size]
    cols = left.to(x.device)[:, None] + torch.where(flip.to(x.device)[:, None], size - 1 - steps, steps)
    x = x.gather(2, rows[:, None, :, None].expand(batch, channels, size, width))
    return x.gather(3, cols[:, None, None, :].expand(batch, channels, size, size))


def apply_augmentation(x: torch.Tensor, pipeline: BatchPipeline, draws: _Draws | None = None) -> torch.Tensor:
    """The pipeline on a batch ``x`` ([B, C, H, W], uint8 raw pixels or float32 in [0, 1]) with the
    given draws (ignored without augmentation): float32 [B, C, size, size] (or [B, C*size*size])."""
    if x.dim() != 4:
        raise ValueError(f"expected a batch [B, C, H, W], got shape {tuple(x.shape)}")
    x = _to_float(x)
    if pipeline.augment:
        if draws is None:
            raise ValueError("an augmenting pipeline needs draws (see draw_augmentation)")
        x = resize_with_pad_batch(x, pipeline.input_size)
        x = _crop_flip(x, pipeline.size, draws.top, draws.left, draws.flip)
    else:
        x = resize_with_pad_batch(x, pipeline.size)
    if pipeline.standardize:
        x = standardize_batch(x)
    if pipeline.brightness:
        x = x + draws.delta.to(x.device).view(-1, 1, 1, 1)
    if pipeline.flat:
        x = x.reshape(len(x), -1)
    return x


def augment_batch(x: torch.Tensor, pipeline: BatchPipeline | str,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """The released augmentation on a whole batch ``x`` [B, C, H, W] (uint8 pixels, or float32 in
    [0, 1]), with fresh draws from ``generator``. ``pipeline`` may be a dataset name (its training
    pipeline, :meth:`BatchPipeline.for_dataset`)."""
    if isinstance(pipeline, str):
        pipeline = BatchPipeline.for_dataset(pipeline)
    draws = draw_augmentation(len(x), pipeline, generator, x.device) if pipeline.augment else None
    return apply_augmentation(x, pipeline, draws)


# --------------------------------------------------------------------------------------------
# datasets on a device


def raw_images(base: Dataset) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(uint8 [N, C, H, W], int64 [N])``: the pixels and labels a torchvision dataset holds in
    memory (CIFAR-10 ``.data``/``.targets``, MNIST ``.data``/``.targets``, SVHN ``.data``/``.labels``),
    exactly what its ``__getitem__`` turns into PIL images; None for other datasets."""
    if isinstance(base, CIFAR10):
        images = torch.from_numpy(np.ascontiguousarray(base.data)).permute(0, 3, 1, 2)
        labels = torch.as_tensor(np.asarray(base.targets), dtype=torch.int64)
    elif isinstance(base, MNIST):
        images = torch.as_tensor(base.data).unsqueeze(1)
        labels = torch.as_tensor(base.targets, dtype=torch.int64)
    elif isinstance(base, SVHN):
        images = torch.from_numpy(np.ascontiguousarray(base.data))
        labels = torch.as_tensor(np.asarray(base.labels), dtype=torch.int64)
    else:
        return None
    if images.dtype != torch.uint8:
        return None
    return images.contiguous(), labels


class DeviceSplit(Dataset):
    """One view of a dataset held on a device: ``images`` ([N, C, H, W] uint8 pixels, or float32
    already through the view's resize; or, with ``pipeline=None``, final samples) and ``labels``
    (int64 [N]); :meth:`batches` yields ``(x, y)`` batches through ``pipeline``.

    Items (``split[i]``) work too (augmented with the device's global generator), but are slow:
    use :meth:`batches`.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, pipeline: BatchPipeline | None):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if images.dtype.is_floating_point and not bool(torch.isfinite(images).all()):
            raise ValueError("the images hold non-finite values (NaN or inf): a data error; clean the data")
        self.images, self.labels, self.pipeline = images, labels.to(images.device, torch.int64), pipeline

    @property
    def device(self) -> torch.device:
        return self.images.device

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x, y = self.batch(torch.tensor([int(index)], device=self.device))
        return x[0], int(y[0])

    def batch(self, index: torch.Tensor, draws: _Draws | None = None,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Samples ``index`` through the pipeline (fresh draws from ``generator`` unless given)."""
        x, y = self.images[index], self.labels[index]
        if self.pipeline is None:
            return x, y
        if self.pipeline.augment and draws is None:
            draws = draw_augmentation(len(x), self.pipeline, generator, self.device)
        return apply_augmentation(x, self.pipeline, draws), y

    def batches(self, batch_size: int, *, shuffle: bool, generator: torch.Generator | None = None,
                device: torch.device | None = None, drop_last: bool = False
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """One pass in batches of ``batch_size`` (the last one smaller, or left out with
        ``drop_last``), shuffled with the CPU
        ``generator``; the augmentation of the pass is drawn at its start from a generator on the
        split's device seeded from ``generator`` (so a pass is determined by it)."""
        n, dev = len(self), self.device
        order = (torch.randperm(n, generator=generator) if shuffle else torch.arange(n)).to(dev)
        draws = None
        if self.pipeline is not None and self.pipeline.augment:
            seed = generator.initial_seed() if generator is not None else int(torch.randint(2**62, ()))
            device_gen = torch.Generator(device=dev).manual_seed(derive_seed(seed, 0, "device-augmentation"))
            draws = draw_augmentation(n, self.pipeline, device_gen, dev)
        for start in range(0, n - batch_size + 1 if drop_last else n, batch_size):
            index = order[start:start + batch_size]
            x, y = self.batch(index, None if draws is None else draws[start:start + batch_size])
            if device is not None and device != dev:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            yield x, y

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(n={len(self)}, images={self.images.dtype} {tuple(self.images.shape[1:])} "
                f"on {self.device}, pipeline={self.pipeline})")


def _split_of(view: Dataset, device: torch.device, cache: dict) -> DeviceSplit:
    if isinstance(view, DeviceSplit):
        return view if view.device == device else DeviceSplit(view.images.to(device), view.labels, view.pipeline)
    if isinstance(view, TensorDataset):
        x, y = view.tensors[0], view.tensors[1]
        return DeviceSplit(x.to(device), torch.as_tensor(y).to(device), None)
    if not isinstance(view, TransformedDataset):
        raise ValueError(f"device data holds TensorDataset and reproduce.data views (TransformedDataset), "
                         f"got {type(view).__name__}")
    pipeline, prefix = BatchPipeline.of_transform(view.transform)
    indices = None if view.indices is None else torch.as_tensor(view.indices, dtype=torch.int64)
    key = id(view.base)
    if key not in cache:
        cache[key] = raw_images(view.base)
    raw = cache[key]
    if raw is not None:
        images, labels = raw
        if indices is not None:
            images, labels = images[indices], labels[indices]
        key = (id(view.base), None if indices is None else tuple(view.indices))
        if key not in cache:  # train and train_eval share their pixels
            cache[key] = images.to(device)
        return DeviceSplit(cache[key], labels, pipeline)
    # photos of many sizes: held after the deterministic prefix of the view's own transform
    steps = list(view.transform.transforms)
    prepared = TransformedDataset(view.base, v2.Compose(steps[:prefix]), view.indices)
    x, y = _data.dataset_tensors(prepared)
    return DeviceSplit(x.to(device), y, pipeline)


def device_bundle(data: DataBundle, device: torch.device | str) -> DataBundle:
    """``data`` with its three views held on ``device`` as :class:`DeviceSplit` s (the same name,
    shapes and ``identity``); the raw pixels are copied once and shared by ``train`` and
    ``train_eval``."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    cache: dict = {}
    train = _split_of(data.train, device, cache)
    train_eval = train if data.train_eval is data.train else _split_of(data.train_eval, device, cache)
    test = _split_of(data.test, device, cache)
    return DataBundle(data.name, train, train_eval, test, data.num_classes, data.in_channels, data.image_size,
                      dict(data.identity))
