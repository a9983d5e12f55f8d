"""The lesion study (claim 4, ``docs/method.md#lesion``).

Train a residual net, find its *conflicting* blocks at the final epoch (a block whose branch tap
has bundle entropy ``H > 0``: :func:`reproduce.metric.bundles.layer_rows` of
:func:`reproduce.metric.bundles.measure_model` on the measurement samples), then for ``k = 1, 2, ...`` remove ``k`` blocks drawn at random from

* ``conflicting``     -- the conflicting blocks,
* ``non-conflicting`` -- the other blocks,
* ``all``             -- every block,

``draws`` times per ``k`` (``k`` runs up to the size of the set) and evaluate the test accuracy of
each lesioned net. Every lesioned net is a genuinely smaller network
(:func:`reproduce.models.remove_blocks`, whose removed blocks compute ``ReLU(shortcut(x))``).

This project's addition (on small data the residual branches may never bundle, so the set of
conflicting blocks can be empty; ``docs/method.md#small-scales``) is a continuous diagnostic, the
**distance to bundling** of a block (:func:`reproduce.metric.bundles.distance_to_bundling`), and a lesion
that removes the ``k`` blocks closest to bundling against the ``k`` farthest (:func:`ranked_plan`).

Choices the specification leaves open (written down here):

* The lesion acts on the weights of the last epoch; the full net's accuracy in every comparison is
  the test accuracy of those same weights (not the average over the last epochs of training).
* Draws: ``k`` distinct blocks, uniformly without replacement, from the set; the ``draws`` draws of
  one ``k`` are independent of each other (two draws may coincide, e.g. always when ``k`` is the
  set size). The generator of set ``s`` and size ``k`` is ``numpy.random.default_rng([seed,
  crc32(s), k])``, so a draw does not depend on which other sets or sizes are drawn.
* The table has ``k = 1..n-1`` for a set of ``n`` blocks, as released (``LesionConfig.whole_set``
  adds ``k = n``, rounds 1-3); the full net is reported separately (``full_accuracy``).
* Standard deviations are over draws with ``ddof = 0``, as released (``LesionConfig.std_ddof``;
  rounds 1-3: 1, and 0 for a single draw).
* Largest removable fraction: the largest ``k / num_blocks`` whose *mean* accuracy over the draws
  stays within ``tolerance`` (1 point) of the full net, ``mean >= full - tolerance`` (the largest
  such ``k``, whether or not every smaller ``k`` also qualifies). It is taken over the
  conflicting set when that set is non-empty, else over all blocks (the ``set`` it used is
  returned with it).
* Distance to bundling of a block: over pairs of measurement samples with **different labels**
  (only such a pair can form a *conflicting* bundle), the smallest max-norm distance
  ``max_c |a_ic - a_jc|`` of the branch tap, times ``lr / bs`` (the mapping of the method's
  ``t = w_max - a * lr / bs``) and divided by one resolution step, the float32 spacing at
  ``w_max`` (``numpy.spacing(float32(w_max))``). A distance well below 1 means the pair is about
  to fall into one bundle; a first probe on digits measured 57-900 steps. The same quantity over all
  pairs (``distance_all``) is reported as well. Computed in float64 from the float32 activations.
* Ranked lesion: ``closest`` removes the ``k`` blocks of smallest distance, ``farthest`` the ``k``
  of largest (ties broken by block index); one deterministic draw per ``k``.
* Inference time: :func:`reproduce.experiments.efficiency.inference_times`, full and pruned nets timed
  round-robin (median seconds per batch of 64 after warm-up, eval mode, ``no_grad``, on the model's
  device, random input).
* Finished lesion tables are cached next to the training run (``lesion-<hash>.csv``) and reused
  only when they hold exactly the planned draws.
* Seeds (``docs/method.md#seeds``): a notebook's seeds are ``range(seed, seed + scale.repeats)``.
  Each seed trains its own net (:func:`run_specs`), with its own measurement samples and its own
  draws (seeded by that seed), and runs the whole study on it (:func:`run_lesion_studies`). Every
  claim is decided per seed by its rule and then over seeds by
  :func:`reproduce.experiments.claims.over_seeds` (:func:`lesion_claims_over_seeds`). Tables carry a
  ``seed`` column; :func:`over_seed_summary` gives the seed mean with its min..max.
* No timing enters a claim: the inference times live only in the ``inference_ms`` column of the
  full-vs-pruned table.
"""

from __future__ import annotations

import math
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import Dataset

from reproduce.metric.bundles import bundles_frame, distance_to_bundling, layer_rows, measure_model, weight_amplitude
from reproduce.config.seeds import check_seeds
from reproduce.data.datasets import DataBundle, measurement_samples
from reproduce.experiments.efficiency import inference_times
from reproduce.models.nets import (DEPTH_TABLE, ConvNet, conv_config, count_parameters, eval_mode, model_device,
                     remove_blocks)
from reproduce.files.progress import progress_bar
from reproduce.experiments.claims import Claim, over_seeds, seed_outcomes, seed_values
from reproduce.training.runs import DataSpec, Hook, RunSpec, train_spec
from reproduce.config.scales import Scale
from reproduce.files.storage import atomic_write_text, config_hash
from reproduce.training.loop import RunResult, TrainConfig, evaluate

__all__ = [
    "SET_NAMES",
    "RANKED_SET_NAMES",
    "TABLE_COLUMNS",
    "LesionConfig",
    "LesionResult",
    "draw_blocks",
    "lesion_plan",
    "ranked_plan",
    "evaluate_lesions",
    "summarize",
    "removable_fraction",
    "branch_distances",
    "branch_gammas", "conflicting_branches", "DiagnosticsCallback", "diagnostics_callback", "diagnostics_history",
    "last_sensitivity",
    "block_diagnostics",
    "BranchDistanceCallback",
    "distance_callback",
    "lesion_spec",
    "EXPERIMENT",
    "conflict_history",
    "compare_full_vs_pruned",
    "lesion_claims",
    "run_lesion_study",
    "run_specs",
    "LesionStudies",
    "run_lesion_studies",
    "over_seed_summary",
    "lesion_claims_over_seeds", "NOTEBOOK_DEFAULTS", "notebook_jobs"]

#: the three sets blocks are drawn from
SET_NAMES = ("conflicting", "non-conflicting", "all")
#: the sets of the ranked lesion (this project's addition)
RANKED_SET_NAMES = ("closest", "farthest")
#: columns of a lesion table
TABLE_COLUMNS = ("set", "k", "draw", "removed", "fraction", "parameters", "test_acc")
#: results/<scale>/<EXPERIMENT>/ holds the lesion runs
EXPERIMENT = "lesion"

