"""Residual blocks of other libraries' models: where they are, what their tap is, how one is removed
(``docs/method.md#beyond``).

One adapter per model family (:data:`FAMILIES`), found by :func:`adapter_for`:

============================  =====================================================  ==========================
family                        blocks                                                 a removed block
============================  =====================================================  ==========================
``torchvision-resnet``        ``layer1..layer4`` of a ``torchvision.models.ResNet``   ``relu(downsample(x))``
``timm-resnet``               ``layer1..layer4`` of a ``timm`` ResNet / ResNeXt       ``act(downsample(x))``
``timm-convnext``             ``stages[i].blocks`` of a ``timm`` ConvNeXt             deleted (the identity)
``timm-vit``                  ``blocks`` of a ``timm`` VisionTransformer (DeiT too)   deleted
``hf-gpt2``                   ``h`` of a Hugging Face GPT-2                           deleted
``hf-llama``                  ``layers`` of a Llama-style decoder (:data:`LLAMA_STYLE`)  deleted
``hf-bert``                   ``encoder.layer`` of a BERT-style encoder               deleted
``hf-vit``                    ``encoder.layer`` of a Hugging Face ViT                 deleted
============================  =====================================================  ==========================

**Tap** (what the bundle metric measures of a block):

* ResNets (both libraries): the **branch tap** of the project's rule (``docs/method.md#taps``), the
  residual branch after its last batch norm (after the squeeze-excitation, where a timm block has
  one), before the shortcut is added, times ``prod_k 1/sqrt(var(z_k) + 1e-6)`` over the branch's
  convolutions. A ResNet block ends in an activation after the addition, so its output minus its
  input is not the branch.
* every other family: the block's **update of the residual stream**, ``out - in``: the difference of
  the block's float32 output and input taken in float64 (exact for all but extreme exponent gaps)
  and rounded once to float32. For pre-norm blocks (ViT, ConvNeXt, GPT-2, Llama) it is the sum of
  the attention and MLP updates (the depthwise-conv/MLP update) up to the rounding of the two
  additions; for post-norm blocks (BERT) there is no update before a norm, and ``out - in`` is what
  removing the block takes away. Taken from the block's input and output only, so it does not
  depend on how a library writes its forward.

**Removal** returns a genuinely smaller model of the same library (:meth:`Adapter.remove`):
ResNets keep a removed block's place as :class:`RemovedResNetBlock` (its ``downsample`` kept with
its trained weights, so a downsampling block can be removed); the other families delete the block
from its container, and the Hugging Face models get their config updated (``num_hidden_layers``,
``layer_types``) and the ``layer_idx`` of the kept layers renumbered 0..n-1, so the KV cache,
``generate`` and ``save_pretrained`` / ``from_pretrained`` work on the smaller model.
:func:`lesioned` gives the same forward on the intact model (forward hooks that replace each named
block's output by the removal rule's), the independent check of a removal.

**Input and output** of a block (for the label-free scores, :mod:`reproduce.metric.similarity`):
the block's input and its output, except for a ResNet's downsampling block, whose input is taken
after its ``downsample`` (the shortcut's output, of the output's shape).

Blocks are numbered globally in network order from 0. A ResNet's removed block keeps its number; in
the deleting families the smaller model's blocks are numbered 0..n-1 again.

``timm`` and ``transformers`` are optional (the ``models`` extra); nothing here imports them unless
the model is one of theirs.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from reproduce.models.nets import branch_scale, check_block_indices

__all__ = [
    "FAMILIES",
    "LLAMA_STYLE",
    "BERT_STYLE",
    "MODELS_EXTRA",
    "Block",
    "Adapter",
    "RemovedResNetBlock",
    "adapter_for",
    "model_blocks",
    "remove_model_blocks",
    "lesioned",
    "observe_blocks",
    "removable_parameters",
    "require",
]

#: the families :func:`adapter_for` knows, in its order
FAMILIES = ("torchvision-resnet", "timm-resnet", "timm-convnext", "timm-vit", "hf-gpt2", "hf-llama", "hf-bert",
            "hf-vit")
#: Hugging Face ``model_type``s with Llama's decoder layout (``model.layers[i].self_attn``)
LLAMA_STYLE = ("llama", "mistral", "qwen2", "qwen3")
#: Hugging Face ``model_type``s with BERT's encoder layout (``encoder.layer[i]``)
BERT_STYLE = ("bert", "roberta")
#: what to install for the timm and Hugging Face families
MODELS_EXTRA = "pip install 'reproduce[models]' (timm and transformers)"


@dataclass(frozen=True)
class Block:
    """One residual block: global number ``block`` (network order from 0), the container's path
    ``stage`` (``layer2``, ``blocks``, ``transformer.h``), ``index`` in it, and the module."""

    block: int
    stage: str
    index: int
    module: nn.Module = field(repr=False)

    @property
    def name(self) -> str:
        """The block's module path in the model (``layer2.0``, ``transformer.h.3``)."""
        return f"{self.stage}.{self.index}"

    @property
    def removed(self) -> bool:
        return isinstance(self.module, RemovedResNetBlock)


