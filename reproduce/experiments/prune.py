"""Conflicting-layer removal for any torchvision ResNet (``docs/method.md#conflicting-block``,
``#lesion``).

The method of this project, applied to the residual nets of ``torchvision.models``: every model
built by :class:`torchvision.models.ResNet` from :class:`torchvision.models.resnet.BasicBlock` or
:class:`torchvision.models.resnet.Bottleneck` (resnet18 ... resnet152, wide_resnet50_2 /
wide_resnet101_2, resnext50_32x4d / resnext101_32x8d / resnext101_64x4d, or any
``ResNet(block, layers)`` of one's own), without copying torchvision's forward:

* :func:`block_table` measures the **branch tap** of every residual block on a batch of training
  samples (forward hooks on the block's convolutions and its last batch norm) and tabulates its
  bundle statistics (:func:`reproduce.metric.bundles.bundle_stats`) and, as this project's addition, its
  distance to bundling (:func:`reproduce.metric.bundles.distance_to_bundling`);
* :func:`conflicting_blocks` reads the conflicting blocks off the table (branch tap ``H > 0``);
* :func:`remove_blocks` returns a genuinely smaller copy of the model without the given blocks;
* :func:`prune_conflicting` does all three.

Blocks are numbered globally in network order (``layer1[0]`` is block 0, ..., the last block of
``layer4`` is block ``n - 1``); a removed block keeps its place (and number) as a
:class:`RemovedResNetBlock`, so the numbers of a pruned model are those of the original.

Choices the specification leaves open (written down here):

* **Branch tap** (the project's rule, ``docs/method.md#taps``, extended from two convolutions to
  ``k = 3``): the residual branch after its last batch norm, before the shortcut is added
  (``bn2``'s output for a BasicBlock, ``bn3``'s for a Bottleneck), multiplied by
  ``prod_k s_k`` with ``s_k = 1 / sqrt(var(z_k) + 1e-6)``, ``z_k`` the output of the branch's
  ``k``-th convolution (``conv1, conv2`` for a BasicBlock; ``conv1, conv2, conv3`` for a
  Bottleneck), the population variance over the whole batch tensor. The scales are multiplied onto
  the branch in the released code's float32 order, the last convolution's first,
  ``((z * s_3) * s_2) * s_1``, each ``s`` a division ``1 / sqrt(.)`` (not ``rsqrt``), as the
  project's own residual net does for ``k = 2`` (``ModelConfig.branch_tap="released"``). Measured in eval mode (``reproduce.models.eval_mode``), with ``w_max`` the
  largest absolute trainable parameter of the whole model.
* **Removal rule**: a removed block computes ``relu(shortcut(x))`` -- ``shortcut`` is the identity,
  or the block's ``downsample`` (1x1 projection + batch norm) with its trained weights -- the rule
  of the project's :class:`reproduce.models.RemovedBlock`. So a **downsampling block can be
  removed**: its projection stays and keeps the change of resolution and channels. With
  ``keep_downsampling=True`` :func:`remove_blocks` refuses such blocks and :func:`prune_conflicting`
  skips them. Why offer it: what is left of a removed downsampling block is only a strided 1x1
  projection, which discards three quarters of the spatial positions without looking at them; a
  user who wants every stage transition to stay a full block (the paper's lesion removes blocks of
  its own residual net, where the same rule applies, but does not discuss this case) can ask for
  it. The default follows the project's rule.
* **Parameters removed**: exactly the block's parameters outside ``downsample`` (its convolutions
  and batch norms); ``branch_parameters`` in the table.
* **Models for small images** (:func:`torchvision_resnet`): images below 64 pixels (digits 8x8,
  CIFAR-10 32x32) get a 3x3 stride-1 first convolution and no max-pool, the usual adaptation of the
  ImageNet stem (a 7x7/2 convolution and a 3x3/2 max-pool would shrink an 8x8 digit to 2x2 before
  the first block); larger images keep the ImageNet stem (its input channels adapted).
* **Training**: the package's loop (:func:`reproduce.training.train`: a run folder
  ``results/<scale>/prune/<arch>-...`` with checkpoints and resume; the fine-tunes of already
  trained nets with :func:`reproduce.training.fit`), the project's optimiser (RAdam + Lookahead),
  cross-entropy, shuffled batches seeded by ``(seed, epoch)`` (:data:`SEEDING`: the seed stream
  ``torchvision-epoch``, the order drawn through torch's DataLoader, as this study's runs always
  were), the last partial batch dropped (as released); test accuracy after every epoch
  (:func:`prune_train_config`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import pandas as pd
import torch
import torchvision
from torch import nn

from reproduce.data.datasets import load_dataset, measurement_samples
from reproduce.experiments.efficiency import count_all_parameters, inference_times, multiply_accumulates
from reproduce.config.scales import Scale
from reproduce.files.paths import run_dir
from reproduce.experiments import layer_removal
from reproduce.experiments.claims import Claim, over_seeds, seed_outcomes
from reproduce.models.adapters import Block, RemovedResNetBlock, TorchvisionResNetAdapter, observe_blocks
from reproduce.models.nets import check_block_indices, eval_mode, model_device
from reproduce.models.torchvision import RESNET_ARCHS, SMALL_IMAGE, TorchvisionResNet, torchvision_resnet
from reproduce.training.loop import Seeding, TrainConfig, evaluate, fit, train

__all__ = [
    "SUPPORTED",
    "STAGES",
    "RESNET_ARCHS",
    "TABLE_COLUMNS",
    "SMALL_IMAGE",
    "RemovedResNetBlock",
    "BlockInfo",
    "resnet_blocks",
    "branch_parameters",
    "branch_activations",
    "block_table",
    "conflicting_blocks",
    "remove_blocks",
    "prune_conflicting",
    "torchvision_resnet",
    "prune_train_config",
    "study_dataset",
    "default_archs",
    "default_finetune_epochs",
    "PruneStudy",
    "run_prune_study",
    "PRUNE_TOLERANCE",
    "prune_claims",
]

#: the adapter of torchvision's ResNets (:mod:`reproduce.models.adapters`), through which this module works
ADAPTER = TorchvisionResNetAdapter()
#: what this module accepts, for error messages
SUPPORTED = ADAPTER.supported
STAGES = ADAPTER.stages
#: columns of :func:`block_table`, in order
TABLE_COLUMNS = ("block", "name", "stage", "index", "kind", "has_downsample", "parameters", "branch_parameters",
                 "num_bundles", "entropy", "max_accuracy", "conflicting", "distance", "block_influence",
                 "angular_distance")
#: a residual block (``block``, ``stage``, ``index``, ``name``, ``module``, ``removed``)
BlockInfo = Block


# --------------------------------------------------------------------------- structure


def resnet_blocks(model: Any) -> list[BlockInfo]:
    """Every residual block of a torchvision ResNet in network order (removed ones included).

    ValueError naming :data:`SUPPORTED` for anything else.
    """
    if not isinstance(model, torchvision.models.ResNet):
        raise ValueError(f"expected {SUPPORTED}; got {type(model).__module__}.{type(model).__name__}")
    return ADAPTER.blocks(model)


def branch_parameters(block: nn.Module) -> int:
    """Parameters a removal takes away: the block's parameters outside its ``downsample``."""
    return ADAPTER.parameters_removed(block)