#: the defaults of notebook 05's parameters cell that decide its runs (:mod:`reproduce.experiments.notebooks`)
NOTEBOOK_DEFAULTS = {"05_lesion": {"dataset": None}}
#: the paper's lesion study runs on CIFAR-10
PAPER_DATASET = "cifar10"


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class LesionConfig:
    """Sizes of one lesion study (read from a :class:`Scale` by :meth:`from_scale`)."""

    dataset: str
    depth: int
    epochs: int
    draws: int
    width: float
    batch_size: int
    lr: float
    sample_size: int
    train_limit: int | None = None
    seed: int = 0
    #: "within 1 point": accuracies are fractions, so 0.01
    tolerance: float = 0.01
    timing_batch: int = 64
    timing_repeats: int = 20
    timing_warmup: int = 3
    #: the content fingerprint of unverified data files (``DataSpec.content``); None: the published data
    data_content: str | None = None
    #: also remove a whole set, ``k = n`` (rounds 1-3); the released study stops at ``k = n - 1``
    whole_set: bool = False
    #: delta degrees of freedom of the standard deviation over draws (released: 0, ``np.std``)
    std_ddof: int = 0
    #: claim-4 diagnostics after every epoch (:func:`diagnostics_callback`: ``w_max``, |gamma| of every
    #: branch's second batch norm, conflicting branches at ``sensitivity_samples`` samples); False
    #: declares the run as before they existed (its folder name then is the old one)
    diagnostics: bool = True
    #: the larger sample set of the sensitivity count beside the released 64 (this project's addition)
    sensitivity_samples: int = 512

    def __post_init__(self) -> None:
        if self.std_ddof not in (0, 1) or isinstance(self.std_ddof, bool):
            raise ValueError(f"std_ddof must be 0 (released) or 1, got {self.std_ddof!r}")
        if not isinstance(self.whole_set, bool):
            raise ValueError(f"whole_set must be True or False, got {self.whole_set!r}")
        if self.depth not in DEPTH_TABLE:
            raise ValueError(f"unknown depth {self.depth!r}; valid depths are {', '.join(map(str, DEPTH_TABLE))}")
        for name in ("epochs", "draws", "batch_size", "sample_size", "timing_batch", "timing_repeats",
                     "sensitivity_samples"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed!r}")
        if not 0 <= self.tolerance < 1:
            raise ValueError(f"tolerance must be in [0, 1) (a fraction of accuracy), got {self.tolerance!r}")

    @classmethod
    def from_scale(cls, scale: Scale, *, seed: int = 0, dataset: str | None = None, **overrides: Any) -> "LesionConfig":
        """The study of a preset: ``lesion_depth``, ``lesion_epochs``, ``lesion_draws``, ``width``, ...

        ``dataset`` defaults to CIFAR-10 when the preset lists it (the paper's lesion study),
        else to the preset's first dataset.
        """
        if dataset is None:
            dataset = PAPER_DATASET if PAPER_DATASET in scale.datasets else scale.dataset
        values = dict(dataset=dataset, depth=scale.lesion_depth, epochs=scale.lesion_epochs,
                      draws=scale.lesion_draws, width=scale.width, batch_size=scale.batch_size, lr=scale.lr,
                      sample_size=scale.sample_size, train_limit=scale.train_limit, seed=seed)
        values.update(overrides)
        return cls(**values)


# --------------------------------------------------------------------------- draws


def _stream(name: str) -> int:
    return zlib.crc32(name.encode("utf-8"))


def draw_blocks(candidates: Iterable[int], k: int, draws: int, *, seed: int, stream: int = 0) -> list[tuple[int, ...]]:
    """``draws`` random sets of ``k`` distinct blocks from ``candidates`` (each sorted ascending).

    Reproducible: the generator is ``numpy.random.default_rng([seed, stream, k])``. ValueError
    when ``k`` is outside ``1..len(candidates)``.
    """
    pool = np.array(sorted(set(int(c) for c in candidates)), dtype=np.int64)
    if isinstance(k, bool) or not 1 <= int(k) <= len(pool):
        raise ValueError(f"k must be in 1..{len(pool)} (the size of the candidate set), got {k!r}")
    if int(draws) < 1:
        raise ValueError(f"draws must be >= 1, got {draws!r}")
    if int(seed) < 0 or int(stream) < 0:
        raise ValueError(f"seed and stream must be >= 0, got {seed!r}, {stream!r}")
    rng = np.random.default_rng([int(seed), int(stream), int(k)])
    return [tuple(int(i) for i in np.sort(rng.choice(pool, size=int(k), replace=False))) for _ in range(int(draws))]


def lesion_plan(sets: Mapping[str, Sequence[int]], draws: int, *, seed: int, whole_set: bool = False
                ) -> pd.DataFrame:
    """Rows ``set, k, draw, removed`` for ``k = 1..n-1`` (a set of ``n`` blocks; as released) and
    ``draws`` draws per ``k``; ``whole_set=True`` adds ``k = n`` (rounds 1-3).

    An empty set (and, without ``whole_set``, a set of one block) contributes no rows. ``removed``
    holds tuples of block indices.
    """
    rows = []
    for name, members in sets.items():
        members = sorted(set(int(m) for m in members))
        for k in range(1, len(members) + (1 if whole_set else 0)):
            for d, removed in enumerate(draw_blocks(members, k, draws, seed=seed, stream=_stream(name))):
                rows.append({"set": name, "k": k, "draw": d, "removed": removed})
    return pd.DataFrame(rows, columns=["set", "k", "draw", "removed"])


def ranked_plan(distances: Mapping[int, float]) -> pd.DataFrame:
    """Rows ``set, k, draw, removed``: ``closest`` removes the ``k`` blocks of smallest distance,
    ``farthest`` the ``k`` of largest, for ``k = 1..len(distances)`` (ties broken by block index)."""
    items = [(float(d), int(b)) for b, d in distances.items()]
    if any(math.isnan(d) for d, _ in items):
        raise ValueError("distances must not be NaN")
    closest = [b for _, b in sorted(items)]
    farthest = [b for _, b in sorted(items, key=lambda t: (-t[0], t[1]))]
    rows = []
    for name, order in (("closest", closest), ("farthest", farthest)):
        for k in range(1, len(order) + 1):
            rows.append({"set": name, "k": k, "draw": 0, "removed": tuple(sorted(order[:k]))})
    return pd.DataFrame(rows, columns=["set", "k", "draw", "removed"])


# --------------------------------------------------------------------------- evaluation


