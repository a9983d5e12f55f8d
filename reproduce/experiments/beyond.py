"""Notebook 08: conflicting-layer removal beyond ResNets -- a timm ViT and a Hugging Face GPT-2.

At the CPU presets both are trained here from random initialisation: a small
:class:`timm.models.vision_transformer.VisionTransformer` on digits (8x8 images in 2x2 patches), and
a small character-level :class:`transformers.GPT2LMHeadModel` on the Python help topics that ship
with every CPython (:mod:`reproduce.data.text`). Each is trained by the package's loop
(:func:`reproduce.training.fit`: RAdam + Lookahead, the scale's ``lr`` and ``batch_size``), then
its block table is measured (:func:`reproduce.experiments.layer_removal.block_table`: bundle
entropy and distance to bundling of every block's update, Block Influence and the angular distance,
on the same samples: ``sample_size`` images, or ``lm_positions`` token positions labelled by the
next character), and :func:`ranking_comparison` removes ``k`` blocks by each score and measures
what is left (test accuracy, or perplexity), before and after a short healing fine-tune.

The rule of the claims table (:func:`ranking_claims`) was written before any number was seen:
per seed, **the label-aware ranking** (``entropy``: highest bundle entropy first, ties by the
smaller distance to bundling) **keeps more accuracy than Block Influence at each k** (ViT: higher
test accuracy; GPT-2: lower test perplexity) at which the two remove different blocks; a seed in
which they remove the same blocks at every k cannot test it. Over seeds: :func:`over_seeds`. One
row before healing, one after, per model.

The sizes come from the preset (:meth:`BeyondConfig.from_scale`). At ``paper`` nothing is trained
from scratch: the models are **pretrained ones from the Hugging Face hub** (downloaded on first use,
so that preset needs internet; :data:`PAPER_VIT`, :data:`PAPER_LM`), measured as they are and healed
with a fine-tuning rate (:data:`PAPER_HEAL_LR`):

* timm's DeiT-tiny (ImageNet-1k) on Imagenette's validation images (``make data DATASETS=imagenette``)
  at the package's 128 px (timm resamples the position embedding), its 1,000 logits cut to the 10
  Imagenette classes (:data:`IMAGENETTE_IN_IMAGENET`, :class:`ClassSubset`); the images are
  standardised by Imagenette's own statistics, not ImageNet's, which the healing adapts to;
* GPT-2 (124M) on the same Python help topics, tokenized by its own byte-level BPE
  (:func:`reproduce.data.token_lm_data`), windows of 256 tokens.

The tests run this path offline on tiny models saved to a local folder (:func:`load_hub_vit` takes a
local weights file, :func:`load_hub_lm` a local folder): nothing is downloaded by them.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import pandas as pd
import torch
from torch import nn

from reproduce.config.scales import Scale
from reproduce.data.datasets import load_dataset, measurement_samples
from reproduce.data.text import char_lm_data, token_lm_data
from reproduce.experiments.claims import Claim, over_seeds, seed_outcomes
from reproduce.experiments.efficiency import count_all_parameters, inference_times_of, multiply_accumulates_of
from reproduce.experiments.layer_removal import IGNORE, RANKINGS, block_table, removal_order
from reproduce.models.adapters import remove_model_blocks, require
from reproduce.training.loop import TrainConfig, evaluate, fit, resolve_device

__all__ = ["BeyondConfig", "LMLogits", "build_vit", "build_char_gpt2", "ranking_comparison", "BeyondStudy",
           "run_vit_study", "run_lm_study", "ranking_claims", "distinct_positions", "COMPARISON_COLUMNS",
           "ClassSubset", "load_hub_vit", "load_hub_lm", "IMAGENETTE_IN_IMAGENET", "PAPER_VIT", "PAPER_LM",
           "PAPER_HEAL_LR"]

#: columns of :func:`ranking_comparison`
COMPARISON_COLUMNS = ("ranking", "k", "removed", "healed", "parameters", "macs", "latency_ms", "metric", "value")

#: the pretrained models of the ``paper`` preset (Hugging Face hub names; timm's, and transformers')
PAPER_VIT = "deit_tiny_patch16_224.fb_in1k"
PAPER_LM = "gpt2"
#: the healing rate of a pretrained model at ``paper`` (a fine-tuning rate, chosen before any run;
#: the presets' 1e-3 is a rate for training from scratch)
PAPER_HEAL_LR = 1e-4
#: the ImageNet-1k index of each Imagenette class, in torchvision's order of Imagenette's classes (its
#: sorted WordNet ids n01440764 tench, n02102040 English springer, n02979186 cassette player,
#: n03000684 chain saw, n03028079 church, n03394916 French horn, n03417042 garbage truck, n03425413
#: gas pump, n03445777 golf ball, n03888605 parachute)
IMAGENETTE_IN_IMAGENET = (0, 217, 482, 491, 497, 566, 569, 571, 574, 701)


@dataclass(frozen=True)
class BeyondConfig:
    """Sizes of notebook 08 (:meth:`from_scale`)."""

    vit_dim: int
    vit_depth: int
    lm_dim: int
    lm_layers: int
    context: int
    train_chars: int | None
    vit_epochs: int
    lm_epochs: int
    heal_epochs: int
    ks: tuple[int, ...]
    sample_size: int
    lm_positions: int
    batch_size: int
    lr: float
    seeds: tuple[int, ...]
    #: a pretrained timm model (hub name) instead of :func:`build_vit`, its logits cut to
    #: ``vit_classes`` when given, on ``vit_dataset`` (default: the preset's first dataset)
    vit_hub: str | None = None
    vit_classes: tuple[int, ...] | None = None
    vit_dataset: str | None = None
    #: a pretrained causal LM (hub name or local folder) and its tokenizer instead of :func:`build_char_gpt2`
    lm_hub: str | None = None
    #: the healing fine-tune's learning rate (None: ``lr``)
    heal_lr: float | None = None
    #: where the study computes (``"auto"``: a GPU when there is one; :func:`reproduce.training.resolve_device`)
    device: str = "cpu"

    @classmethod
    def from_scale(cls, scale: Scale, seed: int = 0) -> "BeyondConfig":
        """``smoke``: tiny nets (4 blocks 16 wide, context 16), ``scale.epochs`` epochs, ``k = 1``. The
        other presets: 6 blocks 32 wide (context 32, the first 100,000 characters); the ViT trains
        ``2 * scale.epochs`` epochs (a ViT learns digits more slowly than a conv net), the GPT-2
        ``scale.epochs // 2``; a twentieth of ``scale.epochs`` (at least 1) heals; ``k`` = 1..half the
        blocks. Samples: ``scale.sample_size`` images, and 8 times as many token positions (a position
        is a much smaller sample than an image). ``scale.repeats`` seeds from ``seed``.

        ``paper``: the pretrained models of the module docstring (12 blocks each, no training, ``k`` =
        1..6, one epoch of healing at :data:`PAPER_HEAL_LR`, context 256 tokens); the seeds then
        change the measurement samples, the random ranking and the healing's shuffle, not the model."""
        seeds = tuple(range(int(seed), int(seed) + int(scale.repeats)))
        if scale.name == "paper":
            return cls(vit_dim=192, vit_depth=12, lm_dim=768, lm_layers=12, context=256, train_chars=None,
                       vit_epochs=0, lm_epochs=0, heal_epochs=1, ks=tuple(range(1, 7)),
                       sample_size=int(scale.sample_size), lm_positions=8 * int(scale.sample_size),
                       batch_size=int(scale.batch_size), lr=float(scale.lr), seeds=seeds, vit_hub=PAPER_VIT,
                       vit_classes=IMAGENETTE_IN_IMAGENET, vit_dataset="imagenette", lm_hub=PAPER_LM,
                       heal_lr=PAPER_HEAL_LR, device="auto")
        small = scale.name == "smoke"
        depth = 4 if small else 6
        epochs = int(scale.epochs)
        return cls(vit_dim=16 if small else 32, vit_depth=depth, lm_dim=16 if small else 32, lm_layers=depth,
                   context=16 if small else 32, train_chars=4_000 if small else 100_000,
                   vit_epochs=epochs if small else 2 * epochs, lm_epochs=epochs if small else max(1, epochs // 2),
                   heal_epochs=max(1, epochs // 20), ks=(1,) if small else tuple(range(1, depth // 2 + 1)),
                   sample_size=int(scale.sample_size), lm_positions=8 * int(scale.sample_size),
                   batch_size=int(scale.batch_size), lr=float(scale.lr), seeds=seeds)


class LMLogits(nn.Module):
    """A Hugging Face causal LM as a classifier of every position: ``forward(ids [B, T])`` returns
    logits ``[B, V, T]``, the form :func:`torch.nn.functional.cross_entropy` and the package's loop
    take with targets ``[B, T]``."""

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm(input_ids=ids).logits.transpose(1, 2)


class ClassSubset(nn.Module):
    """A classifier restricted to some of its classes: ``forward(x)`` returns ``model(x)[:, classes]``
    (so class ``i`` of the data is the model's class ``classes[i]``)."""

    def __init__(self, model: nn.Module, classes: Sequence[int]):
        super().__init__()
        if not classes or len(set(classes)) != len(classes) or any(int(c) < 0 for c in classes):
            raise ValueError(f"classes must be distinct indices >= 0, got {tuple(classes)!r}")
        self.model = model
        self.largest = max(int(c) for c in classes)  # a Python int: the check below needs no device sync
        self.register_buffer("classes", torch.as_tensor([int(c) for c in classes]), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.model(x)
        if self.largest >= logits.shape[1]:
            raise ValueError(f"class {self.largest} asked for, but the model has {logits.shape[1]} logits")
        return logits.index_select(1, self.classes)


def load_hub_vit(name: str, *, image_size: int, in_channels: int, weights: str | None = None,
                 **overrides: Any) -> nn.Module:
    """``timm.create_model(name, pretrained=True)`` at ``image_size`` px and ``in_channels`` channels
    (timm resamples the position embedding and, for other channels, the patch embedding). The weights
    come from the hub (needs internet the first time; then timm's cache), or from the local file
    ``weights`` (timm's ``pretrained_cfg_overlay``). ``overrides`` go to ``create_model`` (the tests
    shrink the architecture with them)."""
    timm = require("timm")
    extra = {"pretrained_cfg_overlay": {"file": str(weights)}} if weights is not None else {}
    return timm.create_model(name, pretrained=True, img_size=int(image_size), in_chans=int(in_channels),
                             **extra, **overrides).eval()


def load_hub_lm(name: str) -> tuple[nn.Module, Any]:
    """A pretrained causal LM and its tokenizer: ``AutoModelForCausalLM.from_pretrained(name)`` and
    ``AutoTokenizer.from_pretrained(name)`` (a hub name: needs internet the first time; or a local
    folder written by ``save_pretrained``)."""
    transformers = require("transformers")
    model = transformers.AutoModelForCausalLM.from_pretrained(name)
    return model.eval(), transformers.AutoTokenizer.from_pretrained(name)


def build_vit(cfg: BeyondConfig, *, num_classes: int, in_channels: int, image_size: int, seed: int) -> nn.Module:
    """A timm ViT for small images: 2x2 patches, ``cfg.vit_depth`` blocks ``cfg.vit_dim`` wide, 4 heads
    (2 below 32 wide), MLP ratio 2, initialised from ``seed``."""
    timm = require("timm")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=int(num_classes),
                                 img_size=int(image_size), patch_size=2, in_chans=int(in_channels),
                                 embed_dim=cfg.vit_dim, depth=cfg.vit_depth, num_heads=4 if cfg.vit_dim >= 32 else 2,
                                 mlp_ratio=2.0)


def build_char_gpt2(cfg: BeyondConfig, *, vocabulary: int, seed: int) -> nn.Module:
    """A character-level GPT-2 of ``cfg.lm_layers`` layers ``cfg.lm_dim`` wide (4 heads, 2 below 32),
    context ``cfg.context``, no dropout, initialised from ``seed``."""
    transformers = require("transformers")
    config = transformers.GPT2Config(vocab_size=int(vocabulary), n_positions=cfg.context, n_embd=cfg.lm_dim,
                                     n_layer=cfg.lm_layers, n_head=4 if cfg.lm_dim >= 32 else 2, resid_pdrop=0.0,
                                     embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return transformers.GPT2LMHeadModel(config).eval()


def distinct_positions(x: torch.Tensor, y: torch.Tensor, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows ``x [W, T]`` (next characters ``y``) drawn in a permutation seeded by ``seed``, and their
    labels with all but ``n`` token positions set to :data:`IGNORE`: the first ``n`` positions, in
    that order, whose visible input -- the position ``t`` and the characters ``x[w, :t + 1]`` -- no
    earlier kept position had. A causal LM computes the same activations at two positions with the
    same visible input, so if their next characters differed they would form a conflicting bundle at
    every layer: a conflict of the text, not of any block. Returns ``(windows used, labels)``."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(int(seed))).tolist()
    seen: set[tuple[int, ...]] = set()
    windows: list[int] = []
    keep: list[tuple[int, int]] = []
    for w in order:
        row = x[w].tolist()
        taken = False
        for t in range(len(row)):
            key = (t, *row[: t + 1])
            if key in seen:
                continue
            seen.add(key)
            if not taken:
                windows.append(w)
                taken = True
            keep.append((len(windows) - 1, t))
            if len(keep) == n:
                break
        if len(keep) == n:
            break
    if len(keep) < n:
        raise ValueError(f"the {len(x)} windows hold only {len(keep)} distinct positions, fewer than n = {n}")
    labels = torch.full((len(windows), x.shape[1]), IGNORE, dtype=torch.int64)
    for i, t in keep:
        labels[i, t] = y[windows[i], t]
    return x[windows], labels


def ranking_comparison(model: nn.Module, table: pd.DataFrame, measure: Callable[[nn.Module], tuple[str, float]], *,
                       ks: Sequence[int], example: torch.Tensor, wrap: Callable[[nn.Module], nn.Module] = lambda m: m,
                       rankings: Sequence[str] = RANKINGS, seed: int = 0,
                       heal: Callable[[nn.Module], None] | None = None, timing_repeats: int = 10) -> pd.DataFrame:
    """Remove the first ``k`` blocks of each ranking's :func:`removal_order` (``k`` in ``ks``; the
    random ranking seeded by ``seed``) and measure each smaller model: ``measure(wrap(net))`` gives
    ``(metric name, value)``; parameters, multiply-accumulates per input and latency (median ms of a
    forward of ``example``, every net timed round-robin) of ``wrap(net)``. With ``heal`` (a function
    that fine-tunes ``wrap(net)`` in place) each net is also measured after it, ``healed`` True.
    One row ``ranking="none", k=0`` for the intact model (healed too, as the control). Columns
    :data:`COMPARISON_COLUMNS`."""
    bad = [k for k in ks if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k < len(table)]
    if bad:
        raise ValueError(f"ks {bad} outside 1..{len(table) - 1} (the table has {len(table)} blocks)")
    nets: list[tuple[str, int, tuple[int, ...], nn.Module]] = [("none", 0, (), model)]
    for ranking in rankings:
        order = removal_order(table, ranking, seed=seed)
        for k in ks:
            removed = tuple(sorted(order[:k]))
            nets.append((ranking, int(k), removed, remove_model_blocks(model, removed)))
    stages = [(False, [wrap(n) for *_, n in nets])]
    if heal is not None:
        healed = []
        for *_, net in nets:
            copy_ = wrap(copy.deepcopy(net))
            heal(copy_)
            healed.append(copy_)
        stages.append((True, healed))
    rows = []
    for is_healed, wrapped in stages:
        seconds = inference_times_of(wrapped, [example] * len(wrapped), repeats=timing_repeats)
        for (ranking, k, removed, _), w, t in zip(nets, wrapped, seconds):
            name, value = measure(w)
            rows.append({"ranking": ranking, "k": k, "removed": " ".join(map(str, removed)), "healed": is_healed,
                         "parameters": count_all_parameters(w), "macs": multiply_accumulates_of(w, example),
                         "latency_ms": 1e3 * t, "metric": name, "value": float(value)})
    return pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))


@dataclass
class BeyondStudy:
    """One trained model of notebook 08: its block table, its ranking comparison, its history."""

    model_name: str
    seed: int
    table: pd.DataFrame
    comparison: pd.DataFrame
    history: list[dict] = field(default_factory=list)
    final: dict = field(default_factory=dict)


def _train_config(cfg: BeyondConfig, epochs: int, seed: int, *, heal: bool = False) -> TrainConfig:
    lr = cfg.heal_lr if heal and cfg.heal_lr is not None else cfg.lr
    return TrainConfig(epochs=int(epochs), batch_size=cfg.batch_size, lr=lr, seed=int(seed), eval_train=False,
                       measure_start=False)


def _trained(model: nn.Module, data: Any, cfg: BeyondConfig, epochs: int, seed: int, progress: bool,
             desc: str) -> list[dict]:
    """``epochs`` epochs of :func:`fit` (none for a pretrained model at ``epochs`` = 0); the history."""
    if int(epochs) == 0:
        return []
    return fit(model, data, _train_config(cfg, epochs, seed), device=cfg.device, progress=progress,
               desc=desc).history


def _intact(comparison: pd.DataFrame) -> float:
    """The intact model's measured value (``ranking = none``, before healing): the comparison has it already."""
    row = comparison[(comparison["ranking"] == "none") & ~comparison["healed"].astype(bool)]
    return float(row["value"].iloc[0])


def _vit(cfg: BeyondConfig, data: Any, seed: int, hub_weights: str | None,
         hub_overrides: dict | None) -> tuple[nn.Module, Callable[[nn.Module], nn.Module], str]:
    """The ViT of the study, the wrap its measurements and healing see, and its name."""
    classes = cfg.vit_classes

    def wrap(m: nn.Module) -> nn.Module:
        return ClassSubset(m, classes) if classes is not None else m

    if cfg.vit_hub is None:
        model = build_vit(cfg, num_classes=data.num_classes, in_channels=data.in_channels,
                          image_size=data.image_size, seed=seed)
        return model, wrap, "ViT (timm)"
    model = load_hub_vit(cfg.vit_hub, image_size=data.image_size, in_channels=data.in_channels, weights=hub_weights,
                         **(hub_overrides or {}))
    return model, wrap, f"{cfg.vit_hub} (timm, pretrained)"


def run_vit_study(scale: Scale, seed: int = 0, *, cfg: BeyondConfig | None = None, dataset: str | None = None,
                  progress: bool = False, hub_weights: str | None = None,
                  hub_overrides: dict | None = None) -> BeyondStudy:
    """Train :func:`build_vit` on ``dataset`` (default ``cfg.vit_dataset``, else the preset's first) for
    ``cfg.vit_epochs`` epochs -- or, with ``cfg.vit_hub``, load that pretrained model
    (:func:`load_hub_vit` with ``hub_weights`` and ``hub_overrides``; its logits cut to
    ``cfg.vit_classes``) and train it ``cfg.vit_epochs`` epochs (0 at ``paper``) -- measure its block
    table on ``cfg.sample_size`` measurement samples, and compare the rankings (test accuracy),
    healing ``cfg.heal_epochs`` epochs (seed ``seed + 1``)."""
    cfg = cfg or BeyondConfig.from_scale(scale, seed)
    data = load_dataset(dataset or cfg.vit_dataset or scale.dataset, seed=seed, train_limit=scale.train_limit)
    model, wrap, name = _vit(cfg, data, seed, hub_weights, hub_overrides)
    dev = resolve_device(cfg.device)
    model.to(dev)
    history = _trained(wrap(model), data, cfg, cfg.vit_epochs, seed, progress, "ViT")
    model.eval()
    x, y = measurement_samples(data, min(cfg.sample_size, len(data.train_eval)), seed)
    table = block_table(model, x, y, num_classes=data.num_classes, lr=cfg.lr, batch_size=cfg.batch_size)

    def measure(net: nn.Module) -> tuple[str, float]:
        return "test_acc", evaluate(net, data.test)[1]

    def heal(net: nn.Module) -> None:
        fit(net, data, _train_config(cfg, cfg.heal_epochs, seed + 1, heal=True), device=cfg.device, progress=False)

    example = torch.stack([data.test[i][0] for i in range(min(64, len(data.test)))]).to(dev)
    comparison = ranking_comparison(model, table, measure, ks=cfg.ks, example=example, wrap=wrap, seed=seed,
                                    heal=heal)
    return BeyondStudy(name, int(seed), table, comparison, history, {"test_acc": _intact(comparison)})


def _lm(cfg: BeyondConfig, seed: int) -> tuple[nn.Module, Any, str]:
    """The language model of the study, its data and its name."""
    if cfg.lm_hub is None:
        data = char_lm_data(context=cfg.context, train_chars=cfg.train_chars)
        return build_char_gpt2(cfg, vocabulary=data.num_classes, seed=seed), data, "GPT-2 (transformers)"
    lm, tokenizer = load_hub_lm(cfg.lm_hub)
    vocabulary = int(lm.get_output_embeddings().weight.shape[0])
    data = token_lm_data(tokenizer.encode, vocabulary_size=vocabulary, tokenizer=cfg.lm_hub, context=cfg.context,
                         train_tokens=cfg.train_chars)
    return lm, data, f"{cfg.lm_hub} (transformers, pretrained)"


def run_lm_study(scale: Scale, seed: int = 0, *, cfg: BeyondConfig | None = None,
                 progress: bool = False) -> BeyondStudy:
    """Train :func:`build_char_gpt2` on the Python help topics (:func:`reproduce.data.char_lm_data`)
    for ``cfg.lm_epochs`` epochs -- or, with ``cfg.lm_hub``, load that pretrained model and tokenize
    the topics with its tokenizer (:func:`load_hub_lm`, :func:`reproduce.data.token_lm_data`; 0 epochs
    at ``paper``) -- measure its block table on ``cfg.lm_positions`` distinct token positions of
    training windows (:func:`distinct_positions`, labelled by the next token; windows drawn with
    ``seed``), and compare the rankings (test perplexity), healing ``cfg.heal_epochs`` epochs (seed
    ``seed + 1``)."""
    cfg = cfg or BeyondConfig.from_scale(scale, seed)
    lm, data, name = _lm(cfg, seed)
    dev = resolve_device(cfg.device)
    lm.to(dev)
    history = _trained(LMLogits(lm), data, cfg, cfg.lm_epochs, seed, progress, "GPT-2")
    lm.eval()
    ids, labels = distinct_positions(data.train_eval.tensors[0], data.train_eval.tensors[1], cfg.lm_positions, seed)
    table = block_table(lm, {"input_ids": ids}, labels, num_classes=data.num_classes, lr=cfg.lr,
                        batch_size=cfg.batch_size)

    def measure(net: nn.Module) -> tuple[str, float]:
        return "perplexity", math.exp(evaluate(net, data.test)[0])

    def heal(net: nn.Module) -> None:
        fit(net, data, _train_config(cfg, cfg.heal_epochs, seed + 1, heal=True), device=cfg.device, progress=False)

    example = data.test.tensors[0][:8].to(dev)
    comparison = ranking_comparison(lm, table, measure, ks=cfg.ks, example=example, wrap=LMLogits, seed=seed,
                                    heal=heal)
    return BeyondStudy(name, int(seed), table, comparison, history, {"perplexity": _intact(comparison)})


def ranking_claims(studies: Sequence[BeyondStudy]) -> list[Claim]:
    """The rule of the module docstring, per model and healing stage, over the studies' seeds."""
    claims = []
    for model_name in dict.fromkeys(s.model_name for s in studies):
        mine = sorted((s for s in studies if s.model_name == model_name), key=lambda s: s.seed)
        for healed in (False, True):
            per_seed: list[bool | None] = []
            for s in mine:
                c = s.comparison[s.comparison["healed"] == healed]
                if c.empty:
                    per_seed.append(None)
                    continue
                lower_better = c["metric"].iloc[0] == "perplexity"
                outcome: bool | None = None
                for k in sorted(set(c["k"]) - {0}):
                    a = c[(c["ranking"] == "entropy") & (c["k"] == k)].iloc[0]
                    b = c[(c["ranking"] == "block_influence") & (c["k"] == k)].iloc[0]
                    if a["removed"] == b["removed"]:
                        continue
                    better = a["value"] < b["value"] if lower_better else a["value"] > b["value"]
                    outcome = bool(better) if outcome is None else outcome and bool(better)
                per_seed.append(outcome)
            what = "after healing" if healed else "before healing"
            metric = "perplexity (lower)" if mine and mine[0].comparison["metric"].iloc[0] == "perplexity" \
                else "test accuracy (higher)"
            claims.append(Claim(
                claim=f"{model_name}: the label-aware ranking keeps more than Block Influence at each k ({what})",
                paper="addition (issue: label-aware against ShortGPT's Block Influence)",
                measured=f"{metric}; {seed_outcomes(per_seed, [s.seed for s in mine])}",
                holds=over_seeds(per_seed), seeds=len(mine)))
    return claims
