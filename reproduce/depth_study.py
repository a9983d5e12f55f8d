"""Depth study (claim 2) and early detection (claim 3): plain vs residual conv nets across depth.

* :func:`train_conv` trains one plain or residual conv net of the preset's width and measures the
  bundle entropy of **every tap** after every epoch (64 samples: cheap), so that the
  early-detection study reuses the depth-study runs of the same depth instead of retraining.
  The auto-tune study calls it for its fixed-depth baselines; its name and signature are stable.
* :func:`depth_sweep` runs the preset's depths x {plain, residual} x datasets x seeds and returns
  two tidy tables (one row per run; one row per run and epoch).
* :func:`correlations` gives Pearson and Spearman correlations (with p-values) between the
  averaged a^(L) bundle entropy and the test accuracy, per dataset.
* :func:`layer_epoch_matrix`, :func:`conflicting_layers`, :func:`first_detection_epoch` and
  :func:`detection_curve` read a run's per-epoch, per-tap measurements for claim 3.

Choices the specification leaves open (written down here, as PAPER.md asks):

* A run's **test accuracy** is the mean over its last ``P.last_epochs`` measured epochs; its
  **averaged entropy** (the paper's "integral") is the mean of the a^(L) bundle entropy over all
  measured epochs. A diverged run keeps the epochs measured before it diverged; its row stays in
  the tables with ``status == "diverged"`` (and NaN where nothing was measured).
* The run folder is ``results/<scale>/depth/<dataset>-<kind>-<depth>-s<seed>-<hash>``; the hash
  covers the model and training configs and the measurement set-up (dataset, ``train_limit``,
  sample-set size, ``every_tap``), so a changed preset never reuses a stale run.
* A block is **conflicting** when its branch tap has ``H > 0`` (residual nets, PAPER.md); in a net
  without branch taps (plain conv net) when its output tap has ``H > 0``; in an FNN when its
  hidden tap has ``H > 0``. "Layers" in claim 3 are these taps, named by their tap names.
* **First detection epoch** (claim 3): the first epoch ``e`` such that at ``e`` *and every later
  measured epoch* the set of conflicting layers contains the set of conflicting layers of the
  final epoch. Containment (not equality) is used because a detector that flags a superset early
  still finds every layer that ends up conflicting; "and every later epoch" makes a layer that
  flickers in and out count as detected only once it stays. If the final set is empty the answer
  is the first measured epoch (nothing to detect); callers that test claim 3 should require a
  non-empty final set. ``mode="equal"`` asks for equality instead of containment.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from .bundles import BundleCallback
from .data import DataBundle, load_dataset, measurement_samples
from .models import DEPTH_TABLE, ModelConfig, blocks_for_depth, depth_for_blocks
from .reporting import run_dir
from .scales import Scale
from .training import RunResult, TrainConfig, final_test_accuracy, train

__all__ = [
    "CONV_KINDS",
    "EXPERIMENT",
    "RUN_COLUMNS",
    "EPOCH_COLUMNS",
    "CORRELATION_COLUMNS",
    "conv_configs",
    "train_conv",
    "run_row",
    "epoch_rows",
    "depth_sweep",
    "correlations",
    "layer_epoch_matrix",
    "conflicting_layers",
    "first_detection_epoch",
    "detection_curve",
]

CONV_KINDS = ("plain", "residual")
#: experiment folder under ``results/<scale>/``
EXPERIMENT = "depth"
#: columns of :func:`depth_sweep`'s run table, in order
RUN_COLUMNS = (
    "dataset", "kind", "depth", "blocks", "seed", "status", "epochs_done", "diverged_epoch",
    "test_acc", "train_acc", "entropy_mean", "entropy_last", "bundles_mean", "bundles_last",
    "conflicting_last", "num_blocks", "seconds", "run_dir",
)
#: columns of :func:`depth_sweep`'s per-epoch table, in order
EPOCH_COLUMNS = (
    "dataset", "kind", "depth", "seed", "epoch", "a_L_entropy", "a_L_num_bundles", "test_acc",
    "train_acc", "conflicting", "seconds",
)
CORRELATION_COLUMNS = ("dataset", "n", "pearson_r", "pearson_p", "spearman_r", "spearman_p")
_DETECTION_MODES = ("contains", "equal")


# --------------------------------------------------------------------------------------------
# training


def _blocks(blocks_or_depth: int | Sequence[int]) -> tuple[int, int, int, int]:
    if isinstance(blocks_or_depth, (int, np.integer)) and not isinstance(blocks_or_depth, bool):
        return blocks_for_depth(int(blocks_or_depth))
    try:
        blocks = tuple(int(b) for b in blocks_or_depth)  # type: ignore[union-attr]
    except TypeError:
        raise ValueError(
            f"blocks_or_depth must be a depth ({', '.join(map(str, DEPTH_TABLE))}) or 4 block counts, "
            f"got {blocks_or_depth!r}"
        ) from None
    if len(blocks) != 4 or any(b < 0 for b in blocks):
        raise ValueError(f"blocks must be 4 non-negative counts (one per stage), got {blocks_or_depth!r}")
    return blocks  # type: ignore[return-value]


def _check_kind(kind: str) -> None:
    if kind not in CONV_KINDS:
        raise ValueError(f"unknown conv net kind {kind!r}; valid kinds are {', '.join(CONV_KINDS)}")


def conv_configs(P: Scale, kind: str, blocks_or_depth: int | Sequence[int], data: DataBundle,
                 seed: int) -> tuple[ModelConfig, TrainConfig]:
    """The model and training configs :func:`train_conv` uses for ``kind`` at a depth (or blocks)."""
    _check_kind(kind)
    mcfg = ModelConfig(kind, data.num_classes, data.in_channels, data.image_size, _blocks(blocks_or_depth),
                       width=P.width)
    tcfg = TrainConfig(epochs=P.epochs, batch_size=P.batch_size, lr=P.lr, seed=seed)
    return mcfg, tcfg


def _run_label(dataset: str, kind: str, blocks: tuple[int, ...], seed: int) -> str:
    depth = depth_for_blocks(blocks)
    tail = "" if DEPTH_TABLE.get(depth) == tuple(blocks) else "-b" + "-".join(map(str, blocks))
    return f"{dataset}-{kind}-{depth}{tail}-s{seed}"


def train_conv(
    P: Scale,
    kind: str,
    blocks_or_depth: int | Sequence[int],
    *,
    dataset: str | None = None,
    seed: int = 0,
    every_tap: bool = True,
    data: DataBundle | None = None,
    progress: bool = True,
    device: str | None = "auto",
) -> RunResult:
    """Train (or reuse) one ``kind`` conv net (``plain``/``residual``) at the preset's width.

    ``blocks_or_depth`` is a depth of PAPER.md's table or four blocks per stage. ``dataset``
    defaults to ``P.dataset``; ``data`` may pass the already loaded dataset (it must be
    ``load_dataset(dataset, seed=seed, train_limit=P.train_limit)``). After every epoch the bundle
    metric is measured on ``measurement_samples(data, P.sample_size, seed)`` at every tap (or only
    at a^(L) with ``every_tap=False``), adding ``bundles``, ``a_L_entropy`` and ``a_L_num_bundles``
    to the history. The run lives in ``results/<scale>/depth/`` and is reused when finished.
    """
    _check_kind(kind)
    dataset = dataset or P.dataset
    if data is None:
        data = load_dataset(dataset, seed=seed, train_limit=P.train_limit)
    elif data.name != dataset:
        raise ValueError(f"data holds dataset {data.name!r} but dataset={dataset!r} was asked for")
    mcfg, tcfg = conv_configs(P, kind, blocks_or_depth, data, seed)
    x, y = measurement_samples(data, P.sample_size, seed)
    callback = BundleCallback(x, y, num_classes=data.num_classes, lr=P.lr, batch_size=P.batch_size,
                              every_tap=every_tap)
    measure = {"dataset": dataset, "train_limit": P.train_limit, "sample_size": P.sample_size,
               "every_tap": bool(every_tap)}
    label = _run_label(dataset, kind, mcfg.blocks, seed)
    folder = run_dir(P, EXPERIMENT, label, mcfg, tcfg, measure)
    return train(mcfg, data, tcfg, folder, callbacks=[callback], device=device, progress=progress,
                 desc=label)


# --------------------------------------------------------------------------------------------
# tidy tables


def _measured(history: Sequence[dict]) -> list[dict]:
    """The epochs of a history that carry a bundle measurement."""
    return [r for r in history if r.get("a_L_entropy") is not None]


def _mean(values: Iterable[Any]) -> float:
    vals = [float(v) for v in values if v is not None]
    return float(np.mean(vals)) if vals else math.nan


def run_row(run: RunResult, *, dataset: str, seed: int, last_epochs: int) -> dict[str, Any]:
    """One row of the run table (:data:`RUN_COLUMNS`) for a finished, stopped or diverged run."""
    hist = run.history
    measured = _measured(hist)
    cfg = run.model_config
    train_accs = [r["train_acc"] for r in hist if r.get("train_acc") is not None][-max(1, last_epochs):]
    last_sets = conflicting_layers(measured[-1]) if measured and measured[-1].get("bundles") else None
    return {
        "dataset": dataset,
        "kind": cfg.kind,
        "depth": cfg.depth,
        "blocks": "-".join(map(str, cfg.blocks)),
        "seed": seed,
        "status": run.status,
        "epochs_done": run.epochs_done,
        "diverged_epoch": run.diverged_epoch,
        "test_acc": final_test_accuracy(hist, last_epochs),
        "train_acc": _mean(train_accs),
        "entropy_mean": _mean(r["a_L_entropy"] for r in measured),
        "entropy_last": float(measured[-1]["a_L_entropy"]) if measured else math.nan,
        "bundles_mean": _mean(r.get("a_L_num_bundles") for r in measured),
        "bundles_last": float(measured[-1]["a_L_num_bundles"]) if measured else math.nan,
        "conflicting_last": len(last_sets) if last_sets is not None else math.nan,
        "num_blocks": sum(cfg.blocks),
        "seconds": float(sum(r.get("seconds", 0.0) or 0.0 for r in hist)),
        "run_dir": str(run.run_dir) if run.run_dir is not None else "",
    }


def epoch_rows(run: RunResult, *, dataset: str, seed: int) -> list[dict[str, Any]]:
    """Rows of the per-epoch table (:data:`EPOCH_COLUMNS`), one per epoch of the history."""
    rows = []
    cfg = run.model_config
    for r in run.history:
        rows.append({
            "dataset": dataset,
            "kind": cfg.kind,
            "depth": cfg.depth,
            "seed": seed,
            "epoch": int(r["epoch"]),
            "a_L_entropy": r.get("a_L_entropy", math.nan),
            "a_L_num_bundles": r.get("a_L_num_bundles", math.nan),
            "test_acc": r.get("test_acc") if r.get("test_acc") is not None else math.nan,
            "train_acc": r.get("train_acc") if r.get("train_acc") is not None else math.nan,
            "conflicting": len(conflicting_layers(r)) if r.get("bundles") else math.nan,
            "seconds": r.get("seconds", math.nan),
        })
    return rows


def depth_sweep(
    P: Scale,
    *,
    datasets: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    depths: Sequence[int] | None = None,
    kinds: Sequence[str] = CONV_KINDS,
    progress: bool = True,
    device: str | None = "auto",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train (or reuse) every run of the depth study; return ``(runs, per_epoch)``.

    Defaults: ``P.datasets``, seeds ``0..P.repeats-1``, ``P.depths``, both kinds. ``runs`` has one
    row per run (:data:`RUN_COLUMNS`), ``per_epoch`` one row per run and epoch
    (:data:`EPOCH_COLUMNS`). Diverged runs are kept, with their status.
    """
    datasets = tuple(datasets or P.datasets)
    seeds = tuple(range(P.repeats)) if seeds is None else tuple(seeds)
    depths = tuple(depths or P.depths)
    for kind in kinds:
        _check_kind(kind)
    for depth in depths:
        blocks_for_depth(depth)
    runs, epochs = [], []
    for dataset in datasets:
        for seed in seeds:
            data = load_dataset(dataset, seed=seed, train_limit=P.train_limit)
            for kind in kinds:
                for depth in depths:
                    run = train_conv(P, kind, depth, dataset=dataset, seed=seed, data=data,
                                     progress=progress, device=device)
                    runs.append(run_row(run, dataset=dataset, seed=seed, last_epochs=P.last_epochs))
                    epochs.extend(epoch_rows(run, dataset=dataset, seed=seed))
                    del run
    return (pd.DataFrame(runs, columns=list(RUN_COLUMNS)),
            pd.DataFrame(epochs, columns=list(EPOCH_COLUMNS)))