def evaluate_lesions(model: ConvNet, test: Dataset, plan: pd.DataFrame, *, progress: bool = False,
                     desc: str = "lesions") -> pd.DataFrame:
    """Test accuracy of the genuinely smaller net of every row of ``plan`` (columns TABLE_COLUMNS).

    ``fraction`` is ``k / num_blocks``; ``parameters`` counts the smaller net's parameters. Equal
    ``removed`` tuples are evaluated once.
    """
    n = len(model.blocks)
    done: dict[tuple[int, ...], tuple[int, float]] = {}
    accs, params = [], []
    for removed in progress_bar(list(plan["removed"]), enabled=progress, desc=desc, leave=False):
        removed = tuple(removed)
        if removed not in done:
            smaller = remove_blocks(model, removed)
            done[removed] = (count_parameters(smaller), evaluate(smaller, test)[1])
            del smaller
        params.append(done[removed][0])
        accs.append(done[removed][1])
    table = plan.copy()
    table["fraction"] = table["k"] / n
    table["parameters"] = params
    table["test_acc"] = accs
    return table[list(TABLE_COLUMNS)].reset_index(drop=True)


def summarize(table: pd.DataFrame, *, ddof: int = 0) -> pd.DataFrame:
    """Per ``set`` and ``k``: ``fraction``, ``mean``, ``std`` (over the draws with ``ddof``: 0 as
    released; with 1, 0 for one draw), ``draws``."""
    cols = ["set", "k", "fraction", "mean", "std", "draws"]
    if ddof not in (0, 1) or isinstance(ddof, bool):
        raise ValueError(f"ddof must be 0 (released) or 1, got {ddof!r}")
    if table.empty:
        return pd.DataFrame(columns=cols)
    g = table.groupby(["set", "k"], sort=False)
    out = g.agg(fraction=("fraction", "first"), mean=("test_acc", "mean"),
                std=("test_acc", lambda acc: acc.std(ddof=ddof)), draws=("test_acc", "size")).reset_index()
    out["std"] = out["std"].fillna(0.0)
    return out[cols]


def removable_fraction(summary: pd.DataFrame, full_accuracy: float, *, set_name: str, num_blocks: int,
                       tolerance: float = 0.01) -> tuple[float, int]:
    """``(k / num_blocks, k)`` for the largest ``k`` of ``set_name`` whose mean accuracy is at least
    ``full_accuracy - tolerance``; ``(0.0, 0)`` when no ``k`` qualifies or the set has no rows."""
    if num_blocks < 1:
        raise ValueError(f"num_blocks must be >= 1, got {num_blocks!r}")
    rows = summary[summary["set"] == set_name]
    ok = rows[rows["mean"] >= full_accuracy - tolerance - 1e-12]
    if ok.empty:
        return 0.0, 0
    k = int(ok["k"].max())
    return k / num_blocks, k


# --------------------------------------------------------------------------- distance to bundling


def branch_distances(model: ConvNet, x: torch.Tensor, y: torch.Tensor, *, lr: float, batch_size: int) -> pd.DataFrame:
    """Distance to bundling of every residual block's branch tap (different-label pairs and all pairs).

    Columns ``block, stage, tap, distance, distance_all``; runs under :func:`eval_mode`.
    """
    kw = dict(lr=lr, batch_size=batch_size, weight_amplitude=weight_amplitude(model))
    rows = []
    with eval_mode(model):
        x, y = x.to(model_device(model)), y.to(model_device(model))
        for tap in model.iter_taps(x):
            if tap.role == "branch":
                rows.append({"block": int(tap.block), "stage": int(tap.stage), "tap": tap.name,
                             "distance": distance_to_bundling(tap.activation, labels=y, **kw),
                             "distance_all": distance_to_bundling(tap.activation, **kw)})
            del tap
    return pd.DataFrame(rows, columns=["block", "stage", "tap", "distance", "distance_all"])


def block_diagnostics(model: ConvNet, x: torch.Tensor, y: torch.Tensor, *, num_classes: int, lr: float,
                      batch_size: int) -> pd.DataFrame:
    """One row per residual block: ``block, stage, tap, num_bundles, entropy, conflicting`` (its
    branch tap, :func:`measure_model`) and ``distance, distance_all`` (:func:`branch_distances`)."""
    if not isinstance(model, ConvNet) or model.config.kind != "residual":
        raise ValueError("the lesion study needs a residual ConvNet")
    taps = measure_model(model, x, y, num_classes=num_classes, lr=lr, batch_size=batch_size)
    branch = pd.DataFrame(layer_rows(taps))[["block", "num_bundles", "entropy", "conflicting"]]
    branch = branch.astype({"block": int, "conflicting": bool})
    dist = branch_distances(model, x, y, lr=lr, batch_size=batch_size)
    out = dist.merge(branch, on="block", how="left", validate="one_to_one")
    return out[["block", "stage", "tap", "num_bundles", "entropy", "conflicting", "distance", "distance_all"]]


def distance_callback(data: Any, spec: Any, *, sample_size: int, seed: int) -> "BranchDistanceCallback":
    """The :class:`BranchDistanceCallback` a run declares, on ``measurement_samples(data,
    sample_size, seed)`` (at most the whole training set) with the run's lr and batch size."""
    x, y = measurement_samples(data, min(int(sample_size), len(data.train_eval)), seed)
    return BranchDistanceCallback(x, y, lr=spec.train.lr, batch_size=spec.train.batch_size)