def _check_batch(x: Any, y: Any | None = None) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be an image batch tensor [N, C, H, W], got {shape}")
    if x.shape[0] == 0:
        raise ValueError("x holds N = 0 samples; need N >= 1")
    if y is not None:
        if not isinstance(y, torch.Tensor) or y.dim() != 1:
            shape = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(f"y must be a 1-dim tensor of integer labels [N], got {shape}")
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"x holds N = {x.shape[0]} samples but y holds {y.shape[0]}; the counts must match")


def branch_activations(model: nn.Module, x: torch.Tensor, blocks: Iterable[int] | None = None
                       ) -> dict[int, torch.Tensor]:
    """The branch taps (module docstring) of ``blocks`` (default: every intact block) on ``x``, in
    eval mode: ``{block number: tensor [N, C, H, W]}``. Holds them all; :func:`block_table` does not."""
    infos = resnet_blocks(model)
    _check_batch(x)
    wanted = check_block_indices(blocks, len(infos)) if blocks is not None else [i.block for i in infos]
    gone = [i for i in wanted if infos[i].removed]
    if gone:
        raise ValueError(f"blocks {gone} are removed: a removed block has no branch")
    out: dict[int, torch.Tensor] = {}

    def run() -> None:
        with eval_mode(model):
            model(x.to(model_device(model)))

    observe_blocks(model, run, lambda info, tap, x_in, x_out: out.__setitem__(info.block, tap), wanted)
    return out


