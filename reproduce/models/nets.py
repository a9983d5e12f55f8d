"""The networks of the method notes (``docs/method.md#models``): a fully connected net and the
plain / residual conv net.

Every model carries its :class:`ModelConfig` (``model.config``) so that checkpoints can rebuild it,
and has **one** forward path: :meth:`iter_taps`, a generator of the intermediate activations the
bundle metric measures (``docs/method.md#taps``), yielded one at a time so a consumer never holds
all of them at once. ``features(x)`` (a^(L), the last tap) and ``forward(x)`` (the logits) are
built on the same generator.

The conv net is laid out as torchvision's ResNet: ``stem``, four ``nn.Sequential`` stages
``layer1`` .. ``layer4`` (a stage may be empty) and ``fc``. Blocks are also numbered globally in
network order (``model.blocks[i]``, stage ``model.block_stage[i]``).

This module also owns two small helpers every other module uses: :func:`eval_mode` (eval mode and
``no_grad``, every submodule's train flag restored afterwards) and :func:`model_device`.

Choices the specification leaves open (written down here):

The settings of the released implementation are fields of :class:`ModelConfig` with the released
values as defaults (``docs/method.md#released-settings``):

* ``bn_momentum=0.01, bn_eps=1e-3``: Keras' batch-norm defaults (moving average 0.99) in PyTorch's
  terms (PyTorch's own defaults are 0.1 and 1e-5);
* ``init="released"``: conv nets get He-normal block convolutions (Keras' ``he_normal``: a normal of
  std ``sqrt(2 / fan_in) / 0.8796`` truncated at two std, shortcut projections included) and a
  Glorot-uniform stem convolution and classifier; ``init="he-uniform"`` (round 1's choice) gives
  every conv and dense weight He-uniform (bound ``sqrt(6 / fan_in)``). ``init`` does not apply to
  the FNN (``fnn_head_init``). Biases start at 0, batch-norm scales at 1 and shifts at 0;
* ``conv_bias=True``: convolutions have a bias (released), also those followed by a batch norm.
* ``branch_tap="released"``: the branch tap is computed in the released float32 order,
  ``(z * s2) * s1`` with ``s = 1 / sqrt(.)`` (``"rsqrt"``: ``z * (s1 * s2)`` with ``torch.rsqrt``,
  rounds 1-3; the two differ in the last bit of some values).
* ``padding="same"``: stride-2 convolutions are padded as Keras' ``same`` (:class:`SameConv2d`: for
  an even input and an odd kernel the extra row and column go at the bottom and right);
  ``"symmetric"`` pads ``kernel // 2`` on every side (rounds 1-3). The stem's max-pool keeps
  PyTorch's symmetric padding of 1.
* ``fnn_head_init="glorot-uniform"``: the FNN's output layer has Keras' default Glorot-uniform
  weights, its hidden layers He-uniform (``"he-uniform"``: every layer He-uniform, rounds 1-3).
* Width multiplier: a stage of ``f`` filters gets ``max(1, round(f * width))`` filters.
* Residual branch tap: ``s_k = 1 / sqrt(var(z_k) + 1e-6)`` uses the population variance (divide
  by the number of elements), as ``tf.math.reduce_variance`` does.
* A network whose stages all hold 0 blocks (possible during auto-tune) taps its stem output, so
  that a^(L) is always defined.
* Removing a residual block (lesion study, ``docs/method.md#lesion``) replaces it by
  :class:`RemovedBlock`, whose output is ``ReLU(shortcut(x))`` (a projection shortcut keeps its
  weights); a plain block has no shortcut and cannot be removed. :func:`remove_blocks` returns a
  genuinely smaller copy; ``ModelConfig.removed`` rebuilds it from a checkpoint.
"""

from __future__ import annotations

import contextlib
import copy
import math
import numbers
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from reproduce.files.storage import legacy_field

__all__ = [
    "DEPTH_TABLE",
    "MODEL_KINDS",
    "CONV_KINDS",
    "STAGE_FILTERS",
    "TAP_ROLES",
    "INITS",
    "BRANCH_TAPS",
    "branch_scale",
    "PADDINGS",
    "FNN_HEAD_INITS",
    "ModelConfig",
    "Tap",
    "FNN",
    "ConvNet",
    "ConvBlock",
    "SameConv2d",
    "same_padding",
    "check_block_indices",
    "RemovedBlock",
    "blocks_for_depth",
    "depth_for_blocks",
    "as_blocks",
    "check_conv_kind",
    "conv_config",
    "build_model",
    "remove_blocks",
    "count_parameters",
    "eval_mode",
    "model_device",
]