class BranchDistanceCallback:
    """Training callback: adds ``record["branch_distances"]``, one dict per block with ``block``,
    ``distance`` and ``distance_all`` (see :func:`branch_distances`), after every epoch."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, *, lr: float, batch_size: int):
        self.x, self.y, self.lr, self.batch_size = x, y, float(lr), int(batch_size)

    def __call__(self, model: nn.Module, epoch: int, record: dict) -> None:
        df = branch_distances(model, self.x, self.y, lr=self.lr, batch_size=self.batch_size)
        record["branch_distances"] = [
            {"block": int(r.block), "distance": float(r.distance), "distance_all": float(r.distance_all)}
            for r in df.itertuples()
        ]


def conflict_history(history: Sequence[dict], steps_per_epoch: int | None = None) -> pd.DataFrame:
    """Per epoch: ``steps`` (optimiser steps so far, ``epoch * steps_per_epoch``; NaN when not
    given), ``conflicting_blocks`` (branch taps with H > 0), ``num_blocks``, ``median_distance`` /
    ``min_distance`` (NaN when the run recorded no distances), ``test_acc``."""
    frame = bundles_frame(history)
    branch = frame[frame["role"] == "branch"]
    rows = []
    for i, record in enumerate(history):
        epoch = record.get("epoch", i)
        here = branch[branch["epoch"] == epoch]
        if here.empty:
            continue
        dists = [d["distance"] for d in record.get("branch_distances") or ()]
        rows.append({"epoch": int(epoch), "steps": math.nan if steps_per_epoch is None else int(epoch) * steps_per_epoch,
                     "conflicting_blocks": int(here["conflicting"].sum()),
                     "num_blocks": int(len(here)),
                     "median_distance": float(np.median(dists)) if dists else math.nan,
                     "min_distance": float(np.min(dists)) if dists else math.nan,
                     "test_acc": record.get("test_acc")})
    return pd.DataFrame(rows, columns=["epoch", "steps", "conflicting_blocks", "num_blocks", "median_distance",
                                       "min_distance", "test_acc"])


# --------------------------------------------------------------------------- claim-4 diagnostics


def branch_gammas(model: ConvNet) -> pd.DataFrame:
    """|gamma| of the second batch norm of every residual branch: one row per residual block with
    ``block, stage, gamma_abs_mean, gamma_abs_min, gamma_abs_max`` (over its channels). The branch
    ends in ``bn2``: with every gamma 0 it outputs the constant beta, the branch is constant and can
    be bundled; ``max`` says whether *all* channels are near 0, ``min`` finds the first one, ``mean``
    the trend. Removed blocks and plain blocks have no branch and no row."""
    if not isinstance(model, ConvNet):
        raise ValueError(f"branch_gammas needs a ConvNet, got {type(model).__name__}")
    rows = []
    for i, (block, stage) in enumerate(zip(model.blocks, model.block_stage)):
        bn = getattr(block, "bn2", None)
        if getattr(block, "shortcut", None) is None or bn is None or bn.weight is None:
            continue
        g = bn.weight.detach().abs().double()
        rows.append({"block": i, "stage": int(stage), "gamma_abs_mean": float(g.mean()),
                     "gamma_abs_min": float(g.min()), "gamma_abs_max": float(g.max())})
    return pd.DataFrame(rows, columns=["block", "stage", "gamma_abs_mean", "gamma_abs_min", "gamma_abs_max"])


def conflicting_branches(model: ConvNet, x: torch.Tensor, y: torch.Tensor, *, num_classes: int, lr: float,
                         batch_size: int) -> list[int]:
    """The blocks whose branch tap has H > 0 on ``x``, ``y`` (:func:`measure_model`, :func:`layer_rows`)."""
    rows = layer_rows(measure_model(model, x, y, num_classes=num_classes, lr=lr, batch_size=batch_size))
    return sorted(int(r["block"]) for r in rows if r.get("role") == "branch" and float(r["entropy"]) > 0)


class DiagnosticsCallback:
    """Training callback: adds ``w_max``, ``branch_gamma`` (rows of :func:`branch_gammas`) and
    ``sensitivity_conflicting`` / ``sensitivity_samples`` (the conflicting branches on ``draw(epoch)``,
    a larger sample set) to every epoch's record."""

    def __init__(self, draw: Any, *, n: int, num_classes: int, lr: float, batch_size: int):
        self.draw, self.n = draw, int(n)
        self.kw = dict(num_classes=int(num_classes), lr=float(lr), batch_size=int(batch_size))

    def __call__(self, model: nn.Module, epoch: int, record: dict) -> None:
        x, y = self.draw(int(epoch))
        record["w_max"] = float(weight_amplitude(model))
        record["branch_gamma"] = branch_gammas(model).to_dict("records")
        record["sensitivity_conflicting"] = conflicting_branches(model, x, y, **self.kw)
        record["sensitivity_samples"] = self.n


def diagnostics_callback(data: Any, spec: Any, *, sample_size: int, seed: int, samples: str = "fresh",
                         augment: bool = True) -> DiagnosticsCallback:
    """The :class:`DiagnosticsCallback` of a lesion run: ``min(sample_size, training set)`` samples,
    drawn as the run's bundle measurement draws its 64 (``samples``: ``"fresh"`` batch
    ``draw=epoch``, or ``"fixed"``; ``augment`` as :func:`reproduce.metric.bundles.bundle_callback`), so at
    ``"fresh"`` the larger batch starts with the same indices."""
    if samples not in ("fresh", "fixed"):
        raise ValueError(f"unknown samples {samples!r}; valid choices are fresh, fixed")
    n = min(int(sample_size), len(data.train_eval))
    if samples == "fresh":
        draw = lambda epoch: measurement_samples(data, n, seed, draw=epoch, augment=augment)  # noqa: E731
    else:
        fixed = measurement_samples(data, n, seed)
        draw = lambda epoch: fixed  # noqa: E731
    return DiagnosticsCallback(draw, n=n, num_classes=data.num_classes, lr=spec.train.lr,
                               batch_size=spec.train.batch_size)


def diagnostics_history(history: Sequence[dict]) -> pd.DataFrame:
    """Per epoch with diagnostics: ``epoch, w_max, gamma_abs_mean`` (mean of the branches' means),
    ``gamma_abs_min`` (smallest channel |gamma| of any branch), ``gamma_abs_max_min`` (the smallest
    per-branch max: the branch closest to constant), ``conflicting`` (branches with H > 0 at the
    run's own measurement, N = 64 released), ``conflicting_sensitivity`` and ``sensitivity_samples``."""
    columns = ["epoch", "w_max", "gamma_abs_mean", "gamma_abs_min", "gamma_abs_max_min", "conflicting",
               "conflicting_sensitivity", "sensitivity_samples"]
    rows = []
    for r in history:
        if "w_max" not in r:
            continue
        g = pd.DataFrame(r.get("branch_gamma") or [], columns=["gamma_abs_mean", "gamma_abs_min", "gamma_abs_max"])
        branch = [b for b in r.get("bundles") or () if b.get("role") == "branch"]
        rows.append({"epoch": int(r["epoch"]), "w_max": float(r["w_max"]),
                     "gamma_abs_mean": float(g["gamma_abs_mean"].mean()) if len(g) else math.nan,
                     "gamma_abs_min": float(g["gamma_abs_min"].min()) if len(g) else math.nan,
                     "gamma_abs_max_min": float(g["gamma_abs_max"].min()) if len(g) else math.nan,
                     "conflicting": sum(float(b["entropy"]) > 0 for b in branch) if branch else math.nan,
                     "conflicting_sensitivity": len(r.get("sensitivity_conflicting") or ()),
                     "sensitivity_samples": int(r.get("sensitivity_samples", 0))})
    return pd.DataFrame(rows, columns=columns)


def last_sensitivity(history: Sequence[dict]) -> tuple[int, int] | None:
    """``(conflicting branches, samples)`` of the last record carrying the sensitivity count
    (:class:`DiagnosticsCallback`); None for a run trained without the diagnostics."""
    r = next((r for r in reversed(list(history)) if "sensitivity_conflicting" in r), None)
    return None if r is None else (len(r["sensitivity_conflicting"]), int(r["sensitivity_samples"]))


# --------------------------------------------------------------------------- full vs pruned