# --------------------------------------------------------------------------- measuring


def block_table(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, num_classes: int, lr: float,
                batch_size: int, distance: bool = True) -> pd.DataFrame:
    """One row per intact residual block of a torchvision ResNet (columns :data:`TABLE_COLUMNS`):
    where it is (``block`` global number, ``name``, ``stage``, ``index`` in the stage), ``kind``
    (``BasicBlock``/``Bottleneck``), ``has_downsample``, ``parameters`` (the whole block's),
    ``branch_parameters`` (what removing it saves), and the bundle statistics of its **branch tap**
    on ``x`` with labels ``y`` (``num_bundles``, ``entropy``, ``max_accuracy``, ``conflicting`` =
    entropy > 0; :func:`reproduce.metric.bundles.bundle_stats` with the training ``lr`` and
    ``batch_size`` and the model's ``w_max``), measured in eval mode; with the published label-free
    scores of the block's input and output (``block_influence``, ``angular_distance``,
    :mod:`reproduce.metric.similarity`). :func:`reproduce.experiments.layer_removal.block_table`
    measures it, as for any family.

    The branch tap follows the project's rule (``docs/method.md#taps``) **extended to k = 3**: the
    branch after its last batch norm, before the addition, times ``prod_k 1/sqrt(var(z_k) + 1e-6)``
    over the branch's convolutions (two in a BasicBlock, three in a Bottleneck).

    ``distance`` (this project's addition, ``docs/method.md#distance``): the distance to bundling
    of the branch tap over different-label pairs, in float32 resolution steps (NaN when off).
    Each branch is measured as soon as the forward produces it and then dropped.
    """
    infos = resnet_blocks(model)
    _check_batch(x, y)
    table = layer_removal.block_table(model, x, y, num_classes=num_classes, lr=lr, batch_size=batch_size,
                                      distance=distance)
    table = table.rename(columns={"removable_parameters": "branch_parameters"})
    table["has_downsample"] = [infos[int(b)].module.downsample is not None for b in table["block"]]
    return table[list(TABLE_COLUMNS)]


def conflicting_blocks(table: pd.DataFrame) -> list[int]:
    """Global numbers of the conflicting blocks of a :func:`block_table` (entropy > 0), ascending."""
    missing = [c for c in ("block", "entropy") if c not in getattr(table, "columns", ())]
    if missing:
        raise ValueError(f"expected a block_table (columns {', '.join(TABLE_COLUMNS)}); missing {missing}")
    return sorted(int(b) for b, h in zip(table["block"], table["entropy"]) if float(h) > 0)


# --------------------------------------------------------------------------- removing