class RemovedResNetBlock(nn.Module):
    """What is left of a removed ResNet block: ``act(downsample(x))``, or ``act(x)`` when the block had
    no ``downsample``; ``act`` is ReLU (torchvision) or the block's own last activation (timm). The
    attribute keeps the libraries' name ``downsample``, so the state-dict keys of what is kept stay."""

    def __init__(self, downsample: nn.Module | None, act: nn.Module | None = None):
        super().__init__()
        self.downsample = downsample
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x if self.downsample is None else self.downsample(x)
        return F.relu(x) if self.act is None else self.act(x)


# --------------------------------------------------------------------------- the adapters


class Adapter:
    """What the package needs of a model family. Subclasses set :attr:`family` and implement
    :meth:`matches`, :meth:`containers` and, where a block is not simply deleted, the ResNet parts."""

    family: str = ""
    #: what the family accepts, for error messages
    supported: str = ""
    #: True: a removed block is deleted from its container; False: it keeps its place
    deletes: bool = True

    def matches(self, model: nn.Module) -> bool:
        raise NotImplementedError

    def containers(self, model: nn.Module) -> list[tuple[str, nn.Module]]:
        """``(path, container)`` of the model's block containers in network order."""
        raise NotImplementedError

    def is_block(self, module: nn.Module) -> bool:
        return True

    def blocks(self, model: nn.Module) -> list[Block]:
        out: list[Block] = []
        for path, container in self.containers(model):
            for j, module in enumerate(container):
                if not self.is_block(module):
                    raise ValueError(f"block {path}.{j} is a {type(module).__name__}; expected {self.supported}")
                out.append(Block(len(out), path, j, module))
        return out

    # ----- measuring

    def removed_output(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The block's output under the removal rule."""
        return x

    def parameters_removed(self, block: nn.Module) -> int:
        """Parameters removing ``block`` takes away."""
        return sum(p.numel() for p in block.parameters())

    def tap_hooks(self, block: Block, consume: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None]) -> list[Any]:
        """Hooks that call ``consume(tap, block_input, block_output)`` once per forward of ``block``
        (a ResNet's downsampling block passes its shortcut's output as the input: the block's input
        brought to its output's shape, what the block's output is compared with)."""

        def hook(module: nn.Module, args: tuple, kwargs: dict, out: Any) -> None:
            x, y = _block_input(args, kwargs), _block_output(out)
            tap = (y.double() - x.double()).to(y.dtype)
            consume(tap, x, y)

        return [block.module.register_forward_hook(hook, with_kwargs=True)]

    # ----- removing

    def remove(self, model: nn.Module, numbers: Iterable[int], **options: Any) -> nn.Module:
        """A smaller copy of ``model`` without blocks ``numbers``; ``model`` is left untouched."""
        blocks = self.blocks(model)
        indices = check_block_indices(numbers, len(blocks))
        self.check_removal(model, blocks, indices, **options)
        smaller = copy.deepcopy(model)
        gone = set(indices)
        for path, _ in self.containers(model):
            container = smaller.get_submodule(path)
            kept = [m for b, m in zip([b for b in blocks if b.stage == path], container) if b.block not in gone]
            _set_submodule(smaller, path, nn.Sequential(*kept) if isinstance(container, nn.Sequential)
                           else type(container)(kept))
        self.after_removal(smaller, model, [b for b in blocks if b.block not in gone])
        return smaller

    def check_removal(self, model: nn.Module, blocks: Sequence[Block], indices: Sequence[int], **options: Any) -> None:
        if options:
            raise ValueError(f"unknown options {sorted(options)} for removing blocks of a {self.family} model")

    def after_removal(self, smaller: nn.Module, original: nn.Module, kept: Sequence[Block]) -> None:
        pass