def compare_full_vs_pruned(model: ConvNet, removed: Iterable[int], test: Dataset, *, input_shape: Sequence[int],
                           batch_size: int = 64, repeats: int = 20, warmup: int = 3,
                           label: str = "without conflicting blocks") -> pd.DataFrame:
    """Rows ``full`` and ``label`` (the net without ``removed``): ``net, blocks, removed,
    parameters, test_acc, inference_ms`` (median ms per batch, both nets timed round-robin by :func:`reproduce.experiments.efficiency.inference_times`)."""
    removed = tuple(sorted(set(int(i) for i in removed)))
    nets = (("full", model, ()), (label, remove_blocks(model, removed), removed))
    # timed round-robin, so a change of machine load hits both nets alike
    seconds = inference_times([net for _, net, _ in nets], [input_shape] * len(nets), batch_size,
                              repeats=repeats, warmup=warmup)
    rows = [{"net": name, "blocks": len(model.blocks) - len(gone), "removed": len(gone),
             "parameters": count_parameters(net), "test_acc": evaluate(net, test)[1], "inference_ms": 1e3 * t}
            for (name, net, gone), t in zip(nets, seconds)]
    return pd.DataFrame(rows, columns=["net", "blocks", "removed", "parameters", "test_acc", "inference_ms"])


# --------------------------------------------------------------------------- caching


def _removed_text(removed: Iterable[int]) -> str:
    return " ".join(str(int(i)) for i in removed)


def _cached_evaluation(path: Path | None, model: ConvNet, test: Dataset, plan: pd.DataFrame, *,
                       progress: bool, desc: str) -> pd.DataFrame:
    """:func:`evaluate_lesions`, reusing ``path`` when it holds exactly ``plan``'s rows."""
    if path is not None and path.exists():
        try:
            old = pd.read_csv(path, keep_default_na=False)
            if list(old.columns) == list(TABLE_COLUMNS) and len(old) == len(plan):
                old["removed"] = [tuple(int(t) for t in str(s).split()) for s in old["removed"]]
                same = (list(old["set"]) == list(plan["set"]) and list(old["k"]) == list(plan["k"])
                        and list(old["draw"]) == list(plan["draw"]) and list(old["removed"]) == list(plan["removed"]))
                if same:
                    return old
        except (ValueError, KeyError, pd.errors.ParserError, pd.errors.EmptyDataError):
            pass  # unreadable or truncated: recompute
    table = evaluate_lesions(model, test, plan, progress=progress, desc=desc)
    if path is not None:
        out = table.copy()
        out["removed"] = [_removed_text(r) for r in out["removed"]]
        atomic_write_text(path, out.to_csv(index=False))
    return table


# --------------------------------------------------------------------------- the study


@dataclass
class LesionResult:
    """Everything one lesion study measured (see :func:`run_lesion_study`)."""

    config: LesionConfig
    run: RunResult
    full_accuracy: float
    blocks: pd.DataFrame
    sets: dict[str, tuple[int, ...]]
    table: pd.DataFrame
    summary: pd.DataFrame
    ranked: pd.DataFrame
    ranked_summary: pd.DataFrame
    removable: dict[str, Any]
    comparison: pd.DataFrame
    history: pd.DataFrame
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def num_blocks(self) -> int:
        return len(self.sets["all"])

    @property
    def conflicting_fraction(self) -> float:
        return len(self.sets["conflicting"]) / max(1, self.num_blocks)

    def describe(self) -> str:
        """A few lines: the net, the full accuracy, the sets, the removable fraction."""
        c = self.config
        r = self.removable
        lines = [
            f"{self.run.model_config.label} (width {c.width:g}) on {c.dataset}: {self.run.epochs_done} epochs, "
            f"status {self.run.status}; test accuracy of the final weights {self.full_accuracy:.4f}",
            f"blocks: {self.num_blocks}; conflicting {len(self.sets['conflicting'])} "
            f"({100 * self.conflicting_fraction:.0f} %), non-conflicting {len(self.sets['non-conflicting'])}",
            f"draws per k: {c.draws}; lesioned nets evaluated: {len(self.table)} (+ {len(self.ranked)} ranked)",
            f"largest removable fraction (set {r['set']!r}, mean within {c.tolerance:g} of full): "
            f"{r['k']}/{self.num_blocks} = {100 * r['fraction']:.0f} %",
        ]
        return "\n".join(lines + self.notes)


def lesion_spec(scale: Scale, config: LesionConfig) -> RunSpec:
    """The training run of the lesion study, declared: the residual net of ``config``, measured
    after every epoch at every tap (:func:`reproduce.metric.bundles.bundle_callback`) and for the
    distance to bundling of every block (:func:`distance_callback`)."""
    cfg = config
    data = DataSpec(cfg.dataset, cfg.seed, cfg.train_limit, content=cfg.data_content)
    mcfg = conv_config("residual", cfg.depth, data, width=cfg.width)
    tcfg = TrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed,
                       **scale.train_options())
    measure = dict(sample_size=cfg.sample_size, seed=cfg.seed)
    # bundles on a fresh batch per measurement (scale.measurement, released); the distance to
    # bundling (this project's addition) on the run's fixed set, so its trend over epochs is smooth
    callbacks = (Hook.to("reproduce.bundles:bundle_callback", samples=scale.measurement, augment=False, **measure),
                 Hook.to("reproduce.lesion:distance_callback", **measure))
    if cfg.diagnostics:  # claim-4 diagnostics (a new hook: the run folder's name changes with it)
        callbacks += (Hook.to("reproduce.lesion:diagnostics_callback", sample_size=cfg.sensitivity_samples,
                              seed=cfg.seed, samples=scale.measurement, augment=False),)
    return RunSpec(scale.name, EXPERIMENT, f"{mcfg.label}-{data.name}-seed{cfg.seed}", mcfg, tcfg, data, callbacks)



def run_specs(scale: Scale, *, seeds: Iterable[int], dataset: str | None = None,
              **overrides: Any) -> list[RunSpec]:
    """The training runs of the lesion study, one per seed, in the order :func:`run_lesion_studies`
    trains them: :func:`lesion_spec` of ``LesionConfig.from_scale(scale, seed=s, dataset=dataset,
    **overrides)`` for each ``s`` in ``seeds`` (a notebook's are ``range(seed, seed + scale.repeats)``)."""
    return [lesion_spec(scale, LesionConfig.from_scale(scale, seed=s, dataset=dataset, **overrides))
            for s in check_seeds(seeds)]


