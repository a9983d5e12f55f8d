"""Conflicting-layer removal beyond the project's own nets: the block table of any model an adapter
knows (:mod:`reproduce.models.adapters`: torchvision, timm and Hugging Face families) and the
rankings of blocks by the label-aware and the published label-free scores.

**Samples.** For a classifier the samples are its inputs with their labels (``labels`` ``[N]``;
each sample's tap is flattened). For a language model the samples are **token positions** and a
position's label is the next token (``labels`` ``[B, T]``, :func:`next_token_labels`; positions
labelled ``IGNORE`` -- the last of each sequence, padding -- are left out): the tap ``[B, T, D]``
becomes one ``D``-vector per kept position.

**Scores** of a block, all on the same samples and the same forward:

* ``entropy`` (bundle entropy of the block's tap) and ``conflicting`` (entropy > 0), with
  ``num_bundles`` and ``max_accuracy`` (:func:`reproduce.metric.bundles.bundle_stats`, with the
  training ``lr`` and ``batch_size`` and the model's ``w_max``);
* ``distance`` to bundling of the tap over different-label pairs, in resolution steps (this
  project's addition, :func:`reproduce.metric.bundles.distance_to_bundling`);
* ``block_influence`` (ShortGPT) and ``angular_distance`` (Gromov et al.) of the block's input and
  output (:mod:`reproduce.metric.similarity`).

**Removal order** of each score (:data:`RANKINGS`, :func:`removal_order`): ``entropy`` removes the
highest bundle entropy first (the most conflicting block), ties broken by the smaller distance;
``distance`` the smallest distance to bundling first; ``block_influence`` and ``angular_distance``
the smallest first (the block that changes its input least, as ShortGPT and Gromov et al. do);
``random`` a seeded permutation. Remaining ties go to the earlier block.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn

from reproduce.metric.bundles import bundle_stats, distance_to_bundling, weight_amplitude
from reproduce.metric.similarity import angular_distance, block_influence
from reproduce.models.adapters import Block, adapter_for, observe_blocks
from reproduce.models.nets import eval_mode, model_device

__all__ = [
    "IGNORE",
    "TABLE_COLUMNS",
    "RANKINGS",
    "next_token_labels",
    "block_table",
    "removal_order",
]

#: the label of a token position that is not a sample (the Hugging Face loss's ``ignore_index``)
IGNORE = -100
#: columns of :func:`block_table`, in order
TABLE_COLUMNS = ("block", "name", "stage", "index", "kind", "parameters", "removable_parameters", "num_bundles",
                 "entropy", "max_accuracy", "conflicting", "distance", "block_influence", "angular_distance")
#: the rankings :func:`removal_order` knows
RANKINGS = ("entropy", "distance", "block_influence", "angular_distance", "random")


def next_token_labels(input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """``[B, T]`` labels of a language model's token positions: the next token, :data:`IGNORE` at the
    last position of each sequence and wherever the next token is padding (``attention_mask`` 0)."""
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
        shape = tuple(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__
        raise ValueError(f"input_ids must be a [B, T] tensor of token ids, got {shape}")
    labels = torch.full_like(input_ids, IGNORE)
    labels[:, :-1] = input_ids[:, 1:]
    if attention_mask is not None:
        labels[:, :-1][attention_mask[:, 1:] == 0] = IGNORE
    return labels


def _check_labels(labels: Any) -> torch.Tensor:
    if not isinstance(labels, torch.Tensor) or labels.dim() not in (1, 2) or labels.dtype.is_floating_point:
        shape = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"labels must be integer labels [N] (one per input) or [B, T] (one per token position, "
                         f"{IGNORE} for none), got {shape}")
    return labels


def _samples(t: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """The samples' vectors of a block tensor ``t``: ``[N, -1]``, or for token positions ``[kept, D]``."""
    if keep is None:
        if t.shape[0] != labels.shape[0]:
            raise ValueError(f"a block's tensor holds {t.shape[0]} samples but labels hold {labels.shape[0]}")
        return t.reshape(t.shape[0], -1)
    if tuple(t.shape[:2]) != tuple(labels.shape):
        raise ValueError(f"per-position labels {tuple(labels.shape)} do not match a block's tensor "
                         f"{tuple(t.shape)} (expected [B, T, D])")
    return t.reshape(t.shape[0] * t.shape[1], -1)[keep]