#: depth -> residual/plain blocks per stage (depth = 2 * blocks + 2)
DEPTH_TABLE: dict[int, tuple[int, int, int, int]] = {
    4: (1, 0, 0, 0),
    10: (1, 1, 1, 1),
    20: (2, 2, 3, 2),
    30: (3, 3, 5, 3),
    50: (3, 6, 12, 3),
    76: (3, 6, 25, 3),
    100: (3, 12, 31, 3),
    120: (3, 12, 41, 3),
}
MODEL_KINDS = ("fnn", "plain", "residual")
#: the conv net kinds (every kind but the FNN)
CONV_KINDS = ("plain", "residual")
#: what a tap measures: an FNN ``hidden`` layer, a residual ``branch``, a block ``output``, the ``stem``
TAP_ROLES = ("hidden", "branch", "output", "stem")
#: weight initialisations of the conv nets (``ModelConfig.init``): the released one, round 1's
INITS = ("released", "he-uniform")
#: how the branch tap multiplies by its scales (``ModelConfig.branch_tap``): the released float32
#: order ``(z * s2) * s1`` with ``s = 1 / sqrt(.)``, or round 1-3's ``z * (s1 * s2)`` with ``rsqrt``
BRANCH_TAPS = ("released", "rsqrt")
#: padding of the stride-2 convolutions (``ModelConfig.padding``): Keras' ``same`` (the extra row and
#: column at the bottom and right), or ``symmetric`` (``kernel // 2`` on every side, rounds 1-3)
PADDINGS = ("same", "symmetric")
#: the FNN's output layer weights (``ModelConfig.fnn_head_init``): Keras' default, or rounds 1-3's
FNN_HEAD_INITS = ("glorot-uniform", "he-uniform")
#: Keras' truncated normal divides the std by the std of a unit normal truncated at +-2
TRUNCATED_NORMAL_STD = 0.87962566103423978
STAGE_FILTERS = (64, 128, 256, 512)
STEM_FILTERS = 64
BRANCH_VAR_EPS = 1e-6


# --------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def eval_mode(*models: nn.Module) -> Iterator[None]:
    """Eval mode and ``no_grad`` for ``models``; every submodule's train flag is restored after."""
    modes = [(m, m.training) for model in models for m in model.modules()]
    try:
        for model in models:
            model.eval()
        with torch.no_grad():
            yield
    finally:
        for m, mode in modes:
            m.training = mode


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (else first buffer; the CPU for an empty model)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def blocks_for_depth(depth: int) -> tuple[int, int, int, int]:
    """Blocks per stage for a depth of the paper's table."""
    try:
        return DEPTH_TABLE[depth]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown depth {depth!r}; valid depths are {', '.join(map(str, DEPTH_TABLE))}"
        ) from None


def depth_for_blocks(blocks: Iterable[int]) -> int:
    """Layer count of a conv net: two convs per block, plus the stem and the classifier."""
    return 2 * sum(blocks) + 2