def run_lesion_study(scale: Scale, *, seed: int = 0, dataset: str | None = None, data: DataBundle | None = None,
                     config: LesionConfig | None = None, progress: bool = True, device: str = "auto") -> LesionResult:
    """Train (or reuse) the residual net of ``scale`` and run the whole lesion study on it.

    ``config`` overrides what :meth:`LesionConfig.from_scale` would read from ``scale``; ``data``
    skips loading the dataset (it must be ``config.dataset``). The run lives in
    ``results/<scale>/lesion/``; the per-epoch bundles of every tap and the distances to bundling
    of every block are recorded during training.
    """
    t0 = time.perf_counter()
    cfg = config or LesionConfig.from_scale(scale, seed=seed, dataset=dataset)
    spec = lesion_spec(scale, cfg)
    if data is None:
        data = spec.data.load()
    x, y = measurement_samples(data, min(cfg.sample_size, len(data.train_eval)), cfg.seed)
    folder = spec.run_dir
    run = train_spec(spec, data=data, device=device, progress=progress)
    if run.status == "diverged":
        raise RuntimeError(f"the residual net of the lesion study diverged at epoch {run.diverged_epoch}; "
                           f"no lesion is possible (run folder {folder})")
    model = run.model
    full_acc = evaluate(model, data.test)[1]

    blocks = block_diagnostics(model, x, y, num_classes=data.num_classes, lr=cfg.lr, batch_size=cfg.batch_size)
    every = tuple(int(b) for b in blocks["block"])
    conflicting = tuple(int(b) for b in blocks.loc[blocks["conflicting"], "block"])
    sets = {"conflicting": conflicting,
            "non-conflicting": tuple(b for b in every if b not in conflicting),
            "all": every}
    notes = []
    if not conflicting:
        notes.append("no block is conflicting at the final epoch: set 'conflicting' is empty and has no curve")

    plan = lesion_plan(sets, cfg.draws, seed=cfg.seed, whole_set=cfg.whole_set)

    key = config_hash({"draws": cfg.draws, "seed": cfg.seed, "sets": sets})
    table = _cached_evaluation(folder / f"lesion-{key}.csv", model, data.test, plan, progress=progress,
                               desc="random lesions")
    summary = summarize(table, ddof=cfg.std_ddof)
    rplan = ranked_plan(dict(zip(blocks["block"], blocks["distance"])))
    rkey = config_hash({"ranked": list(rplan["removed"])})
    ranked = _cached_evaluation(folder / f"ranked-{rkey}.csv", model, data.test, rplan, progress=progress,
                                desc="ranked lesions")
    ranked_summary = summarize(ranked, ddof=cfg.std_ddof)

    used = "conflicting" if conflicting else "all"
    frac, k = removable_fraction(summary, full_acc, set_name=used, num_blocks=len(every), tolerance=cfg.tolerance)
    frac_all, k_all = removable_fraction(summary, full_acc, set_name="all", num_blocks=len(every),
                                         tolerance=cfg.tolerance)
    removable = {"set": used, "fraction": frac, "k": k, "fraction_all": frac_all, "k_all": k_all}
    comparison = compare_full_vs_pruned(model, conflicting, data.test,
                                        input_shape=(data.in_channels, data.image_size, data.image_size),
                                        batch_size=cfg.timing_batch, repeats=cfg.timing_repeats,
                                        warmup=cfg.timing_warmup)
    return LesionResult(config=cfg, run=run, full_accuracy=full_acc, blocks=blocks, sets=sets, table=table,
                        summary=summary, ranked=ranked, ranked_summary=ranked_summary, removable=removable,
                        comparison=comparison,
                        history=conflict_history(run.history, run.train_config.steps_per_epoch(len(data.train))),
                        seconds=time.perf_counter() - t0, notes=notes)


# --------------------------------------------------------------------------- several seeds


def over_seed_summary(frame: pd.DataFrame, by: Sequence[str] = ("set", "k"), value: str = "mean") -> pd.DataFrame:
    """The seed aggregate of a per-seed table (one row per ``seed`` and ``by`` group): per ``by``
    group, ``mean``, ``min``, ``max`` of ``value`` over the seeds (NaN left out) and ``seeds``, the
    number of seeds with a finite value. Groups keep the order of their first appearance."""
    by = list(by)
    missing = [c for c in ["seed", *by, value] if c not in frame.columns]
    if missing:
        raise ValueError(f"over_seed_summary needs columns {missing!r}; the table has {list(frame.columns)!r}")
    cols = [*by, "mean", "min", "max", "seeds"]
    if frame.empty:
        return pd.DataFrame(columns=cols)
    if frame.duplicated(subset=["seed", *by]).any():
        raise ValueError(f"the table must hold one row per seed and {by!r}; some rows repeat")
    g = frame.groupby(by, sort=False)[value]
    out = g.agg(mean="mean", min="min", max="max", seeds="count").reset_index()
    return out[cols]


@dataclass
class LesionStudies:
    """The lesion study of every seed (:func:`run_lesion_studies`), in the order of the seeds.

    The tables (``summary``, ``table``, ``ranked``, ``ranked_summary``, ``comparison``,
    ``blocks``, ``history``, ``removable``) stack the seeds' tables with a leading ``seed`` column.
    """

    results: list[LesionResult]

    def __post_init__(self) -> None:
        self.results = list(self.results)
        if not self.results:
            raise ValueError("LesionStudies needs the result of at least one seed, got none")
        seeds = [r.config.seed for r in self.results]
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"every seed must appear once, got seeds {seeds!r}")
        sizes = {r.num_blocks for r in self.results}
        if len(sizes) != 1:
            raise ValueError(f"the seeds' nets must have the same blocks, got block counts {sorted(sizes)!r}")
        tols = {r.config.tolerance for r in self.results}
        if len(tols) != 1:
            raise ValueError(f"the seeds' studies must share one tolerance, got {sorted(tols)!r}")

    @property
    def seeds(self) -> tuple[int, ...]:
        return tuple(r.config.seed for r in self.results)

    @property
    def num_blocks(self) -> int:
        return self.results[0].num_blocks

    @property
    def tolerance(self) -> float:
        return self.results[0].config.tolerance

    @property
    def full_accuracies(self) -> list[float]:
        return [r.full_accuracy for r in self.results]

    def _stack(self, attr: str) -> pd.DataFrame:
        frames = [getattr(r, attr).assign(seed=r.config.seed) for r in self.results]
        out = pd.concat(frames, ignore_index=True)
        return out[["seed", *[c for c in out.columns if c != "seed"]]]

    @property
    def summary(self) -> pd.DataFrame:
        return self._stack("summary")

    @property
    def table(self) -> pd.DataFrame:
        return self._stack("table")

    @property
    def ranked(self) -> pd.DataFrame:
        return self._stack("ranked")

    @property
    def ranked_summary(self) -> pd.DataFrame:
        return self._stack("ranked_summary")

    @property
    def comparison(self) -> pd.DataFrame:
        return self._stack("comparison")

    @property
    def blocks(self) -> pd.DataFrame:
        return self._stack("blocks")

    @property
    def history(self) -> pd.DataFrame:
        return self._stack("history")

    @property
    def diagnostics(self) -> pd.DataFrame:
        """Claim-4 diagnostics per seed and epoch (:func:`diagnostics_history` of each run; empty
        columns for runs trained without them)."""
        frames = [diagnostics_history(r.run.history).assign(seed=r.config.seed) for r in self.results]
        out = pd.concat(frames, ignore_index=True)
        return out[["seed", *[c for c in out.columns if c != "seed"]]]

    @property
    def removable(self) -> pd.DataFrame:
        """Per seed: ``full_accuracy``, the set sizes and the largest removable fractions."""
        rows = [{"seed": r.config.seed, "full_accuracy": r.full_accuracy, "blocks": r.num_blocks,
                 "conflicting": len(r.sets["conflicting"]), "non_conflicting": len(r.sets["non-conflicting"]),
                 "removable_set": r.removable["set"], "removable_k": r.removable["k"],
                 "removable_fraction": r.removable["fraction"], "removable_k_all": r.removable["k_all"],
                 "removable_fraction_all": r.removable["fraction_all"]} for r in self.results]
        return pd.DataFrame(rows)

    def describe(self) -> str:
        """Each seed's :meth:`LesionResult.describe`, under a line naming the seed."""
        parts = [f"seed {r.config.seed}:\n" + "\n".join("  " + line for line in r.describe().splitlines())
                 for r in self.results]
        return f"lesion study over {len(self.results)} seed(s) {list(self.seeds)}\n" + "\n".join(parts)