def correlations(runs: pd.DataFrame, *, x: str = "entropy_mean", y: str = "test_acc",
                 by: str = "dataset") -> pd.DataFrame:
    """Pearson and Spearman correlation of ``x`` with ``y`` (with two-sided p-values) per ``by``.

    Rows with a non-finite ``x`` or ``y`` are left out (``n`` counts the rest). With fewer than 3
    rows, or a constant column, the coefficients and p-values are NaN (no warning is raised).
    """
    from scipy import stats

    missing = [c for c in (x, y, by) if c not in runs.columns]
    if missing:
        raise ValueError(f"columns {missing} not in the table; its columns are {list(runs.columns)}")
    out = []
    for key, group in runs.groupby(by, sort=True):
        xs = pd.to_numeric(group[x], errors="coerce").to_numpy(dtype=float)
        ys = pd.to_numeric(group[y], errors="coerce").to_numpy(dtype=float)
        ok = np.isfinite(xs) & np.isfinite(ys)
        xs, ys = xs[ok], ys[ok]
        row = {by: key, "n": int(ok.sum()), "pearson_r": math.nan, "pearson_p": math.nan,
               "spearman_r": math.nan, "spearman_p": math.nan}
        if len(xs) >= 3 and np.ptp(xs) > 0 and np.ptp(ys) > 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pr = stats.pearsonr(xs, ys)
                sr = stats.spearmanr(xs, ys)
            row.update(pearson_r=float(pr[0]), pearson_p=float(pr[1]),
                       spearman_r=float(sr[0]), spearman_p=float(sr[1]))
        out.append(row)
    columns = [by, *CORRELATION_COLUMNS[1:]]
    return pd.DataFrame(out, columns=columns)