def remove_blocks(model: nn.Module, blocks: Iterable[int], *, keep_downsampling: bool = False) -> nn.Module:
    """A genuinely smaller copy of the torchvision ResNet ``model`` without the residual ``blocks``
    (global numbers, :func:`resnet_blocks`); ``model`` is left untouched.

    Each removed block becomes a :class:`RemovedResNetBlock`, ``relu(shortcut(x))`` with
    ``shortcut`` the identity or the block's ``downsample`` (kept with its trained weights): the
    rule of :class:`reproduce.models.RemovedBlock`. A downsampling block can therefore be removed
    (its 1x1 projection stays); ``keep_downsampling=True`` refuses that (ValueError naming them).
    The copy has exactly the removed blocks' ``branch_parameters`` fewer parameters. Blocks already
    removed are left as they are.
    """
    resnet_blocks(model)
    return ADAPTER.remove(model, blocks, keep_downsampling=keep_downsampling)


def prune_conflicting(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, num_classes: int, lr: float,
                      batch_size: int, keep_downsampling: bool = False, distance: bool = True
                      ) -> tuple[nn.Module, pd.DataFrame]:
    """``(smaller model, table)``: the :func:`block_table` of ``model`` on ``x, y`` with a column
    ``removed``, and :func:`remove_blocks` of its conflicting blocks (with ``keep_downsampling``
    the conflicting downsampling blocks are skipped, ``removed`` False)."""
    table = block_table(model, x, y, num_classes=num_classes, lr=lr, batch_size=batch_size, distance=distance)
    conflicting = set(conflicting_blocks(table))
    chosen = [int(b) for b, down in zip(table["block"], table["has_downsample"])
              if int(b) in conflicting and not (keep_downsampling and down)]
    table["removed"] = table["block"].isin(chosen)
    return remove_blocks(model, chosen, keep_downsampling=keep_downsampling), table


# --------------------------------------------------------------------------- models and training



# --------------------------------------------------------------------------- the notebook's study


def study_dataset(scale: Scale) -> str:
    """The dataset of the study at ``scale``: CIFAR-10 when the preset lists it, else its first."""
    return "cifar10" if "cifar10" in scale.datasets else scale.dataset


def default_archs(scale: Scale) -> tuple[str, ...]:
    """resnet18 and resnet50 (a BasicBlock and a Bottleneck net) at full-width presets
    (``scale.width == 1``), resnet18 alone at the small ones."""
    return ("resnet18", "resnet50") if scale.width >= 1.0 else ("resnet18",)