def run_lesion_studies(scale: Scale, seeds: Iterable[int], *, dataset: str | None = None, progress: bool = True,
                       device: str = "auto", **overrides: Any) -> LesionStudies:
    """:func:`run_lesion_study` once per seed, each on ``LesionConfig.from_scale(scale, seed=s,
    dataset=dataset, **overrides)`` (the runs of :func:`run_specs`), in the order of ``seeds``."""
    results = [run_lesion_study(scale, config=LesionConfig.from_scale(scale, seed=s, dataset=dataset, **overrides),
                                progress=progress, device=device)
               for s in check_seeds(seeds)]
    return LesionStudies(results)


# --------------------------------------------------------------------------- claims


def _at(summary: pd.DataFrame, set_name: str, k: int, column: str = "mean") -> float:
    row = summary[(summary["set"] == set_name) & (summary["k"] == k)]
    return math.nan if row.empty else float(row[column].iloc[0])


def _rule_4a(r: LesionResult) -> tuple[bool | None, float]:
    """(outcome, pruned - full accuracy; NaN without a conflicting block)."""
    conf = r.sets["conflicting"]
    if not conf:
        return None, math.nan
    pruned = float(r.comparison["test_acc"].iloc[1])
    delta = pruned - r.full_accuracy
    return bool(len(conf) / r.num_blocks >= 0.5 and delta >= -r.config.tolerance - 1e-12), delta


def _rule_4b(r: LesionResult) -> tuple[bool | None, dict[str, float]]:
    """(outcome, {k, non, conf, spread}) at ``k*``, the largest ``k`` both sets were lesioned at:
    ``min(|conflicting|, |non-conflicting|)`` with ``whole_set``, one less under the released
    ``k = 1..n-1``; not testable when a set is empty or no ``k`` is common (a set of one block)."""
    conf, non = r.sets["conflicting"], r.sets["non-conflicting"]
    nothing = {"k": math.nan, "non": math.nan, "conf": math.nan, "spread": math.nan}
    if not conf or not non:
        return None, nothing
    common = (set(r.summary.loc[r.summary["set"] == "conflicting", "k"])
              & set(r.summary.loc[r.summary["set"] == "non-conflicting", "k"]))
    if not common:
        return None, {**nothing, "k": 0.0}
    k = int(max(common))
    v = {"k": float(k), "non": _at(r.summary, "non-conflicting", k), "conf": _at(r.summary, "conflicting", k),
         "spread": max(_at(r.summary, "conflicting", k, "std"), _at(r.summary, "non-conflicting", k, "std"))}
    return bool(v["non"] < v["conf"] - v["spread"]), v


def _ranked_rule(means: pd.DataFrame, n: int, tol: float) -> tuple[bool | None, int, float]:
    """(outcome, wins, mean difference) of closest minus farthest over ``k = 1..n-1`` on a frame
    with columns ``set, k, mean``."""
    diffs = [_at(means, "closest", k) - _at(means, "farthest", k) for k in range(1, n)]
    if not diffs:
        return None, 0, math.nan
    wins = sum(d > 0 for d in diffs)
    mean_d = float(np.mean(diffs))
    return bool(wins > len(diffs) / 2 and mean_d > tol), wins, mean_d


def lesion_claims(result: LesionResult) -> list[Claim]:
    """The claims of one seed's study: :func:`lesion_claims_over_seeds` of that seed alone."""
    return lesion_claims_over_seeds(LesionStudies([result]))


def lesion_claims_over_seeds(studies: LesionStudies) -> list[Claim]:
    """The claims table, by rules fixed before any number was seen (the notebook states them).

    Per seed (each seed's own net, sets, draws; *full* is that net's final-weight accuracy):

    * **4a** holds iff at least half of the blocks are conflicting and the net without *all*
      conflicting blocks keeps test accuracy ``>= full - tolerance``; not testable when no block
      is conflicting. Beside it, deciding nothing: the conflicting branches at the last epoch on
      ``sensitivity_samples`` (512) samples (:func:`last_sensitivity`), a sensitivity check of the
      released N = 64 (this project's addition; absent for runs trained without the diagnostics).
    * **4b** holds iff both sets are non-empty and, at ``k*``, the largest lesion size both sets
      were lesioned at (``min(|conflicting|, |non-conflicting|)``, one less under the released
      ``k = 1..n-1``: adapted to that range before any of its numbers was seen), the mean accuracy after removing ``k*`` non-conflicting blocks is
      lower than after removing ``k*`` conflicting ones by more than the larger of the two stds;
      not testable unless both sets are non-empty.
    * **4c (any blocks; this project's proxy)** holds iff removing at least half of all blocks
      at random keeps the mean accuracy ``>= full - tolerance`` (largest removable fraction of set
      ``all`` >= 0.5).
    * **addition** holds iff, over ``k = 1..n-1``, removing the ``k`` blocks closest to bundling
      gives a higher accuracy than removing the ``k`` farthest for more than half of the ``k`` and
      the mean difference exceeds ``tolerance``; not testable with fewer than 2 blocks.

    Rule over seeds: :func:`reproduce.experiments.claims.over_seeds` -- a claim holds iff its rule holds in
    every seed and in its pooled form (where it has one); it does not hold if the rule fails in
    any seed or in the pooled form; otherwise it is not testable. The pooled forms, applied to
    the seed means:

    * **4a** and **4b**: none. Which blocks conflict (and so ``k*``) is a property of each
      trained net; and for 4b the rule on the seed means of its three numbers would follow from
      the rule holding in every seed (the inequality is linear), so it could never decide.
    * **4c**: the rule on the seed-mean curve of set ``all`` (at each ``k`` the mean over seeds of
      the mean over draws) against the mean full accuracy.
    * **addition**: the rule on the seed-mean ``closest`` and ``farthest`` curves.

    The ``measured`` text lists the per-seed outcomes and values; no timing enters it.
    """
    return [_claim_4a(studies), _claim_4b(studies), _claim_4c(studies), _claim_ranked(studies)]