class _ResNetAdapter(Adapter):
    """torchvision's and timm's ResNets (BasicBlock / Bottleneck blocks in ``layer1..layer4``)."""

    deletes = False
    stages = ("layer1", "layer2", "layer3", "layer4")

    def block_types(self) -> tuple[type, ...]:
        raise NotImplementedError

    def containers(self, model: nn.Module) -> list[tuple[str, nn.Module]]:
        out = []
        for stage in self.stages:
            layer = getattr(model, stage, None)
            if not isinstance(layer, nn.Sequential):
                raise ValueError(f"{stage} of this ResNet is {type(layer).__name__}, not an nn.Sequential of blocks; "
                                 f"expected {self.supported}")
            out.append((stage, layer))
        return out

    def is_block(self, module: nn.Module) -> bool:
        return isinstance(module, (*self.block_types(), RemovedResNetBlock))

    def branch_parts(self, block: nn.Module) -> tuple[tuple[nn.Module, ...], nn.Module]:
        """The branch's convolutions in order, and the module whose output is the branch."""
        convs = tuple(getattr(block, n) for n in ("conv1", "conv2", "conv3") if hasattr(block, n))
        last = getattr(block, f"bn{len(convs)}")
        if getattr(block, "se", None) is not None:
            last = block.se
        return convs, last

    def last_act(self, block: nn.Module) -> nn.Module | None:
        return None

    def removed_output(self, block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return RemovedResNetBlock(block.downsample, self.last_act(block))(x)

    def parameters_removed(self, block: nn.Module) -> int:
        if isinstance(block, RemovedResNetBlock):
            return 0
        kept = {id(p) for p in block.downsample.parameters()} if block.downsample is not None else set()
        return sum(p.numel() for p in block.parameters() if id(p) not in kept)

    def tap_hooks(self, block: Block, consume: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None]) -> list[Any]:
        if block.removed:
            raise ValueError(f"block {block.block} ({block.name}) is removed: a removed block has no branch")
        convs, last = self.branch_parts(block.module)
        scales: list[torch.Tensor | None] = [None] * len(convs)
        held: dict[str, torch.Tensor] = {}

        def conv_hook(k: int) -> Callable:
            def hook(module: nn.Module, args: Any, out: torch.Tensor) -> None:
                scales[k] = branch_scale(out)
            return hook

        def last_hook(module: nn.Module, args: Any, out: torch.Tensor) -> None:
            if any(s is None for s in scales):
                raise RuntimeError(f"block {block.name}: its branch ended before all of its convolutions ran")
            tap = out  # the released order: the last convolution's scale first, ((z * s_k) * ...) * s_1
            for s in reversed(scales):
                tap = tap * s  # a new tensor: the block adds the shortcut to ``out`` in place after this hook
            scales[:] = [None] * len(scales)
            held["tap"] = tap

        def shortcut_hook(module: nn.Module, args: Any, out: torch.Tensor) -> None:
            held["shortcut"] = out

        def block_hook(module: nn.Module, args: tuple, kwargs: dict, out: torch.Tensor) -> None:
            x_in = held.pop("shortcut") if block.module.downsample is not None else _block_input(args, kwargs)
            consume(held.pop("tap"), x_in, out)

        handles = [conv.register_forward_hook(conv_hook(k)) for k, conv in enumerate(convs)]
        handles.append(last.register_forward_hook(last_hook))
        if block.module.downsample is not None:
            handles.append(block.module.downsample.register_forward_hook(shortcut_hook))
        handles.append(block.module.register_forward_hook(block_hook, with_kwargs=True))
        return handles

    def remove(self, model: nn.Module, numbers: Iterable[int], *, keep_downsampling: bool = False) -> nn.Module:
        blocks = self.blocks(model)
        indices = check_block_indices(numbers, len(blocks))
        if keep_downsampling:
            down = [i for i in indices if not blocks[i].removed and blocks[i].module.downsample is not None]
            if down:
                raise ValueError(f"blocks {down} ({', '.join(blocks[i].name for i in down)}) downsample, and "
                                 f"keep_downsampling=True keeps them; leave them out or pass keep_downsampling=False "
                                 f"(then their 1x1 projection stays)")
        smaller = copy.deepcopy(model)
        for i in indices:
            info = blocks[i]
            if info.removed:
                continue
            stage = getattr(smaller, info.stage)
            stage[info.index] = RemovedResNetBlock(stage[info.index].downsample, self.last_act(stage[info.index]))
        return smaller