# --------------------------------------------------------------------------------------------
# claim 3: layers x epochs


def _history(run: RunResult | Sequence[dict]) -> list[dict]:
    history = run.history if hasattr(run, "history") else run
    return [r for r in history if r.get("bundles")]


def _conflict_kind(rows: Sequence[dict]) -> str | None:
    kinds = {r.get("kind") for r in rows}
    for kind in ("branch", "output", "hidden"):
        if kind in kinds:
            return kind
    return None


def conflicting_layers(record: dict) -> frozenset[str]:
    """Tap names of the conflicting layers of one epoch record (see the module docstring).

    Branch taps if the record has any (residual net), else output taps (plain conv net), else
    hidden taps (FNN), else every tap; a tap is conflicting when its entropy is > 0.
    """
    rows = record.get("bundles") or []
    kind = _conflict_kind(rows)
    return frozenset(r["tap"] for r in rows if (kind is None or r.get("kind") == kind) and r["entropy"] > 0)


def layer_epoch_matrix(run: RunResult | Sequence[dict], *, kind: str | None = None,
                       value: str = "entropy") -> pd.DataFrame:
    """Tap x epoch table of ``value`` (default the bundle entropy) from a run or its history.

    Rows are tap names in network order (index ``tap``), columns the measured epochs. ``kind``
    keeps only taps of that kind (``branch``, ``output``, ``hidden``, ``stem``); None keeps all.
    """
    history = _history(run)
    rows = [{"epoch": int(r.get("epoch", i)), **b} for i, r in enumerate(history) for b in r["bundles"]]
    if not rows:
        return pd.DataFrame(dtype=float)
    frame = pd.DataFrame(rows)
    if value not in frame.columns:
        raise ValueError(f"unknown value {value!r}; valid values are {sorted(set(frame.columns) - {'tap', 'kind'})}")
    if kind is not None:
        kinds = sorted(frame["kind"].unique())
        if kind not in kinds:
            raise ValueError(f"no taps of kind {kind!r}; this run's tap kinds are {kinds}")
        frame = frame[frame["kind"] == kind]
    order = frame.drop_duplicates("tap").sort_values("layer")["tap"].tolist()
    matrix = frame.pivot(index="tap", columns="epoch", values=value).reindex(order)
    matrix.columns.name = "epoch"
    return matrix.astype(float)