def as_blocks(blocks_or_depth: int | Sequence[int]) -> tuple[int, int, int, int]:
    """Four blocks per stage from a depth of the table or from four non-negative counts."""
    if isinstance(blocks_or_depth, numbers.Integral) and not isinstance(blocks_or_depth, bool):
        return blocks_for_depth(int(blocks_or_depth))
    try:
        blocks = tuple(int(b) for b in blocks_or_depth)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(
            f"blocks_or_depth must be a depth ({', '.join(map(str, DEPTH_TABLE))}) or 4 block counts, "
            f"got {blocks_or_depth!r}"
        ) from None
    if len(blocks) != 4 or any(b < 0 for b in blocks):
        raise ValueError(f"blocks must be 4 non-negative counts (one per stage), got {blocks_or_depth!r}")
    return blocks  # type: ignore[return-value]


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model.

    ``kind`` is ``fnn``, ``plain`` or ``residual``. Conv nets use ``blocks`` (per stage) and
    ``width`` (multiplier); the FNN uses ``fnn_width`` units in each of ``fnn_depth`` hidden layers.
    ``removed`` lists the (global) indices of residual blocks replaced by their shortcut.
    ``bn_momentum``, ``bn_eps``, ``init``, ``conv_bias``, ``branch_tap``, ``padding`` and
    ``fnn_head_init`` are the released implementation's settings (module docstring); change them to
    study their effect.
    """

    kind: str
    num_classes: int
    in_channels: int = 1
    input_size: int = 8
    blocks: tuple[int, ...] = (1, 1, 1, 1)
    width: float = 1.0
    fnn_width: int = 0
    fnn_depth: int = 0
    removed: tuple[int, ...] = field(default=())
    #: batch norm in PyTorch's terms: new running stat = (1 - momentum) * old + momentum * batch stat
    bn_momentum: float = 0.01
    bn_eps: float = 1e-3
    init: str = "released"
    conv_bias: bool = True
    #: added in round 4 with the released value as default; a config without them (written before)
    #: has the legacy value, and while a field holds it, it is left out of the run folder hash
    branch_tap: str = legacy_field("released", "rsqrt")
    padding: str = legacy_field("same", "symmetric")
    fnn_head_init: str = legacy_field("glorot-uniform", "he-uniform")

    def __post_init__(self) -> None:
        for name, choices in (("init", INITS), ("branch_tap", BRANCH_TAPS), ("padding", PADDINGS),
                              ("fnn_head_init", FNN_HEAD_INITS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}; valid choices are {', '.join(choices)}")
        if not 0 < self.bn_momentum <= 1 or not self.bn_eps > 0:
            raise ValueError(f"bn_momentum must be in (0, 1] and bn_eps > 0, got {self.bn_momentum!r}, {self.bn_eps!r}")
        if not isinstance(self.conv_bias, bool):
            raise ValueError(f"conv_bias must be True or False, got {self.conv_bias!r}")
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"unknown model kind {self.kind!r}; valid kinds are {', '.join(MODEL_KINDS)}")
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")
        if self.in_channels < 1 or self.input_size < 1:
            raise ValueError(
                f"in_channels and input_size must be >= 1, got {self.in_channels}, {self.input_size}"
            )
        if self.kind == "fnn":
            if self.fnn_width < 1 or self.fnn_depth < 1:
                raise ValueError(
                    f"an fnn needs fnn_width >= 1 and fnn_depth >= 1, got {self.fnn_width}, {self.fnn_depth}"
                )
        else:
            blocks = as_blocks(tuple(self.blocks))
            object.__setattr__(self, "blocks", blocks)
            if not self.width > 0:
                raise ValueError(f"width multiplier must be > 0, got {self.width}")
            bad = [i for i in self.removed if not 0 <= i < sum(blocks)]
            if bad:
                raise ValueError(f"removed block indices {bad} outside 0..{sum(blocks) - 1}")
            if self.removed and self.kind != "residual":
                raise ValueError("only residual blocks can be removed (a plain block has no shortcut)")
        object.__setattr__(self, "removed", tuple(sorted(set(int(i) for i in self.removed))))

    @property
    def depth(self) -> int:
        """Number of weight layers (hidden + output for the FNN; 2*blocks+2 for conv nets)."""
        if self.kind == "fnn":
            return self.fnn_depth + 1
        return depth_for_blocks(self.blocks)

    @property
    def label(self) -> str:
        """A short human-readable name, e.g. ``residual-50`` or ``fnn-32x4``."""
        if self.kind == "fnn":
            return f"fnn-{self.fnn_width}x{self.fnn_depth}"
        tail = f"-minus{len(self.removed)}" if self.removed else ""
        return f"{self.kind}-{self.depth}{tail}"


def check_conv_kind(kind: str) -> str:
    """``kind`` if it is a conv net kind, else ValueError naming the valid ones."""
    if kind not in CONV_KINDS:
        raise ValueError(f"unknown conv net kind {kind!r}; valid kinds are {', '.join(CONV_KINDS)}")
    return kind


def conv_config(kind: str, blocks_or_depth: int | Sequence[int], data: Any, *, width: float) -> ModelConfig:
    """The config of a ``plain``/``residual`` conv net for ``data`` (anything with ``num_classes``,
    ``in_channels`` and ``image_size``, e.g. a :class:`reproduce.data.DataBundle`)."""
    check_conv_kind(kind)
    return ModelConfig(kind, data.num_classes, data.in_channels, data.image_size, as_blocks(blocks_or_depth),
                       width=width)


@dataclass
class Tap:
    """One measured activation.

    ``role``: ``hidden`` (FNN layer), ``branch`` (residual branch, scaled as the method notes say),
    ``output`` (block output) or ``stem``. ``block``/``stage`` locate the block (None for FNN/stem).
    """

    name: str
    index: int
    role: str
    block: int | None
    stage: int | None
    activation: torch.Tensor


def _he_uniform(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_uniform_(m.weight, a=0.0, nonlinearity="relu")
        _reset_bias_and_norm(m)


def _reset_bias_and_norm(m: nn.Module) -> None:
    if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def _he_normal_truncated(weight: torch.Tensor) -> None:
    """Keras' ``he_normal``: N(0, std) truncated at +-2 std, std = sqrt(2 / fan_in) / 0.8796."""
    fan_in = weight[0].numel()
    std = math.sqrt(2.0 / fan_in) / TRUNCATED_NORMAL_STD
    nn.init.trunc_normal_(weight, mean=0.0, std=std, a=-2 * std, b=2 * std)