class TorchvisionResNetAdapter(_ResNetAdapter):
    family = "torchvision-resnet"
    supported = ("a torchvision.models.ResNet whose stages layer1..layer4 hold torchvision.models.resnet.BasicBlock "
                 "or Bottleneck blocks (resnet18, resnet34, resnet50, resnet101, resnet152, wide_resnet50_2, "
                 "wide_resnet101_2, resnext50_32x4d, resnext101_32x8d, resnext101_64x4d, or ResNet(block, layers))")

    def matches(self, model: nn.Module) -> bool:
        import torchvision

        return isinstance(model, torchvision.models.ResNet)

    def block_types(self) -> tuple[type, ...]:
        from torchvision.models.resnet import BasicBlock, Bottleneck

        return BasicBlock, Bottleneck


class TimmResNetAdapter(_ResNetAdapter):
    family = "timm-resnet"
    supported = ("a timm ResNet or ResNeXt (timm.models.resnet.ResNet) whose stages layer1..layer4 hold "
                 "timm.models.resnet.BasicBlock or Bottleneck blocks")

    def matches(self, model: nn.Module) -> bool:
        if not _from_library(model, "timm"):
            return False
        from timm.models.resnet import ResNet

        return isinstance(model, ResNet)

    def block_types(self) -> tuple[type, ...]:
        from timm.models.resnet import BasicBlock, Bottleneck

        return BasicBlock, Bottleneck

    def last_act(self, block: nn.Module) -> nn.Module | None:
        return copy.deepcopy(getattr(block, "act3", None) or block.act2)


class TimmConvNeXtAdapter(Adapter):
    family = "timm-convnext"
    supported = "a timm ConvNeXt whose stages hold timm.models.convnext.ConvNeXtBlock blocks"

    def matches(self, model: nn.Module) -> bool:
        if not _from_library(model, "timm"):
            return False
        from timm.models.convnext import ConvNeXt

        return isinstance(model, ConvNeXt)

    def containers(self, model: nn.Module) -> list[tuple[str, nn.Module]]:
        return [(f"stages.{i}.blocks", stage.blocks) for i, stage in enumerate(model.stages)]

    def is_block(self, module: nn.Module) -> bool:
        from timm.models.convnext import ConvNeXtBlock

        return isinstance(module, ConvNeXtBlock)

    def check_removal(self, model: nn.Module, blocks: Sequence[Block], indices: Sequence[int], **options: Any) -> None:
        super().check_removal(model, blocks, indices, **options)
        bad = [i for i in indices if not isinstance(blocks[i].module.shortcut, nn.Identity)]
        if bad:
            raise ValueError(f"blocks {bad} change their channels (a non-identity shortcut); deleting them would "
                             f"break the net. Removable blocks: "
                             f"{[b.block for b in blocks if isinstance(b.module.shortcut, nn.Identity)]}")


class TimmViTAdapter(Adapter):
    family = "timm-vit"
    supported = "a timm VisionTransformer (ViT, DeiT) and the blocks of its nn.Sequential blocks"

    def matches(self, model: nn.Module) -> bool:
        if not _from_library(model, "timm"):
            return False
        from timm.models.vision_transformer import VisionTransformer

        return isinstance(model, VisionTransformer)

    def containers(self, model: nn.Module) -> list[tuple[str, nn.Module]]:
        return [("blocks", model.blocks)]

    def after_removal(self, smaller: nn.Module, original: nn.Module, kept: Sequence[Block]) -> None:
        info = getattr(smaller, "feature_info", None)
        if isinstance(info, list) and len(info) == len(original.blocks):
            smaller.feature_info = [dict(info[b.index], module=f"blocks.{i}") for i, b in enumerate(kept)]