def default_finetune_epochs(scale: Scale) -> int:
    """Epochs of the short fine-tune after a removal: a tenth of ``scale.epochs``, at least 1."""
    return max(1, int(scale.epochs) // 10)


@dataclass
class PruneStudy:
    """One trained torchvision ResNet and what removing blocks does to it (:func:`run_prune_study`).

    ``table``: its :func:`block_table` (+ ``removed``); ``selection``: ``conflicting`` (the
    conflicting blocks were removed) or ``closest`` (none conflicts: the ``fallback_k`` blocks
    closest to bundling, this project's addition); ``comparison``: one row per net (full, pruned,
    each after the fine-tune too) with ``parameters``, ``macs``, ``test_acc``, ``latency_ms``.
    """

    arch: str
    dataset: str
    seed: int
    table: pd.DataFrame
    selection: str
    removed: tuple[int, ...]
    comparison: pd.DataFrame
    history: list[dict] = field(default_factory=list)

    def describe(self) -> str:
        n, c = len(self.table), int(self.table["conflicting"].sum())
        what = ("the conflicting blocks" if self.selection == "conflicting"
                else f"no block conflicts; the {len(self.removed)} closest to bundling (addition)")
        return (f"{self.arch} on {self.dataset}, seed {self.seed}: {c} of {n} blocks conflicting; removed {what}: "
                f"{list(self.removed)}")


#: the experiment folder of the study's runs, ``results/<scale>/prune/``
EXPERIMENT = "prune"
#: how the study's epochs draw their randomness (:class:`reproduce.training.Seeding`)
SEEDING = Seeding("torchvision-epoch", "dataloader")


def prune_train_config(scale: Scale, epochs: int, seed: int) -> TrainConfig:
    """The training of the study's nets: ``epochs`` epochs of batches of ``scale.batch_size`` at
    ``scale.lr``, seeded by ``seed``; no epoch-0 record and no evaluation on the training set
    (the test accuracy is evaluated after every epoch)."""
    return TrainConfig(epochs=int(epochs), batch_size=int(scale.batch_size), lr=float(scale.lr), seed=int(seed),
                       eval_train=False, measure_start=False)


def run_prune_study(scale: Scale, arch: str, *, seed: int = 0, dataset: str | None = None,
                    finetune_epochs: int | None = None,
                    fallback_k: int = 2, keep_downsampling: bool = False, timing_repeats: int = 20,
                    timing_batch: int = 64, device: str | torch.device | None = None, progress: bool = False
                    ) -> PruneStudy:
    """Train ``arch`` (:func:`torchvision_resnet`) on ``dataset`` (default :func:`study_dataset`)
    for ``scale.epochs`` epochs (``scale.batch_size``, ``scale.lr``, ``scale.train_limit``), measure
    its :func:`block_table` on ``scale.sample_size`` fixed measurement samples
    (:func:`reproduce.data.measurement_samples` with ``seed``), remove the conflicting blocks -- or,
    when none conflicts, the ``fallback_k`` blocks closest to bundling (labelled ``closest``) --
    and compare the full and the pruned net before and after ``finetune_epochs`` more epochs each
    (default :func:`default_finetune_epochs`; the full net fine-tuned too, as the control; the
    fine-tune shuffles with seed ``seed + 1``): parameters, MACs per image, test accuracy and
    latency (median ms per batch of ``timing_batch``, :func:`reproduce.experiments.efficiency.inference_times`,
    the nets timed round-robin). The trained net has a run folder (resumed, or reused when finished)."""
    if finetune_epochs is None:
        finetune_epochs = default_finetune_epochs(scale)
    if int(finetune_epochs) < 0 or int(fallback_k) < 0:
        raise ValueError(f"finetune_epochs and fallback_k must be >= 0, got {finetune_epochs!r}, {fallback_k!r}")
    dataset = dataset or study_dataset(scale)
    data = load_dataset(dataset, seed=seed, train_limit=scale.train_limit)
    config = TorchvisionResNet(arch, data.num_classes, data.in_channels, data.image_size, init_seed=int(seed))
    tcfg = prune_train_config(scale, scale.epochs, seed)
    folder = run_dir(scale, EXPERIMENT, f"{arch}-{dataset}-seed{int(seed)}", config, tcfg, data.identity,
                     {"seeding": SEEDING})
    run = train(config, data, tcfg, folder, device=device, progress=progress, desc=arch, seeding=SEEDING)
    model, history = run.model.eval(), run.history
    x, y = measurement_samples(data, min(int(scale.sample_size), len(data.train_eval)), seed)
    mkw = dict(num_classes=data.num_classes, lr=scale.lr, batch_size=scale.batch_size)
    pruned, table = prune_conflicting(model, x, y, keep_downsampling=keep_downsampling, **mkw)
    selection = "conflicting"
    removed = tuple(int(b) for b in table.loc[table["removed"], "block"])
    if not removed:
        selection = "closest"
        pool = table[~table["has_downsample"]] if keep_downsampling else table
        order = pool.sort_values(["distance", "block"])
        removed = tuple(sorted(int(b) for b in order["block"][: int(fallback_k)]))
        table["removed"] = table["block"].isin(removed)
        pruned = remove_blocks(model, removed, keep_downsampling=keep_downsampling)
    nets = {"full": model, f"without {selection}": pruned}
    if int(finetune_epochs) > 0:
        for name in list(nets):
            tuned = copy.deepcopy(nets[name])
            fit(tuned, data, prune_train_config(scale, int(finetune_epochs), seed + 1), device=device,
                progress=progress, desc=f"fine-tune {name}", seeding=SEEDING)
            nets[f"{name} + fine-tune"] = tuned.eval()
    shape = (data.in_channels, data.image_size, data.image_size)
    seconds = inference_times(list(nets.values()), [shape] * len(nets), timing_batch, repeats=timing_repeats)
    rows = []
    for (name, net), t in zip(nets.items(), seconds):
        gone = () if name.startswith("full") else removed
        rows.append({"net": name, "removed": len(gone), "blocks": len(table) - len(gone),
                     "parameters": count_all_parameters(net), "macs": multiply_accumulates(net, shape),
                     "test_acc": evaluate(net, data.test)[1], "latency_ms": 1e3 * t})
    comparison = pd.DataFrame(rows, columns=["net", "removed", "blocks", "parameters", "macs", "test_acc",
                                             "latency_ms"])
    return PruneStudy(arch, dataset, int(seed), table, selection, removed, comparison, history)


# --------------------------------------------------------------------------- the claims table

#: the test accuracy a removal may cost against the fine-tuned full net (the rule of :func:`prune_claims`)
PRUNE_TOLERANCE = 0.01


def _fine_tuned(study: PruneStudy, removed: bool) -> float | None:
    c = study.comparison
    name = f"without {study.selection} + fine-tune" if removed else "full + fine-tune"
    hit = c.loc[c["net"] == name, "test_acc"]
    return float(hit.iloc[0]) if len(hit) else None


def prune_claims(studies: Sequence[PruneStudy]) -> list[Claim]:
    """Notebook 07's claims table, one pair of rows per architecture, by a rule fixed before any run:

    * **removing the conflicting blocks** of a trained net and fine-tuning costs at most
      :data:`PRUNE_TOLERANCE` test accuracy against the fine-tuned full net (the paper's lesion
      claim, claim 4, on torchvision's nets); a seed in which no block conflicts cannot test it;
    * **addition**: where no block conflicts, removing the ``fallback_k`` blocks closest to
      bundling and fine-tuning costs at most the same (a seed with conflicting blocks cannot test it).

    Per seed, then :func:`reproduce.experiments.claims.over_seeds`; without a fine-tune
    (``finetune_epochs=0``) neither can be tested."""
    claims = []
    for arch in dict.fromkeys(s.arch for s in studies):
        mine = sorted((s for s in studies if s.arch == arch), key=lambda s: s.seed)
        seeds = [s.seed for s in mine]
        for selection, what, paper in (
                ("conflicting", "the conflicting blocks", "claim 4: conflicting layers of a trained residual net "
                                                          "can be removed with no significant increase of the test "
                                                          "error"),
                ("closest", f"the blocks closest to bundling (none conflicting)", "addition")):
            per_seed: list[bool | None] = []
            for s in mine:
                full, pruned = _fine_tuned(s, False), _fine_tuned(s, True)
                if s.selection != selection or full is None or pruned is None:
                    per_seed.append(None)
                else:
                    per_seed.append(pruned >= full - PRUNE_TOLERANCE)
            costs = [f"{s.seed}: {_fine_tuned(s, False) - _fine_tuned(s, True):+.3f}" for s in mine
                     if s.selection == selection and _fine_tuned(s, True) is not None]
            claims.append(Claim(
                claim=f"{arch}: removing {what}, then fine-tuning, costs at most {PRUNE_TOLERANCE:.2f} test accuracy "
                      f"against the fine-tuned full net",
                paper=paper,
                measured=(f"accuracy cost per seed ({', '.join(costs) or 'no seed with such blocks'}); "
                          f"{seed_outcomes(per_seed, seeds)}"),
                holds=over_seeds(per_seed), seeds=len(mine)))
    return claims