def _released_init(net: "ConvNet") -> None:
    """The released conv-net initialisation: He-normal block convolutions, Glorot-uniform stem and head."""
    for m in net.modules():
        _reset_bias_and_norm(m)
    for stage in net.stages:
        for m in stage.modules():
            if isinstance(m, nn.Conv2d):
                _he_normal_truncated(m.weight)
    for m in (*net.stem.modules(), net.fc):
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)


def _last(taps: Iterator[Tap]) -> torch.Tensor:
    last = None
    for tap in taps:
        last = tap.activation
    assert last is not None, "every model yields at least one tap"
    return last


class FNN(nn.Module):
    """``depth`` dense layers of ``width`` units with ReLU, then a linear output layer."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        in_features = config.in_channels * config.input_size**2
        sizes = [in_features] + [config.fnn_width] * config.fnn_depth
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.head = nn.Linear(sizes[-1], config.num_classes)
        _he_uniform(self.hidden)
        if config.fnn_head_init == "glorot-uniform":
            nn.init.xavier_uniform_(self.head.weight)
            nn.init.zeros_(self.head.bias)
        else:
            _he_uniform(self.head)

    def iter_taps(self, x: torch.Tensor) -> Iterator[Tap]:
        """Yield every hidden layer's output (after ReLU); the logits are not tapped."""
        x = x.flatten(1)
        for i, layer in enumerate(self.hidden):
            x = F.relu(layer(x))
            yield Tap(f"dense{i + 1}", i, "hidden", i, None, x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """a^(L): the last hidden layer's output."""
        return _last(self.iter_taps(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """Keras' ``same`` padding of one spatial dimension: ``(before, after)``, the odd one after."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """A convolution padded as Keras' ``padding="same"``: ``ceil(n / stride)`` outputs, and when the
    padding is odd the extra row and column go at the bottom and right (an ``nn.Conv2d`` with
    ``padding=0`` after ``F.pad``, so its parameters and their names are those of ``nn.Conv2d``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        top, bottom = same_padding(x.shape[-2], kh, sh)
        left, right = same_padding(x.shape[-1], kw, sw)
        return super().forward(F.pad(x, (left, right, top, bottom)))


def _conv_bn(cin: int, cout: int, kernel: int, stride: int, config: ModelConfig) -> list[nn.Module]:
    """Conv and batch norm; a stride-2 conv is :class:`SameConv2d` with ``padding="same"`` (for stride 1
    and an odd kernel, ``kernel // 2`` on every side is the same padding)."""
    if stride > 1 and config.padding == "same":
        conv: nn.Conv2d = SameConv2d(cin, cout, kernel, stride, 0, bias=config.conv_bias)
    else:
        conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=config.conv_bias)
    return [conv, nn.BatchNorm2d(cout, eps=config.bn_eps, momentum=config.bn_momentum)]


def _rsqrt_scale(z: torch.Tensor) -> torch.Tensor:
    """The same scale with ``torch.rsqrt`` (``ModelConfig.branch_tap="rsqrt"``, rounds 1-3)."""
    return torch.rsqrt(z.var(unbiased=False) + BRANCH_VAR_EPS)


def branch_scale(z: torch.Tensor) -> torch.Tensor:
    """``1 / sqrt(var(z) + 1e-6)`` as the released code computes it (a division, not ``rsqrt``)."""
    return torch.reciprocal(torch.sqrt(z.var(unbiased=False) + BRANCH_VAR_EPS))


class ConvBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, then (residual) + shortcut and ReLU, or (plain) ReLU."""

    def __init__(self, cin: int, cout: int, stride: int, residual: bool, config: ModelConfig | None = None):
        """``config`` supplies the batch-norm and bias settings (default: the released ones)."""
        super().__init__()
        config = config or ModelConfig("plain", 1)
        self.branch_tap = config.branch_tap
        self.conv1, self.bn1 = _conv_bn(cin, cout, 3, stride, config)
        self.conv2, self.bn2 = _conv_bn(cout, cout, 3, 1, config)
        self.shortcut: nn.Module | None = None
        if residual:
            if stride != 1 or cin != cout:
                self.shortcut = nn.Sequential(*_conv_bn(cin, cout, 1, stride, config))
            else:
                self.shortcut = nn.Identity()

    def forward_with_branch(self, x: torch.Tensor, branch_tap: bool = True
                            ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(output, branch tap)``; the tap is None for a plain block or with ``branch_tap=False``.

        The branch tap is the residual branch after its second batch norm, before the addition,
        multiplied by ``s1 * s2`` with ``s_k = 1 / sqrt(var(z_k) + 1e-6)``, ``z_k`` the output of the
        k-th convolution (population variance over the whole batch tensor). ``ModelConfig.branch_tap``
        says in which float32 order: ``"released"`` ``(z * s2) * s1`` with ``1 / sqrt``,
        ``"rsqrt"`` ``z * (s1 * s2)`` with ``torch.rsqrt``.
        """
        # one statement per op, rebinding z: every intermediate is freed as soon as the next op has
        # read it, so the plain forward holds no more memory than the nested expression would
        tap = branch_tap and self.shortcut is not None
        released = self.branch_tap == "released"
        scale = branch_scale if released else _rsqrt_scale
        z = self.conv1(x)
        s1 = scale(z) if tap else None
        z = self.bn1(z)
        z = F.relu(z)
        z = self.conv2(z)
        s2 = scale(z) if tap else None
        z = self.bn2(z)
        if self.shortcut is None:
            return F.relu(z), None
        branch = None
        if tap:
            branch = (z * s2) * s1 if released else z * (s1 * s2)
        z = z + self.shortcut(x)  # rebind: the branch output is freed before the ReLU
        return F.relu(z), branch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_branch(x, branch_tap=False)[0]


class RemovedBlock(nn.Module):
    """What is left of a removed residual block: ``ReLU(shortcut(x))``."""

    def __init__(self, shortcut: nn.Module):
        super().__init__()
        self.shortcut = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.shortcut(x))


class ConvNet(nn.Module):
    """The plain or residual conv net: ``stem``, stages ``layer1``..``layer4``, GAP, ``fc``."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        check_conv_kind(config.kind)
        self.config = config
        residual = config.kind == "residual"

        def ch(f: int) -> int:
            return max(1, int(round(f * config.width)))

        stem: list[nn.Module] = [*_conv_bn(config.in_channels, ch(STEM_FILTERS), 7, 2, config), nn.ReLU()]
        if config.input_size > 50:
            stem.append(nn.MaxPool2d(3, 2, 1))
        self.stem = nn.Sequential(*stem)
        cin = ch(STEM_FILTERS)
        for s, (n, f) in enumerate(zip(config.blocks, STAGE_FILTERS)):
            stage = []
            for j in range(n):
                stage.append(ConvBlock(cin, ch(f), 2 if (j == 0 and s > 0) else 1, residual, config))
                cin = ch(f)
            self.add_module(f"layer{s + 1}", nn.Sequential(*stage))
        self.fc = nn.Linear(cin, config.num_classes)
        if config.init == "released":
            _released_init(self)
        else:
            _he_uniform(self)
        for i in config.removed:
            self._replace_block(i, RemovedBlock(self.blocks[i].shortcut))

    @property
    def stages(self) -> tuple[nn.Sequential, nn.Sequential, nn.Sequential, nn.Sequential]:
        return (self.layer1, self.layer2, self.layer3, self.layer4)

    @property
    def blocks(self) -> list[nn.Module]:
        """Every block in network order (global block index = position here)."""
        return [block for stage in self.stages for block in stage]

    @property
    def block_stage(self) -> list[int]:
        """Stage (0..3) of every block, in network order."""
        return [s for s, stage in enumerate(self.stages) for _ in stage]

    def _replace_block(self, index: int, module: nn.Module) -> None:
        for stage in self.stages:
            if index < len(stage):
                stage[index] = module
                return
            index -= len(stage)
        raise IndexError(index)

    def iter_taps(self, x: torch.Tensor, branch_taps: bool = True) -> Iterator[Tap]:
        """The forward pass, yielding the taps in order: per residual block its branch (unless
        ``branch_taps=False``) then its output; per plain or removed block its output; the stem
        output when the net has no block."""
        x = self.stem(x)
        if not any(len(stage) for stage in self.stages):
            yield Tap("stem", 0, "stem", None, None, x)
            return
        index = block = 0
        for s, stage in enumerate(self.stages):
            for j, module in enumerate(stage):
                name = f"stage{s + 1}.block{j + 1}"
                if isinstance(module, ConvBlock):
                    x, branch = module.forward_with_branch(x, branch_taps)
                    if branch is not None:
                        yield Tap(f"{name}.branch", index, "branch", block, s, branch)
                        index += 1
                        del branch
                else:
                    x = module(x)
                yield Tap(f"{name}.out", index, "output", block, s, x)
                index += 1
                block += 1

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """a^(L): the activation before global pooling (the last tap)."""
        return _last(self.iter_taps(x, branch_taps=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


def build_model(config: ModelConfig) -> nn.Module:
    """Build the model a config describes (freshly initialised with the global torch RNG)."""
    if config.kind == "fnn":
        return FNN(config)
    return ConvNet(config)


def check_block_indices(blocks: Any, n: int) -> list[int]:
    """``blocks`` as sorted distinct block numbers of a net with ``n`` residual blocks (numbered in
    network order from 0); ValueError naming the bad value and the valid range for anything else
    (a string, a bare number, a bool or float, a number out of range). The one check of both block
    removals (this module's and :func:`reproduce.experiments.prune.remove_blocks`)."""
    if isinstance(blocks, (str, bytes)) or not isinstance(blocks, Iterable):
        raise ValueError(f"blocks must be a collection of block numbers (ints in 0..{n - 1}), got {blocks!r}")
    items = list(blocks)
    if n == 0 and items:
        raise ValueError(f"this model has no residual blocks to remove, got blocks {items!r}")
    bad_type = [b for b in items if isinstance(b, bool) or not isinstance(b, numbers.Integral)]
    if bad_type:
        raise ValueError(f"block numbers must be ints in 0..{n - 1}, got {bad_type!r}")
    out = sorted(set(int(b) for b in items))
    bad = [b for b in out if not 0 <= b < n]
    if bad:
        raise ValueError(f"block indices {bad} outside the valid range 0..{n - 1} (this model has {n} residual "
                         f"blocks, numbered from 0 in network order)")
    return out


def remove_blocks(model: ConvNet, indices: Iterable[int]) -> ConvNet:
    """A genuinely smaller copy of ``model`` without the residual blocks ``indices``.

    Each removed block becomes :class:`RemovedBlock`, ``ReLU(shortcut(x))`` (its projection
    shortcut, if any, is kept with its trained weights); ``model`` is left unchanged.
    """
    if not isinstance(model, ConvNet):
        raise ValueError(f"block removal needs a ConvNet, got {type(model).__name__}")
    indices = check_block_indices(indices, len(model.blocks))
    if model.config.kind != "residual":
        raise ValueError("only residual blocks can be removed (a plain block has no shortcut)")
    smaller = copy.deepcopy(model)
    blocks = smaller.blocks
    for i in indices:
        if isinstance(blocks[i], ConvBlock):
            smaller._replace_block(i, RemovedBlock(blocks[i].shortcut))
    smaller.config = replace(model.config, removed=tuple(sorted(set(model.config.removed) | set(indices))))
    return smaller


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