class _HFAdapter(Adapter):
    """A Hugging Face model whose base model holds its layers in one ``nn.ModuleList``."""

    model_types: tuple[str, ...] = ()
    #: where the base model holds its layers, first match wins (transformers versions differ)
    paths: tuple[str, ...] = ()

    def matches(self, model: nn.Module) -> bool:
        return _from_library(model, "transformers") and getattr(getattr(model, "config", None), "model_type",
                                                                None) in self.model_types

    def base_path(self, model: nn.Module) -> str:
        prefix = getattr(model, "base_model_prefix", "")
        return prefix if prefix and hasattr(model, prefix) else ""

    def containers(self, model: nn.Module) -> list[tuple[str, nn.Module]]:
        base = self.base_path(model)
        for candidate in self.paths:
            path = f"{base}.{candidate}" if base else candidate
            try:
                container = model.get_submodule(path)
            except AttributeError:
                continue
            if isinstance(container, nn.ModuleList):
                return [(path, container)]
        raise ValueError(f"this {self.family} model ({type(model).__name__}) holds no nn.ModuleList of layers at "
                         f"{' or '.join(self.paths)} of its base model")

    def check_removal(self, model: nn.Module, blocks: Sequence[Block], indices: Sequence[int], **options: Any) -> None:
        super().check_removal(model, blocks, indices, **options)
        if len(indices) == len(blocks):
            raise ValueError(f"removing all {len(blocks)} layers leaves a {self.family} model with none; "
                             f"keep at least one")

    def after_removal(self, smaller: nn.Module, original: nn.Module, kept: Sequence[Block]) -> None:
        n_old = len(original.get_submodule(self.containers(original)[0][0]))
        for config in {id(c): c for c in _configs(smaller)}.values():
            config.num_hidden_layers = len(kept)
            types = getattr(config, "layer_types", None)
            if isinstance(types, (list, tuple)) and len(types) == n_old:
                config.layer_types = [types[b.index] for b in kept]
        container = smaller.get_submodule(self.containers(smaller)[0][0])
        for i, layer in enumerate(container):
            for module in layer.modules():
                if hasattr(module, "layer_idx"):
                    module.layer_idx = i


class HFGPT2Adapter(_HFAdapter):
    family = "hf-gpt2"
    model_types = ("gpt2",)
    paths = ("h",)

    def check_removal(self, model: nn.Module, blocks: Sequence[Block], indices: Sequence[int], **options: Any) -> None:
        super().check_removal(model, blocks, indices, **options)
        if getattr(model.config, "scale_attn_by_inverse_layer_idx", False) and indices:
            raise ValueError("this GPT-2 scales attention by 1/(layer_idx + 1) (config.scale_attn_by_inverse_layer_idx"
                             "=True): renumbering its layers would change what a reloaded smaller model computes; "
                             "set it False or leave the blocks in")


class HFLlamaAdapter(_HFAdapter):
    family = "hf-llama"
    model_types = LLAMA_STYLE
    paths = ("layers",)


class HFBertAdapter(_HFAdapter):
    family = "hf-bert"
    model_types = BERT_STYLE
    paths = ("encoder.layer", "encoder.layers", "layers")


class HFViTAdapter(_HFAdapter):
    family = "hf-vit"
    model_types = ("vit",)
    paths = ("encoder.layer", "layers", "encoder.layers")


#: one adapter per family, in :data:`FAMILIES`' order
ADAPTERS: tuple[Adapter, ...] = (TorchvisionResNetAdapter(), TimmResNetAdapter(), TimmConvNeXtAdapter(),
                                 TimmViTAdapter(), HFGPT2Adapter(), HFLlamaAdapter(), HFBertAdapter(), HFViTAdapter())


def adapter_for(model: Any) -> Adapter:
    """The adapter of ``model``'s family; ValueError naming the families (and the extra to install
    for timm and Hugging Face models) for anything else."""
    for adapter in ADAPTERS:
        if isinstance(model, nn.Module) and adapter.matches(model):
            return adapter
    kind = f"{type(model).__module__}.{type(model).__name__}"
    extra = ""
    if isinstance(model, nn.Module) and _from_library(model, "transformers"):
        extra = (f" (a transformers model of model_type {getattr(model.config, 'model_type', None)!r}; the known "
                 f"ones are gpt2, {', '.join(LLAMA_STYLE)}, {', '.join(BERT_STYLE)}, vit)")
    raise ValueError(f"no layer-removal adapter for a {kind}{extra}; the known families are {', '.join(FAMILIES)}")