def first_detection_epoch(run: RunResult | Sequence[dict], *, mode: str = "contains") -> int | None:
    """The first epoch from which on the final epoch's conflicting layers are visible.

    ``mode="contains"``: the first measured epoch ``e`` such that for ``e`` and every later measured
    epoch the conflicting set contains the final epoch's set. ``mode="equal"``: ... equals it.
    None when the run has no measured epoch. See the module docstring.
    """
    if mode not in _DETECTION_MODES:
        raise ValueError(f"unknown mode {mode!r}; valid modes are {', '.join(_DETECTION_MODES)}")
    history = _history(run)
    if not history:
        return None
    sets = [conflicting_layers(r) for r in history]
    epochs = [int(r.get("epoch", i)) for i, r in enumerate(history)]
    final = sets[-1]
    first = epochs[-1]
    for e, s in zip(reversed(epochs), reversed(sets)):
        if (final <= s) if mode == "contains" else (s == final):
            first = e
        else:
            break
    return first


def detection_curve(run: RunResult | Sequence[dict]) -> pd.DataFrame:
    """Per measured epoch: how many layers conflict, how many of the final epoch's conflicting
    layers are among them (``found``, ``recall`` = found / final), and the Jaccard index of the
    two sets (1 when both are empty)."""
    history = _history(run)
    sets = [conflicting_layers(r) for r in history]
    final = sets[-1] if sets else frozenset()
    rows = []
    for i, (r, s) in enumerate(zip(history, sets)):
        union = s | final
        rows.append({
            "epoch": int(r.get("epoch", i)),
            "conflicting": len(s),
            "final_conflicting": len(final),
            "found": len(s & final),
            "recall": len(s & final) / len(final) if final else math.nan,
            "jaccard": len(s & final) / len(union) if union else 1.0,
        })
    return pd.DataFrame(rows, columns=["epoch", "conflicting", "final_conflicting", "found", "recall", "jaccard"])
