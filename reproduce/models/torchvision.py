"""torchvision's ResNets as models of this package: a config that builds one (:class:`TorchvisionResNet`),
so :func:`reproduce.training.train` gives them run folders, checkpoints, resume and locks like
the package's own nets.

Models for small images: images below :data:`SMALL_IMAGE` pixels (digits 8x8, CIFAR-10 32x32) get
a 3x3 stride-1 first convolution and no max-pool, the usual adaptation of the ImageNet stem (a
7x7/2 convolution and a 3x3/2 max-pool would shrink an 8x8 digit to 2x2 before the first block);
larger images keep the ImageNet stem (its input channels adapted).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["RESNET_ARCHS", "SMALL_IMAGE", "TorchvisionResNet", "torchvision_resnet"]

#: the torchvision builders of ResNets (``torchvision.models.<name>``)
RESNET_ARCHS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
                "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2")
#: images smaller than this (pixels per side) get the small-image stem (module docstring)
SMALL_IMAGE = 64


@dataclass(frozen=True)
class TorchvisionResNet:
    """``torchvision.models.<arch>`` for images of ``in_channels x image_size x image_size`` and
    ``num_classes`` classes, initialised from ``init_seed`` (:func:`torchvision_resnet`). A model
    config like :class:`reproduce.models.ModelConfig`: plain values, :meth:`build`, a ``label``."""

    arch: str
    num_classes: int
    in_channels: int
    image_size: int
    init_seed: int = 0
    #: tells this config apart from a ModelConfig in a checkpoint
    kind: str = "torchvision"

    def __post_init__(self) -> None:
        if self.arch not in RESNET_ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; valid choices are {', '.join(RESNET_ARCHS)}")
        for name in ("num_classes", "in_channels", "image_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if isinstance(self.init_seed, bool) or not isinstance(self.init_seed, numbers.Integral):
            raise ValueError(f"init_seed must be an int, got {self.init_seed!r}")
        if self.kind != "torchvision":
            raise ValueError(f"kind of a TorchvisionResNet is 'torchvision', got {self.kind!r}")

    @property
    def label(self) -> str:
        return self.arch

    def build(self) -> nn.Module:
        return torchvision_resnet(self.arch, num_classes=self.num_classes, in_channels=self.in_channels,
                                  image_size=self.image_size, seed=self.init_seed)


def torchvision_resnet(arch: str, *, num_classes: int, in_channels: int, image_size: int, seed: int = 0) -> nn.Module:
    """``torchvision.models.<arch>(weights=None, num_classes=...)``, initialised from ``seed`` (the
    global RNG is left as it was), with its stem adapted to the images (module docstring): below
    :data:`SMALL_IMAGE` pixels a 3x3 stride-1 first convolution and no max-pool; else the ImageNet
    stem with ``in_channels`` inputs."""
    import torchvision

    if arch not in RESNET_ARCHS:
        raise ValueError(f"unknown arch {arch!r}; valid choices are {', '.join(RESNET_ARCHS)}")
    for name, value in (("num_classes", num_classes), ("in_channels", in_channels), ("image_size", image_size)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = getattr(torchvision.models, arch)(weights=None, num_classes=int(num_classes))
        out = model.conv1.out_channels
        if image_size < SMALL_IMAGE:
            model.conv1 = nn.Conv2d(int(in_channels), out, 3, 1, 1, bias=False)
            model.maxpool = nn.Identity()
        elif in_channels != model.conv1.in_channels:
            model.conv1 = nn.Conv2d(int(in_channels), out, 7, 2, 3, bias=False)
        # torchvision's initialisation of its convolutions, for the replaced one
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    return model