def model_blocks(model: nn.Module) -> list[Block]:
    """Every residual block of ``model`` (:func:`adapter_for`) in network order."""
    return adapter_for(model).blocks(model)


def remove_model_blocks(model: nn.Module, blocks: Iterable[int], **options: Any) -> nn.Module:
    """A genuinely smaller copy of ``model`` without ``blocks`` (global numbers); options of the family
    (``keep_downsampling`` for the ResNets)."""
    return adapter_for(model).remove(model, blocks, **options)


def removable_parameters(model: nn.Module) -> dict[int, int]:
    """``{block: parameters its removal takes away}``."""
    adapter = adapter_for(model)
    return {b.block: adapter.parameters_removed(b.module) for b in adapter.blocks(model)}


@contextlib.contextmanager
def lesioned(model: nn.Module, blocks: Iterable[int]) -> Iterator[nn.Module]:
    """``model`` with the forward of ``blocks`` replaced by the removal rule (forward hooks, removed
    on exit): the lesioned forward that :meth:`Adapter.remove`'s smaller model must equal."""
    adapter = adapter_for(model)
    infos = adapter.blocks(model)
    handles = []

    def hook(module: nn.Module, args: tuple, kwargs: dict, out: Any) -> Any:
        replaced = adapter.removed_output(module, _block_input(args, kwargs))
        if isinstance(out, tuple):
            return (replaced, *out[1:])
        if hasattr(out, "to_tuple") and not isinstance(out, torch.Tensor):
            raise TypeError(f"cannot lesion a block returning {type(out).__name__}")
        return replaced

    try:
        for i in check_block_indices(blocks, len(infos)):
            if not infos[i].removed:
                handles.append(infos[i].module.register_forward_hook(hook, with_kwargs=True))
        yield model
    finally:
        for h in handles:
            h.remove()


def observe_blocks(model: nn.Module, run: Callable[[], Any], consume: Callable[[Block, torch.Tensor, torch.Tensor,
                                                                                 torch.Tensor], None],
                   blocks: Iterable[int] | None = None) -> None:
    """Call ``run()`` (a forward of ``model``) with hooks that pass every intact block (or those of
    ``blocks``) to ``consume(block, tap, block_input, block_output)`` as the forward reaches it."""
    adapter = adapter_for(model)
    infos = adapter.blocks(model)
    wanted = check_block_indices(blocks, len(infos)) if blocks is not None else [
        b.block for b in infos if not b.removed]
    handles = []
    try:
        for i in wanted:
            handles += adapter.tap_hooks(infos[i], lambda t, x, y, info=infos[i]: consume(info, t, x, y))
        run()
    finally:
        for h in handles:
            h.remove()


# --------------------------------------------------------------------------- helpers


def require(library: str) -> Any:
    """Import the optional ``library`` (``timm`` or ``transformers``); ModuleNotFoundError naming the
    extra to install (:data:`MODELS_EXTRA`) where it is missing."""
    if library not in ("timm", "transformers"):
        raise ValueError(f"unknown optional library {library!r}; valid choices are timm, transformers")
    import importlib

    try:
        return importlib.import_module(library)
    except ImportError as err:
        raise ModuleNotFoundError(f"{library} is not installed; it comes with the models extra: {MODELS_EXTRA}",
                                  name=library) from err


def _from_library(model: nn.Module, library: str) -> bool:
    return any(c.__module__.split(".")[0] == library for c in type(model).__mro__)


def _block_input(args: tuple, kwargs: dict) -> torch.Tensor:
    x = args[0] if args else kwargs.get("hidden_states", kwargs.get("x"))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"a block's first input is a {type(x).__name__}, not a tensor")
    return x


def _block_output(out: Any) -> torch.Tensor:
    y = out[0] if isinstance(out, (tuple, list)) else out
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"a block returned a {type(y).__name__}, not a tensor")
    return y


def _set_submodule(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, module)


def _configs(model: nn.Module) -> list[Any]:
    """The config of ``model`` and of every submodule that holds one (a head's base model shares it
    or holds its own copy)."""
    return [m.config for m in model.modules() if hasattr(m, "config") and hasattr(m.config, "num_hidden_layers")]