def _vals(studies: LesionStudies, values: Sequence[float], fmt: str) -> str:
    return seed_values(values, fmt, list(studies.seeds))


def _claim_4a(studies: LesionStudies) -> Claim:
    """Row 4a of :func:`lesion_claims_over_seeds`."""
    rs, seeds, n = studies.results, list(studies.seeds), studies.num_blocks
    a = [_rule_4a(r) for r in rs]
    per_a = [h for h, _ in a]
    counts = [len(r.sets["conflicting"]) for r in rs]
    measured = f"{seed_outcomes(per_a, seeds)}; conflicting blocks of {n}: {_vals(studies, counts, '{:.0f}')}"
    if any(counts):
        measured += (f"; test acc without them minus full: {_vals(studies, [d for _, d in a], '{:+.3f}')}"
                     + (" (nan: no conflicting block)" if not all(counts) else ""))
    else:
        measured += "; nothing to remove, claim cannot be tested at this scale"
    measured += _sensitivity_text(studies)
    return Claim("4a: most blocks are conflicting and removing all of them keeps test accuracy",
                 "about 60 % of the layers are conflicting and can be removed with no significant "
                 "increase of the test error", measured, over_seeds(per_a), seeds=len(rs))


def _sensitivity_text(studies: LesionStudies) -> str:
    """The N = 512 count of row 4a's measured text: a sensitivity check beside the released N = 64,
    deciding nothing ("" when no run recorded it)."""
    counts = [last_sensitivity(r.run.history) if r.run is not None else None for r in studies.results]
    if all(c is None for c in counts):
        return ""
    sizes = "/".join(str(n) for n in sorted({c[1] for c in counts if c is not None}))
    values = [math.nan if c is None else c[0] for c in counts]
    return (f"; sensitivity check, not the verdict: conflicting branches at N = {sizes} at the last epoch: "
            f"{_vals(studies, values, '{:.0f}')}")


def _claim_4b(studies: LesionStudies) -> Claim:
    """Row 4b of :func:`lesion_claims_over_seeds`."""
    rs, seeds = studies.results, list(studies.seeds)
    b = [_rule_4b(r) for r in rs]
    per_b = [h for h, _ in b]
    if any(h is not None for h in per_b):
        measured = (f"{seed_outcomes(per_b, seeds)}; at k* = {_vals(studies, [v['k'] for _, v in b], '{:.0f}')}: "
                    f"acc with k* non-conflicting removed {_vals(studies, [v['non'] for _, v in b], '{:.3f}')}, "
                    f"with k* conflicting removed {_vals(studies, [v['conf'] for _, v in b], '{:.3f}')}, "
                    f"larger std {_vals(studies, [v['spread'] for _, v in b], '{:.3f}')}")
    else:
        sizes = ", ".join(f"{s}: {len(r.sets['conflicting'])}/{len(r.sets['non-conflicting'])}"
                          for s, r in zip(seeds, rs))
        measured = (f"not testable: conflicting/non-conflicting blocks per seed {sizes} "
                    f"(both sets must be non-empty, and have a lesion size in common: no k when a set holds "
                    f"one block, since k runs to n-1)")
    return Claim("4b: removing non-conflicting blocks hurts more than removing conflicting ones",
                 "removing non-conflicting layers hurts", measured, over_seeds(per_b), seeds=len(rs))


def _claim_4c(studies: LesionStudies) -> Claim:
    """Row 4c of :func:`lesion_claims_over_seeds`."""
    rs, seeds, tol, n = studies.results, list(studies.seeds), studies.tolerance, studies.num_blocks
    fracs = [float(r.removable["fraction_all"]) for r in rs]
    per_c = [f >= 0.5 for f in fracs]
    curve = over_seed_summary(studies.summary[studies.summary["set"] == "all"])
    frac_pooled, k_pooled = removable_fraction(curve, float(np.mean(studies.full_accuracies)), set_name="all",
                                               num_blocks=n, tolerance=tol)
    pooled_c = bool(frac_pooled >= 0.5)
    measured = (f"{seed_outcomes(per_c, seeds)}; largest fraction of all blocks removable within {tol:g}: "
                f"{_vals(studies, fracs, '{:.2f}')}")
    if len(rs) > 1:
        measured += f"; seed-mean curve: {k_pooled}/{n} = {100 * frac_pooled:.0f} %"
    return Claim("4c (this project's proxy, any blocks): at least half of the blocks can be removed at random",
                 "about 60 % of the layers can be removed with no significant increase of the test error",
                 measured, over_seeds(per_c, pooled_c), seeds=len(rs))


def _claim_ranked(studies: LesionStudies) -> Claim:
    """The addition row of :func:`lesion_claims_over_seeds` (closest to bundling removed first)."""
    rs, seeds, tol, n = studies.results, list(studies.seeds), studies.tolerance, studies.num_blocks
    d = [_ranked_rule(r.ranked_summary, n, tol) for r in rs]
    per_d = [h for h, _, _ in d]
    if n >= 2:
        pooled_d, wins_p, mean_p = _ranked_rule(over_seed_summary(studies.ranked_summary), n, tol)
        measured = (f"{seed_outcomes(per_d, seeds)}; closest better at how many of {n - 1} k: "
                    f"{_vals(studies, [w for _, w, _ in d], '{:.0f}')}; mean difference closest minus farthest "
                    f"(points): {_vals(studies, [100 * m for _, _, m in d], '{:+.1f}')}")
        if len(rs) > 1:
            measured += f"; seed means: closest better at {wins_p}/{n - 1} k, mean {100 * mean_p:+.1f} points"
    else:
        pooled_d, measured = None, "not testable: fewer than 2 blocks"
    return Claim("addition (this project): blocks closest to bundling are removed with less harm",
                 "(not in the paper; a continuous stand-in for 'conflicting')", measured,
                 over_seeds(per_d, pooled_d), seeds=len(rs))


def notebook_jobs(stem: str, scale: Scale, seed: int) -> list[RunSpec]:
    """Notebook 05's runs (:func:`run_specs`) over the seeds ``seed .. seed + scale.repeats - 1``
    (:mod:`reproduce.experiments.notebooks`)."""
    return list(run_specs(scale, seeds=range(seed, seed + scale.repeats), dataset=NOTEBOOK_DEFAULTS[stem]["dataset"]))