def block_table(model: nn.Module, inputs: Any, labels: torch.Tensor, *, num_classes: int, lr: float,
                batch_size: int, distance: bool = True, blocks: Iterable[int] | None = None) -> pd.DataFrame:
    """One row per intact residual block of ``model`` (columns :data:`TABLE_COLUMNS`; module docstring),
    measured in one forward in eval mode on ``inputs`` (a tensor, passed positionally, or a mapping
    of keyword arguments such as ``input_ids`` and ``attention_mask``) with ``labels``.

    ``num_classes``: the classes (a language model: its vocabulary size); ``lr`` and ``batch_size``:
    the training settings that set the resolution of a weight update. ``distance=False`` skips the
    distance to bundling (NaN), which costs ``N^2`` pairs per block. Each block is measured as soon
    as the forward produces it and then dropped.
    """
    adapter = adapter_for(model)
    labels = _check_labels(labels)
    keep = None
    if labels.dim() == 2:
        keep = labels.reshape(-1) != IGNORE
        if not bool(keep.any()):
            raise ValueError(f"every token position is labelled {IGNORE}: no samples to measure")
    y = labels.reshape(-1)[keep] if keep is not None else labels
    dev = model_device(model)
    y = y.to(dev)
    keep = keep.to(dev) if keep is not None else None
    w_max = weight_amplitude(model)
    kw = dict(lr=lr, batch_size=batch_size)
    stats: dict[int, dict[str, Any]] = {}

    def consume(info: Block, tap: torch.Tensor, x_in: torch.Tensor, x_out: torch.Tensor) -> None:
        a = _samples(tap, labels, keep)
        st = bundle_stats(a, y, num_classes=num_classes, weight_amplitude=w_max, **kw)
        d = distance_to_bundling(a, labels=y, weight_amplitude=w_max, **kw) if distance else math.nan
        xi, xo = _samples(x_in, labels, keep), _samples(x_out, labels, keep)
        stats[info.block] = {"num_bundles": st.num_bundles, "entropy": st.entropy, "max_accuracy": st.max_accuracy,
                             "conflicting": st.conflicting, "distance": d, "block_influence": block_influence(xi, xo),
                             "angular_distance": angular_distance(xi, xo)}

    def run() -> None:
        with eval_mode(model):
            if isinstance(inputs, Mapping):
                model(**{k: v.to(dev) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()})
            else:
                model(inputs.to(dev))

    infos = adapter.blocks(model)
    observe_blocks(model, run, consume, blocks)
    rows = []
    for info in infos:
        if info.block not in stats:
            continue
        m = info.module
        rows.append({"block": info.block, "name": info.name, "stage": info.stage, "index": info.index,
                     "kind": type(m).__name__, "parameters": sum(p.numel() for p in m.parameters()),
                     "removable_parameters": adapter.parameters_removed(m), **stats[info.block]})
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


def removal_order(table: pd.DataFrame, ranking: str, *, seed: int = 0) -> list[int]:
    """The blocks of a :func:`block_table` in the order ``ranking`` removes them (module docstring);
    ValueError naming :data:`RANKINGS` for an unknown one."""
    if ranking not in RANKINGS:
        raise ValueError(f"unknown ranking {ranking!r}; valid choices are {', '.join(RANKINGS)}")
    missing = [c for c in TABLE_COLUMNS if c not in getattr(table, "columns", ())]
    if missing:
        raise ValueError(f"expected a block_table (columns {', '.join(TABLE_COLUMNS)}); missing {missing}")
    blocks = [int(b) for b in table["block"]]
    if ranking == "random":
        rng = np.random.default_rng(int(seed))
        return [blocks[i] for i in rng.permutation(len(blocks))]
    def low(value: Any) -> float:  # a score not measured (NaN) sorts last
        v = float(value)
        return math.inf if math.isnan(v) else v

    def high(value: Any) -> float:
        v = float(value)
        return math.inf if math.isnan(v) else -v

    keys: dict[str, Callable[[pd.Series], tuple]] = {
        "entropy": lambda r: (high(r["entropy"]), low(r["distance"]), int(r["block"])),
        "distance": lambda r: (low(r["distance"]), int(r["block"])),
        "block_influence": lambda r: (low(r["block_influence"]), int(r["block"])),
        "angular_distance": lambda r: (low(r["angular_distance"]), int(r["block"])),
    }
    rows = sorted((r for _, r in table.iterrows()), key=keys[ranking])
    return [int(r["block"]) for r in rows]
