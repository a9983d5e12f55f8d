"""Depth study (claim 2) and early detection (claim 3): plain vs residual conv nets across depth.

* :func:`conv_spec` declares one run (:class:`reproduce.training.runs.RunSpec`), :func:`run_specs` every
  run of the depth study (a sweep trains them as jobs), :func:`early_detection_specs` the runs of
  claim 3 (the depth-study runs at ``scale.early_depth``, one pair per seed) and
  :func:`early_detection_runs` trains them;
* :func:`train_conv` trains one plain or residual conv net of the preset's width and measures the
  bundle entropy of **every tap** after every epoch (64 samples: cheap), so that the
  early-detection study reuses the depth-study runs of the same depth instead of retraining.
  The auto-tune study calls it for its fixed-depth baselines; its name and signature are stable.
* :func:`depth_sweep` runs the preset's depths x {plain, residual} x datasets x seeds and returns
  two tidy tables (one row per run; one row per run and epoch).
* :func:`correlations` gives Pearson and Spearman correlations (with p-values) between the
  averaged a^(L) bundle entropy and the test accuracy, per dataset.
* :func:`layer_epoch_matrix` (:func:`seed_mean_matrix` over seeds), :func:`conflicting_in`,
  :func:`first_detection_epoch` and :func:`detection_curve` read a run's per-epoch, per-tap
  measurements for claim 3; :func:`detection_summary` sums them up per network and seed.
* :func:`claim3_claims` is claim 3 as the paper states it (rules 3a-3c: detectable by the auto-tune
  window, clean early stays clean, the early per-block set on a second batch against the final set;
  :func:`final_state`, :func:`first_conflict`, :func:`clean_early`, :func:`later_fraction`,
  :func:`final_blocks`, :func:`layer_match` (:func:`layer_match_gap`: why a net is not testable),
  :func:`pruning_decision`); :func:`second_batch_callback`
  records the second-batch per-block rows it needs.
* :func:`depth_claims` (claim 2), :func:`claim3_claims` and :func:`early_detection_claims` (claim 3's
  stability rows, stricter than the paper) are the claims tables' rules, fixed before any number
  was seen. Each rule is decided per seed, then over seeds by
  :func:`reproduce.experiments.claims.over_seeds` (every seed, and the pooled form where there is one).

Choices the specification leaves open (written down here):

* Epochs are read from each history record's ``"epoch"`` key, never from its position: a history
  may begin with an **epoch-0 record** (the untrained net, measured in eval mode).
* A run's **test accuracy** is :func:`reproduce.training.final_test_accuracy` (the mean over its
  last ``scale.last_epochs`` trained epochs, epoch >= 1), its training accuracy the same over
  trained epochs; its **averaged entropy** (the paper's "integral") is the mean of the a^(L) bundle
  entropy over all measured records, *including* epoch 0 when the history has it (as the released
  implementation averages; ``docs/method.md#differences``). A diverged run keeps the epochs measured before it diverged; its row stays in
  the tables with ``status == "diverged"`` (and NaN where nothing was measured).
* The run folder is ``results/<scale>/depth/<dataset>-<kind>-<depth>-s<seed>-<hash>``; the hash
  covers the model and training configs and the measurement set-up (dataset, ``train_limit``,
  sample-set size, ``every_tap``), so a changed preset never reuses a stale run.
* A block is **conflicting** by the rule of :func:`reproduce.metric.bundles.layer_rows` (a residual
  block by its branch tap, a plain block by its output tap, an FNN layer by its hidden tap).
  "Layers" in claim 3 are these taps, named by their tap names.
* The **detection horizon** of claim 3's stability rows is the first quarter of training
  (:func:`detection_horizon`: ``ceil(epochs / 4)``); rules 3a-3c use the auto-tune window
  ``Scale.autotune_check_epochs`` instead (``docs/method.md#claim3``).
* **First detection epoch** (claim 3): the first epoch ``e`` such that at ``e`` *and every later
  measured epoch* the set of conflicting layers contains the set of conflicting layers of the
  final epoch. Containment (not equality) is used because a detector that flags a superset early
  still finds every layer that ends up conflicting; "and every later epoch" makes a layer that
  flickers in and out count as detected only once it stays. If the final set is empty the answer
  is the first measured epoch (nothing to detect); callers that test claim 3 should require a
  non-empty final set. ``mode="equal"`` asks for equality instead of containment. **Only trained
  epochs (>= 1) count**: the untrained net of an epoch-0 record can never be "detection during
  training"; :func:`detection_summary` reports what it shows separately (``conflicting_epoch0``,
  ``found_epoch0``). The final epoch is the last trained epoch measured.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from reproduce.metric import bundles
from reproduce.config.seeds import check_seeds
from reproduce.data.datasets import DataBundle, measurement_samples
from reproduce.models.nets import CONV_KINDS, DEPTH_TABLE, ModelConfig, blocks_for_depth, check_conv_kind, conv_config, depth_for_blocks
from reproduce.experiments.claims import Claim, over_seeds, seed_outcomes, seed_values
from reproduce.training.runs import DataSpec, Hook, RunSpec, train_spec
from reproduce.config.scales import Scale
from reproduce.training.loop import RunResult, TrainConfig, final_test_accuracy, trained_records

__all__ = [
    "CONV_KINDS",
    "EXPERIMENT",
    "RUN_COLUMNS",
    "EPOCH_COLUMNS",
    "CORRELATION_COLUMNS",
    "SUMMARY_COLUMNS",
    "conv_configs",
    "conv_spec",
    "run_specs",
    "early_detection_specs",
    "early_detection_runs",
    "train_conv",
    "run_row",
    "epoch_rows",
    "depth_sweep",
    "correlations",
    "layer_epoch_matrix",
    "seed_mean_matrix",
    "conflicting_in",
    "cooks_distance",
    "first_detection_epoch",
    "detection_curve",
    "detection_horizon",
    "detection_summary",
    "depth_claims",
    "early_detection_claims", "NOTEBOOK_DEFAULTS", "notebook_jobs",
    "FINAL_RECORDS", "FINAL_MIN", "LATER_TOLERANCE", "LAYER_OVERLAP", "SECOND_BATCH_DRAW", "SECOND_KEY",
    "STABILITY", "SecondBatchCallback", "second_batch_callback", "final_state", "first_conflict", "clean_early",
    "later_fraction", "final_blocks", "pruning_decision", "layer_match", "layer_match_gap", "claim3_claims"]

#: experiment folder under ``results/<scale>/``
EXPERIMENT = "depth"

#: the defaults of notebooks 03's and 04's parameters cells that decide their runs
#: (:mod:`reproduce.experiments.notebooks`)
NOTEBOOK_DEFAULTS = {"03_depth_vgg_vs_resnet": {"dataset": None}, "04_early_detection": {"dataset": None, "depth": None}}
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
#: columns of :func:`detection_summary`'s summary, in order
SUMMARY_COLUMNS = (
    "kind", "seed", "status", "blocks", "conflicting_final", "first_detection", "first_equal",
    "conflicting_epoch0", "found_epoch0", "a_L_entropy_horizon", "a_L_entropy_final", "a_L_entropy_epoch0",
)
_DETECTION_MODES = ("contains", "equal")
#: the label of the claim-3 rows stricter than the paper (:func:`early_detection_claims`)
STABILITY = "stability (stricter than the paper)"


# --------------------------------------------------------------------------------------------
# training


def conv_configs(scale: Scale, kind: str, blocks_or_depth: int | Sequence[int], data: DataBundle | DataSpec,
                 seed: int) -> tuple[ModelConfig, TrainConfig]:
    """The model and training configs :func:`train_conv` uses for ``kind`` at a depth (or blocks)."""
    mcfg = conv_config(kind, blocks_or_depth, data, width=scale.width)
    tcfg = TrainConfig(epochs=scale.epochs, batch_size=scale.batch_size, lr=scale.lr, seed=seed,
                       **scale.train_options())
    return mcfg, tcfg


def _run_label(dataset: str, kind: str, blocks: tuple[int, ...], seed: int) -> str:
    depth = depth_for_blocks(blocks)
    tail = "" if DEPTH_TABLE.get(depth) == tuple(blocks) else "-b" + "-".join(map(str, blocks))
    return f"{dataset}-{kind}-{depth}{tail}-s{seed}"


def conv_spec(scale: Scale, kind: str, blocks_or_depth: int | Sequence[int], *, dataset: str | None = None,
              seed: int = 0, every_tap: bool = True) -> RunSpec:
    """The run of one ``kind`` conv net (``plain``/``residual``) at the preset's width, declared.

    ``blocks_or_depth`` is a depth of the depth table or four blocks per stage; ``dataset``
    defaults to ``scale.dataset``. After every epoch the bundle metric is measured on
    ``measurement_samples(data, scale.sample_size, seed)`` at every tap (or only at a^(L) with
    ``every_tap=False``), adding ``bundles``, ``a_L_entropy`` and ``a_L_num_bundles`` to the
    history. With ``every_tap`` it also measures every tap on a second batch at epochs
    ``0..scale.autotune_check_epochs`` (:func:`second_batch_callback`, ``bundles_second``: claim 3c);
    that hook is part of the folder hash, so runs from before it name other folders and are
    retrained. The run lives in ``results/<scale>/depth/``.
    """
    data = DataSpec(dataset or scale.dataset, int(seed), scale.train_limit)
    mcfg, tcfg = conv_configs(scale, kind, blocks_or_depth, data, seed)
    measure = Hook.to("reproduce.bundles:bundle_callback", sample_size=scale.sample_size, seed=int(seed),
                      every_tap=bool(every_tap), samples=scale.measurement, augment=False)
    second = Hook.to("reproduce.depth_study:second_batch_callback", sample_size=scale.sample_size, seed=int(seed),
                     window=int(scale.autotune_check_epochs))
    return RunSpec(scale.name, EXPERIMENT, _run_label(data.name, kind, mcfg.blocks, seed), mcfg, tcfg, data,
                   (measure, second) if every_tap else (measure,))


def run_specs(scale: Scale, *, datasets: Sequence[str] | None = None, seeds: Sequence[int] | None = None,
              depths: Sequence[int] | None = None, kinds: Sequence[str] = CONV_KINDS) -> list[RunSpec]:
    """Every run of the depth study: ``scale.datasets`` x seeds ``0..scale.repeats-1`` x
    ``scale.depths`` x both kinds (defaults), in the order :func:`depth_sweep` trains them.

    Notebook 03 trains ``seeds=range(seed, seed + scale.repeats)`` (``seed``: its parameter)."""
    datasets = tuple(datasets or scale.datasets)
    seeds = tuple(range(scale.repeats)) if seeds is None else check_seeds(seeds)
    depths = tuple(depths or scale.depths)
    for kind in kinds:
        check_conv_kind(kind)
    for depth in depths:
        blocks_for_depth(depth)
    return [conv_spec(scale, kind, depth, dataset=dataset, seed=seed)
            for dataset in datasets for seed in seeds for kind in kinds for depth in depths]



def early_detection_specs(scale: Scale, seeds: Iterable[int], *, dataset: str | None = None,
                          depth: int | None = None) -> list[RunSpec]:
    """The runs of claim 3 (notebook 04): for every seed, the plain and the residual net at ``depth``
    (default ``scale.early_depth``) on ``dataset`` (default ``scale.dataset``), seeds outer, kinds
    inner. They are the depth-study runs of that depth (:func:`run_specs`, the same specs and run
    folders), so notebook 03 and 04 share them. Notebook 04 asks for
    ``seeds=range(seed, seed + scale.repeats)``."""
    return run_specs(scale, datasets=(dataset or scale.dataset,), seeds=check_seeds(seeds),
                     depths=(int(depth or scale.early_depth),))


def early_detection_runs(scale: Scale, seeds: Iterable[int], *, dataset: str | None = None,
                         depth: int | None = None, progress: bool = True,
                         device: str | None = "auto") -> dict[tuple[str, int], RunResult]:
    """Train (or reuse) :func:`early_detection_specs`; return the runs keyed by ``(kind, seed)``."""
    out: dict[tuple[str, int], RunResult] = {}
    loaded: dict[DataSpec, DataBundle] = {}
    for spec in early_detection_specs(scale, seeds, dataset=dataset, depth=depth):
        if spec.data not in loaded:
            loaded = {spec.data: spec.data.load()}  # one dataset (one seed's) in memory at a time
        out[(spec.model.kind, spec.data.seed)] = train_spec(spec, data=loaded[spec.data], progress=progress,
                                                            device=device)
    return out


def train_conv(
    scale: Scale,
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
    """Train (or reuse) the run of :func:`conv_spec`; ``data`` may pass the already loaded dataset
    (it must be ``load_dataset(dataset, seed=seed, train_limit=scale.train_limit)``)."""
    spec = conv_spec(scale, kind, blocks_or_depth, dataset=dataset, seed=seed, every_tap=every_tap)
    return train_spec(spec, data=data, device=device, progress=progress)


# --------------------------------------------------------------------------------------------
# tidy tables


def _measured(history: Sequence[dict]) -> list[dict]:
    """The epochs of a history that carry a bundle measurement."""
    return [r for r in history if r.get("a_L_entropy") is not None]


def _epoch(record: dict) -> int:
    """The epoch of a history record, read from its ``"epoch"`` key (0: the untrained net)."""
    if "epoch" not in record:
        raise ValueError(f"a history record without an 'epoch' key (keys {sorted(record)})")
    return int(record["epoch"])



def _mean(values: Iterable[Any]) -> float:
    vals = [float(v) for v in values if v is not None]
    return float(np.mean(vals)) if vals else math.nan


def run_row(run: RunResult, *, dataset: str, seed: int, last_epochs: int) -> dict[str, Any]:
    """One row of the run table (:data:`RUN_COLUMNS`) for a finished, stopped or diverged run."""
    hist = run.history
    measured = _measured(hist)
    cfg = run.model_config
    train_accs = [r["train_acc"] for r in trained_records(hist) if r.get("train_acc") is not None][-max(1, last_epochs):]
    last_sets = conflicting_in(measured[-1]) if measured and measured[-1].get("bundles") else None
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
            "epoch": _epoch(r),
            "a_L_entropy": r.get("a_L_entropy", math.nan),
            "a_L_num_bundles": r.get("a_L_num_bundles", math.nan),
            "test_acc": r.get("test_acc") if r.get("test_acc") is not None else math.nan,
            "train_acc": r.get("train_acc") if r.get("train_acc") is not None else math.nan,
            "conflicting": len(conflicting_in(r)) if r.get("bundles") else math.nan,
            "seconds": r.get("seconds", math.nan),
        })
    return rows


def depth_sweep(
    scale: Scale,
    *,
    datasets: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    depths: Sequence[int] | None = None,
    kinds: Sequence[str] = CONV_KINDS,
    progress: bool = True,
    device: str | None = "auto",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train (or reuse) every run of the depth study; return ``(runs, per_epoch)``.

    Defaults: ``scale.datasets``, seeds ``0..scale.repeats-1``, ``scale.depths``, both kinds. ``runs`` has one
    row per run (:data:`RUN_COLUMNS`), ``per_epoch`` one row per run and epoch
    (:data:`EPOCH_COLUMNS`). Diverged runs are kept, with their status.
    """
    runs, epochs = [], []
    loaded: dict[DataSpec, DataBundle] = {}
    for spec in run_specs(scale, datasets=datasets, seeds=seeds, depths=depths, kinds=kinds):
        if spec.data not in loaded:
            loaded = {spec.data: spec.data.load()}  # one dataset in memory at a time
        run = train_spec(spec, data=loaded[spec.data], progress=progress, device=device)
        runs.append(run_row(run, dataset=spec.data.name, seed=spec.data.seed, last_epochs=scale.last_epochs))
        epochs.extend(epoch_rows(run, dataset=spec.data.name, seed=spec.data.seed))
        del run
    return (pd.DataFrame(runs, columns=list(RUN_COLUMNS)),
            pd.DataFrame(epochs, columns=list(EPOCH_COLUMNS)))


def correlations(runs: pd.DataFrame, *, x: str = "entropy_mean", y: str = "test_acc",
                 by: str | Sequence[str] = "dataset") -> pd.DataFrame:
    """Pearson and Spearman correlation of ``x`` with ``y`` (with two-sided p-values) per ``by``.

    ``by`` is a column or a list of columns (e.g. ``["dataset", "seed"]``: one row per dataset and
    seed); the result starts with those columns. Rows with a non-finite ``x`` or ``y`` are left out
    (``n`` counts the rest). With fewer than 3 rows, or a constant column, the coefficients and
    p-values are NaN (no warning is raised).
    """
    from scipy import stats

    keys = [by] if isinstance(by, str) else list(by)
    if not keys:
        raise ValueError("by must name at least one column")
    missing = [c for c in (x, y, *keys) if c not in runs.columns]
    if missing:
        raise ValueError(f"columns {missing} not in the table; its columns are {list(runs.columns)}")
    out = []
    for key, group in runs.groupby(keys, sort=True):
        xs = pd.to_numeric(group[x], errors="coerce").to_numpy(dtype=float)
        ys = pd.to_numeric(group[y], errors="coerce").to_numpy(dtype=float)
        ok = np.isfinite(xs) & np.isfinite(ys)
        xs, ys = xs[ok], ys[ok]
        row = {**dict(zip(keys, key)), "n": int(ok.sum()), "pearson_r": math.nan, "pearson_p": math.nan,
               "spearman_r": math.nan, "spearman_p": math.nan}
        if len(xs) >= 3 and np.ptp(xs) > 0 and np.ptp(ys) > 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pr = stats.pearsonr(xs, ys)
                sr = stats.spearmanr(xs, ys)
            row.update(pearson_r=float(pr[0]), pearson_p=float(pr[1]),
                       spearman_r=float(sr[0]), spearman_p=float(sr[1]))
        out.append(row)
    columns = [*keys, *CORRELATION_COLUMNS[1:]]
    return pd.DataFrame(out, columns=columns)


# --------------------------------------------------------------------------------------------
# claim 3: layers x epochs


def _history(run: RunResult | Sequence[dict]) -> list[dict]:
    history = run.history if hasattr(run, "history") else run
    return [r for r in history if r.get("bundles")]


def conflicting_in(record: dict) -> frozenset[str]:
    """Tap names of the conflicting layers of one epoch record
    (:func:`reproduce.metric.bundles.conflicting_layers` of its ``bundles``)."""
    return bundles.conflicting_layers(record.get("bundles") or [])


def layer_epoch_matrix(run: RunResult | Sequence[dict], *, role: str | None = None,
                       value: str = "entropy") -> pd.DataFrame:
    """Tap x epoch table of ``value`` (default the bundle entropy) from a run or its history.

    Rows are tap names in network order (index ``tap``), columns the measured epochs (epoch 0, the
    untrained net, included when the history has it). ``role`` keeps only taps of that role
    (``branch``, ``output``, ``hidden``, ``stem``); None keeps all.
    """
    history = _history(run)
    rows = [{"epoch": _epoch(r), **b} for r in history for b in r["bundles"]]
    if not rows:
        return pd.DataFrame(dtype=float)
    frame = pd.DataFrame(rows)
    if value not in frame.columns:
        raise ValueError(f"unknown value {value!r}; valid values are {sorted(set(frame.columns) - {'tap', 'role'})}")
    if role is not None:
        roles = sorted(frame["role"].unique())
        if role not in roles:
            raise ValueError(f"no taps of role {role!r}; this run's tap roles are {roles}")
        frame = frame[frame["role"] == role]
    order = frame.drop_duplicates("tap").sort_values("layer")["tap"].tolist()
    matrix = frame.pivot(index="tap", columns="epoch", values=value).reindex(order)
    matrix.columns.name = "epoch"
    return matrix.astype(float)


def seed_mean_matrix(runs: Iterable[RunResult | Sequence[dict]], *, role: str | None = None,
                     value: str = "entropy") -> pd.DataFrame:
    """The cell-wise mean of :func:`layer_epoch_matrix` over runs (the seeds of one network).

    Taps keep the network order of the first run; a cell a run did not measure (e.g. after it
    diverged) is left out of that cell's mean (NaN when no run measured it).
    """
    mats = [layer_epoch_matrix(r, role=role, value=value) for r in runs]
    if not mats:
        raise ValueError("seed_mean_matrix needs at least one run")
    mats = [m for m in mats if m.size]
    if not mats:
        return pd.DataFrame(dtype=float)
    order = list(dict.fromkeys(t for m in mats for t in m.index))
    epochs = sorted({e for m in mats for e in m.columns})
    stacked = np.stack([m.reindex(index=order, columns=epochs).to_numpy(float) for m in mats])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN cells stay NaN
        mean = np.nanmean(stacked, axis=0)
    out = pd.DataFrame(mean, index=pd.Index(order, name="tap"), columns=pd.Index(epochs, name="epoch"))
    return out


def first_detection_epoch(run: RunResult | Sequence[dict], *, mode: str = "contains") -> int | None:
    """The first trained epoch from which on the final epoch's conflicting layers are visible.

    ``mode="contains"``: the first measured trained epoch ``e`` (``e >= 1``) such that for ``e``
    and every later measured epoch the conflicting set contains the final epoch's set.
    ``mode="equal"``: ... equals it. An epoch-0 record (the untrained net) never counts: it is not
    detection during training. None when the run has no measured trained epoch. See the module
    docstring.
    """
    if mode not in _DETECTION_MODES:
        raise ValueError(f"unknown mode {mode!r}; valid modes are {', '.join(_DETECTION_MODES)}")
    history = trained_records(_history(run))
    if not history:
        return None
    sets = [conflicting_in(r) for r in history]
    epochs = [_epoch(r) for r in history]
    final = sets[-1]
    first = epochs[-1]
    for e, s in zip(reversed(epochs), reversed(sets)):
        if (final <= s) if mode == "contains" else (s == final):
            first = e
        else:
            break
    return first


def _final_set(history: Sequence[dict]) -> frozenset[str]:
    """The conflicting layers of the last measured trained epoch (empty when there is none)."""
    trained = trained_records(history)
    return conflicting_in(trained[-1]) if trained else frozenset()


def detection_curve(run: RunResult | Sequence[dict]) -> pd.DataFrame:
    """Per measured epoch: how many layers conflict, how many of the final epoch's conflicting
    layers are among them (``found``, ``recall`` = found / final), and the Jaccard index of the
    two sets (1 when both are empty). The final epoch is the last trained one; an epoch-0 record
    (the untrained net) gets a row too (epoch 0), for comparison."""
    history = _history(run)
    final = _final_set(history)
    rows = []
    for r in history:
        s = conflicting_in(r)
        union = s | final
        rows.append({
            "epoch": _epoch(r),
            "conflicting": len(s),
            "final_conflicting": len(final),
            "found": len(s & final),
            "recall": len(s & final) / len(final) if final else math.nan,
            "jaccard": len(s & final) / len(union) if union else 1.0,
        })
    return pd.DataFrame(rows, columns=["epoch", "conflicting", "final_conflicting", "found", "recall", "jaccard"])


def detection_horizon(epochs: int) -> int:
    """The last epoch that still counts as "the beginning of training" for claim 3: ``ceil(epochs / 4)``."""
    return math.ceil(int(epochs) / 4)


def _at_epoch(history: Sequence[dict], epoch: int, key: str) -> Any:
    return next((r.get(key) for r in history if _epoch(r) == epoch), None)


def _kind_seed(key: Any, run: RunResult) -> tuple[str, int]:
    if isinstance(key, str):
        return key, int(run.train_config.seed)
    if isinstance(key, tuple) and len(key) == 2 and isinstance(key[0], str):
        return key[0], int(key[1])
    raise ValueError(f"runs must be keyed by (kind, seed) or by kind, got key {key!r}")


def detection_summary(runs: dict[tuple[str, int] | str, RunResult],
                      horizon: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Claim 3 per network and seed: ``(curves, summary)``.

    ``runs`` is keyed by ``(kind, seed)`` (as :func:`early_detection_runs` returns them); a plain
    ``kind`` key takes the seed from the run's training config. ``curves`` stacks
    :func:`detection_curve` of every run (columns ``kind``, ``seed`` added); ``summary`` has one row
    per run (:data:`SUMMARY_COLUMNS`): ``conflicting_final`` (blocks conflicting at the last trained
    epoch), ``first_detection`` / ``first_equal`` (:func:`first_detection_epoch`, trained epochs
    only), ``conflicting_epoch0`` / ``found_epoch0`` (the untrained net of an epoch-0 record: how
    many blocks conflict, how many of the final ones; None without such a record; they never count
    as detection), ``a_L_entropy_horizon`` (H(a^(L)) at epoch ``horizon``, None if not measured),
    ``a_L_entropy_final`` (at the last trained epoch, None if it was not measured) and
    ``a_L_entropy_epoch0`` (the untrained net's, None without an epoch-0 record; reported beside the
    stability rows, never counted).
    """
    curves, summary = [], []
    for key, run in runs.items():
        kind, seed = _kind_seed(key, run)
        measured = _history(run)
        final = _final_set(measured)
        zero = next((r for r in measured if _epoch(r) == 0), None)
        trained = trained_records(run.history)
        curves.append(detection_curve(run).assign(kind=kind, seed=seed))
        summary.append({
            "kind": kind, "seed": seed, "status": run.status, "blocks": sum(run.model_config.blocks),
            "conflicting_final": len(final),
            "first_detection": first_detection_epoch(run),
            "first_equal": first_detection_epoch(run, mode="equal"),
            "conflicting_epoch0": len(conflicting_in(zero)) if zero is not None else None,
            "found_epoch0": len(conflicting_in(zero) & final) if zero is not None else None,
            "a_L_entropy_horizon": _at_epoch(run.history, horizon, "a_L_entropy"),
            "a_L_entropy_final": trained[-1].get("a_L_entropy") if trained else None,
            "a_L_entropy_epoch0": _at_epoch(run.history, 0, "a_L_entropy"),
        })
    curve_columns = ["kind", "seed", "epoch", "conflicting", "final_conflicting", "found", "recall", "jaccard"]
    curves_frame = (pd.concat(curves, ignore_index=True)[curve_columns] if curves
                    else pd.DataFrame(columns=curve_columns))
    return curves_frame, pd.DataFrame(summary, columns=list(SUMMARY_COLUMNS))


# --------------------------------------------------------------------------------------------
# the claims' rules (fixed before any number was seen)


def _kind_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Averaged entropy per depth (rows) and kind (columns ``plain``, ``residual``), mean over the
    frame's runs (one run per seed: the seed mean; NaN runs left out)."""
    by = frame.groupby(["depth", "kind"])["entropy_mean"].mean().unstack("kind")
    return by.reindex(columns=list(CONV_KINDS))


def _deep_plain(by: pd.DataFrame, deepest: int) -> tuple[float, bool | None]:
    """Claim 2a on one table: the plain net's averaged entropy at ``deepest`` and whether it is > 0
    (None when that run is missing or measured nothing)."""
    h = float(by.loc[deepest, "plain"]) if deepest in by.index else math.nan
    return h, (None if math.isnan(h) else h > 0)


def _fewer(by: pd.DataFrame) -> tuple[int, list[int], bool | None]:
    """Claim 2b on one table: (depths where the residual net is lower, the active depths, verdict)."""
    active = by[(by["plain"] > 0) | (by["residual"] > 0)]
    lower = int((active["residual"] < active["plain"]).sum())
    return lower, [int(d) for d in active.index], (lower > len(active) / 2 if len(active) else None)


def _pearson_rule(c: pd.Series) -> bool | None:
    """Claim 2c on one correlation row: Pearson r < 0 with p < 0.05 (None when undefined)."""
    return None if math.isnan(c.pearson_p) else bool(c.pearson_r < 0 and c.pearson_p < 0.05)


def depth_claims(runs: pd.DataFrame) -> list[Claim]:
    """Claim 2 per dataset, from :func:`depth_sweep`'s run table (one row per run and seed).

    Per seed (that seed's runs only):

    * deep plain nets develop conflicting bundles: holds iff the plain net at the dataset's deepest
      depth has an averaged a^(L) entropy > 0 (not testable when that run is missing or measured
      nothing);
    * residual nets develop fewer: holds iff, over the depths where either kind has an averaged
      entropy > 0, the residual net's is lower at more than half of them (not testable when no
      depth has one);
    * entropy vs test accuracy: holds iff the Pearson correlation of averaged entropy and test
      accuracy over the seed's runs (both kinds, every depth) has r < 0 with p < 0.05 (not testable
      when it is undefined: fewer than 3 runs or a constant column).

    Pooled form: the first two rules applied to the seed-mean averaged entropy per (kind, depth);
    the third to the correlation over all seeds' runs together. Rule over seeds
    (:func:`reproduce.experiments.claims.over_seeds`): a row holds iff its rule holds in every seed and in
    the pooled form, does not hold if it fails in any seed or in the pooled form, else it is not
    testable. Spearman's rho is reported beside Pearson's r but does not decide.
    """
    missing = [c for c in ("dataset", "kind", "depth", "seed", "entropy_mean", "test_acc") if c not in runs.columns]
    if missing:
        raise ValueError(f"columns {missing} not in the run table; its columns are {list(runs.columns)}")
    return [row(name, frame) for name, frame in runs.groupby("dataset")
            for row in (_claim_deep_plain, _claim_residual_fewer, _claim_correlation)]


def _seeds_of(frame: pd.DataFrame) -> list[int]:
    return sorted(int(s) for s in frame["seed"].unique())


def _claim_deep_plain(name: str, frame: pd.DataFrame) -> Claim:
    """Row "deep plain nets develop conflicting bundles" of :func:`depth_claims`."""
    seeds = _seeds_of(frame)
    pooled = _kind_table(frame)
    deepest = int(pooled.index.max())
    deep = {s: _deep_plain(_kind_table(frame[frame["seed"] == s]), deepest) for s in seeds}
    h_pooled, deep_pooled = _deep_plain(pooled, deepest)
    outcomes = [deep[s][1] for s in seeds]
    return Claim(
        f"{name}: deep plain nets develop conflicting bundles", "deep plain networks develop them",
        f"plain depth {deepest}: averaged a^(L) entropy {seed_values([deep[s][0] for s in seeds], seeds=seeds)}"
        + (f"; seed mean {h_pooled:.3f}" if len(seeds) > 1 else "") + f"; {seed_outcomes(outcomes, seeds)}",
        over_seeds(outcomes, deep_pooled), seeds=len(seeds))


def _claim_residual_fewer(name: str, frame: pd.DataFrame) -> Claim:
    """Row "residual nets develop fewer conflicts" of :func:`depth_claims`."""
    seeds = _seeds_of(frame)
    fewer = {s: _fewer(_kind_table(frame[frame["seed"] == s])) for s in seeds}
    lower_p, active_p, fewer_pooled = _fewer(_kind_table(frame))
    outcomes = [fewer[s][2] for s in seeds]
    if len(seeds) > 1:
        each = "; ".join(f"seed {s}: {fewer[s][0]} of {len(fewer[s][1])} {fewer[s][1]}" for s in seeds)
        text = (f"residual lower than plain at k of the m depths with a conflict [depths]: {each}; "
                f"seed mean: {lower_p} of {len(active_p)} {active_p}")
    else:
        text = f"residual lower at {lower_p} of {len(active_p)} depths with a conflict {active_p}"
    return Claim(f"{name}: residual nets develop fewer conflicts", "residual networks much less",
                 f"{text}; {seed_outcomes(outcomes, seeds)}", over_seeds(outcomes, fewer_pooled), seeds=len(seeds))


def _claim_correlation(name: str, frame: pd.DataFrame) -> Claim:
    """Row "bundle entropy vs test accuracy" of :func:`depth_claims`."""
    seeds = _seeds_of(frame)
    corr = {s: correlations(frame[frame["seed"] == s]).iloc[0] for s in seeds}
    c = correlations(frame).iloc[0]
    outcomes = [_pearson_rule(corr[s]) for s in seeds]
    pooled_text = (f"Pearson r = {c.pearson_r:.3f} (p = {c.pearson_p:.2g}), "
                   f"Spearman rho = {c.spearman_r:.3f} (p = {c.spearman_p:.2g})")
    if len(seeds) > 1:
        text = (f"per seed Pearson r {seed_values([corr[s].pearson_r for s in seeds], seeds=seeds)}, "
                f"p {seed_values([corr[s].pearson_p for s in seeds], fmt='{:.2g}', seeds=seeds)}, "
                f"n {seed_values([corr[s].n for s in seeds], fmt='{:.0f}', seeds=seeds)}; "
                f"all {int(c.n)} runs pooled: {pooled_text}")
    else:
        text = f"{pooled_text}, n = {int(c.n)}"
    return Claim(f"{name}: bundle entropy vs test accuracy", "negative correlation",
                 f"{text}; {seed_outcomes(outcomes, seeds)}", over_seeds(outcomes, _pearson_rule(c)), seeds=len(seeds))


def _number(v: Any) -> float:
    return math.nan if v is None or pd.isna(v) else float(v)


def early_detection_claims(summary: pd.DataFrame, *, horizon: int, depth: int) -> list[Claim]:
    """The stability rows of claim 3 (labelled :data:`STABILITY`: stricter than the paper, whose
    rules are :func:`claim3_claims`), from :func:`detection_summary`'s summary (one row per net and seed).

    Per seed:

    * the plain net's conflicting layers are visible early: holds iff its first detection epoch
      (trained epochs only: the untrained net of an epoch-0 record never counts as detection) is
      <= ``horizon``; not testable when it has no conflicting layer at its last trained epoch (or
      the seed has no plain run);
    * a^(L) at the horizon predicts the end: holds iff for every net of the seed, H(a^(L)) > 0 at
      epoch ``horizon`` exactly when it is > 0 at the last trained epoch; not testable when a net
      was not measured at both epochs. The untrained net's H(a^(L)) (epoch 0) is reported beside
      it and decides nothing.

    Rule over seeds (:func:`reproduce.experiments.claims.over_seeds`, no pooled form): a row holds iff its
    rule holds in every seed, does not hold if it fails in any, else it is not testable.
    """
    missing = [c for c in SUMMARY_COLUMNS if c not in summary.columns]
    if missing:
        raise ValueError(f"columns {missing} not in the summary; its columns are {list(summary.columns)}")
    if summary.empty:
        raise ValueError("the summary has no run")
    return [_claim_visible_early(summary, horizon, depth), _claim_horizon_predicts(summary, horizon, depth)]


def _net_row(summary: pd.DataFrame, kind: str, seed: int) -> pd.Series | None:
    hit = summary[(summary["kind"] == kind) & (summary["seed"] == seed)]
    return hit.iloc[0] if len(hit) else None


def _claim_visible_early(summary: pd.DataFrame, horizon: int, depth: int) -> Claim:
    """Row "conflicting layers visible early" of :func:`early_detection_claims`."""
    seeds = sorted(int(s) for s in summary["seed"].unique())
    plain = {s: _net_row(summary, "plain", s) for s in seeds}
    visible = []
    for s in seeds:
        r = plain[s]
        fd = None if r is None else _number(r.first_detection)
        ok = r is not None and not math.isnan(fd) and r.conflicting_final > 0
        visible.append(bool(fd <= horizon) if ok else None)
    final = [_number(None if plain[s] is None else plain[s].conflicting_final) for s in seeds]
    first = [_number(None if plain[s] is None else plain[s].first_detection) for s in seeds]
    blocks = sorted({int(r.blocks) for r in plain.values() if r is not None})
    text = (f"plain net ({'/'.join(map(str, blocks)) or 'n/a'} blocks): conflicting blocks at the end "
            f"{seed_values(final, fmt='{:.3g}', seeds=seeds)}; first detection epoch (trained epochs) "
            f"{seed_values(first, fmt='{:.3g}', seeds=seeds)} (horizon {horizon})")
    zero = [_number(None if plain[s] is None else plain[s].found_epoch0) for s in seeds]
    if any(not math.isnan(v) for v in zero):
        text += f"; untrained net (epoch 0, not counted): {seed_values(zero, fmt='{:.3g}', seeds=seeds)} of them conflicting"
    return Claim(f"{STABILITY}: plain depth {depth}, conflicting layers visible early",
                 "conflicting layers can be detected in the first epochs",
                 f"{text}; {seed_outcomes(visible, seeds)}", over_seeds(visible), seeds=len(seeds))


def _claim_horizon_predicts(summary: pd.DataFrame, horizon: int, depth: int) -> Claim:
    """Row "a^(L) conflict at the horizon predicts the final one" of :func:`early_detection_claims`."""
    seeds = sorted(int(s) for s in summary["seed"].unique())
    agree = []
    for s in seeds:
        rows = summary[summary["seed"] == s]
        both = [(_number(r.a_L_entropy_horizon), _number(r.a_L_entropy_final)) for _, r in rows.iterrows()]
        measured = all(not math.isnan(h) and not math.isnan(f) for h, f in both)
        agree.append(all((h > 0) == (f > 0) for h, f in both) if measured else None)
    parts = []
    for k in dict.fromkeys(summary["kind"]):
        at = [_net_row(summary, k, s) for s in seeds]
        hh = [_number(None if r is None else r.a_L_entropy_horizon) for r in at]
        hf = [_number(None if r is None else r.a_L_entropy_final) for r in at]
        h0 = [_number(None if r is None else r.a_L_entropy_epoch0) for r in at]
        zero = (f", {seed_values(h0, seeds=seeds)} at epoch 0 (untrained, not counted)"
                if any(not math.isnan(v) for v in h0) else "")
        parts.append(f"{k}: H(a^(L)) {seed_values(hh, seeds=seeds)} at epoch {horizon}, "
                     f"{seed_values(hf, seeds=seeds)} at the end{zero}")
    return Claim(f"{STABILITY}: depth {depth}, a^(L) conflict at epoch {horizon} predicts the final one",
                 "conflicts are visible at the start of training",
                 "; ".join(parts) + f"; {seed_outcomes(agree, seeds)}", over_seeds(agree), seeds=len(seeds))


# --------------------------------------------------------------------------------------------
# claim 3 as the paper states it (rules 3a, 3b, 3c; written before any number was computed)

#: the final state of a net: the last ``FINAL_RECORDS`` trained records, of which at least
#: ``FINAL_MIN`` must agree (rules 3a, 3b and the final set F of 3c)
FINAL_RECORDS, FINAL_MIN = 4, 3
#: rule 3b: a net clean early may conflict in at most this fraction of its records after the window
LATER_TOLERANCE = 0.05
#: rule 3c: the early set S must cover this share of F, and this share of S must be in F
LAYER_OVERLAP = 0.8
#: the draw of :func:`reproduce.data.measurement_samples` of the second batch at epoch ``e`` is
#: ``SECOND_BATCH_DRAW + e``: a batch no epoch's first measurement (``draw=e``) uses
SECOND_BATCH_DRAW = 1_000_000
#: the history key of the second-batch per-block measurement (:func:`second_batch_callback`)
SECOND_KEY = "bundles_second"
_PRUNE_RULES = ("paper", "revised")


class SecondBatchCallback:
    """Callback ``(model, epoch, record)``: at epochs ``0..window`` measures every tap on another
    fresh batch, ``measurement_samples(data, n, seed, draw=SECOND_BATCH_DRAW + epoch)``, and stores
    the tap rows under ``record["bundles_second"]`` (the per-block pass auto-tune makes after an
    a^(L) trigger, on a second batch). Later epochs are left alone (nothing measured)."""

    def __init__(self, data: Any, *, n: int, seed: int, window: int, num_classes: int, lr: float,
                 batch_size: int):
        self.window = int(window)
        self.measure = bundles.BundleCallback(
            None, None, num_classes=num_classes, lr=lr, batch_size=batch_size, every_tap=True,
            draw=lambda epoch: measurement_samples(data, int(n), int(seed), draw=SECOND_BATCH_DRAW + epoch))

    def __call__(self, model: Any, epoch: int, record: dict) -> None:
        if int(epoch) > self.window:
            return
        scratch: dict = {"epoch": int(epoch)}
        self.measure(model, int(epoch), scratch)
        record[SECOND_KEY] = scratch["bundles"]


def second_batch_callback(data: Any, spec: Any, *, sample_size: int, seed: int, window: int) -> SecondBatchCallback:
    """The :class:`SecondBatchCallback` a depth-study run declares (hook name
    ``reproduce.depth_study:second_batch_callback``), measuring ``min(sample_size, training set)`` samples
    at epochs ``0..window`` (``Scale.autotune_check_epochs``)."""
    if isinstance(window, bool) or not isinstance(window, int) or window < 0:
        raise ValueError(f"window must be an int >= 0 (the auto-tune check window), got {window!r}")
    n = min(int(sample_size), len(data.train_eval))
    return SecondBatchCallback(data, n=n, seed=seed, window=window, num_classes=data.num_classes,
                               lr=spec.train.lr, batch_size=spec.train.batch_size)


def _a_l(history: Sequence[dict]) -> list[tuple[int, float]]:
    """``(epoch, H(a^(L)))`` of the measured trained records, in epoch order."""
    return [(_epoch(r), float(r["a_L_entropy"])) for r in trained_records(_measured(history))]


def final_state(history: Sequence[dict]) -> str | None:
    """``"conflicting"`` when H(a^(L)) > 0 in at least ``FINAL_MIN`` of the last ``FINAL_RECORDS``
    measured trained records, ``"clean"`` when H = 0 in at least that many, else ``"mixed"``; None
    (not testable) with fewer than ``FINAL_RECORDS`` such records."""
    tail = [h for _, h in _a_l(history)][-FINAL_RECORDS:]
    if len(tail) < FINAL_RECORDS:
        return None
    positive = sum(h > 0 for h in tail)
    return "conflicting" if positive >= FINAL_MIN else ("clean" if len(tail) - positive >= FINAL_MIN else "mixed")


def first_conflict(history: Sequence[dict], window: int) -> int | None:
    """The first trained epoch ``1..window`` with H(a^(L)) > 0 (None if there is none)."""
    return next((e for e, h in _a_l(history) if 1 <= e <= window and h > 0), None)


def clean_early(history: Sequence[dict], window: int) -> bool | None:
    """True when H(a^(L)) = 0 at every epoch ``1..window``, False when it is > 0 at one of them,
    None when some epoch of ``1..window`` was not measured (and none of the measured ones conflicts)."""
    early = {e: h for e, h in _a_l(history) if 1 <= e <= window}
    if any(h > 0 for h in early.values()):
        return False
    return True if set(early) == set(range(1, window + 1)) else None


def later_fraction(history: Sequence[dict], window: int) -> float:
    """The fraction of the measured trained records after epoch ``window`` with H(a^(L)) > 0 (NaN if none)."""
    later = [h for e, h in _a_l(history) if e > window]
    return sum(h > 0 for h in later) / len(later) if later else math.nan


def final_blocks(history: Sequence[dict]) -> frozenset[str] | None:
    """F of rule 3c: the blocks conflicting in at least ``FINAL_MIN`` of the last ``FINAL_RECORDS``
    measured trained records (first-batch per-block rows); None with fewer records."""
    tail = trained_records(_history(history))[-FINAL_RECORDS:]
    if len(tail) < FINAL_RECORDS:
        return None
    sets = [conflicting_in(r) for r in tail]
    return frozenset(t for t in frozenset().union(*sets) if sum(t in s for s in sets) >= FINAL_MIN)


def pruning_decision(rows: Sequence[dict], conflicting: Iterable[str], rule: str) -> tuple[int, ...]:
    """The blocks per stage a pruning pass would keep, given the per-block tap ``rows`` of one
    measurement (their ``stage`` tells each block's stage) and the tap names judged ``conflicting``.

    ``rule="paper"``: every stage keeps its non-conflicting blocks; ``rule="revised"``: only the
    first stage holding a conflicting block is cut to its non-conflicting blocks, the others keep
    all theirs: auto-tune's two pruning steps (:func:`reproduce.experiments.autotune.prune_all_stages`,
    :func:`~reproduce.experiments.autotune.prune_blocks`), given tap sets instead of entropies.
    """
    from reproduce.experiments.autotune import prune_all_stages, prune_blocks  # autotune imports this module

    if rule not in _PRUNE_RULES:
        raise ValueError(f"unknown rule {rule!r}; valid rules are {', '.join(_PRUNE_RULES)}")
    blocks = [r for r in bundles.layer_rows(rows) if r.get("stage") is not None]
    if not blocks:
        raise ValueError("the rows hold no block with a stage (an FNN or a stem-only net has no stages to prune)")
    bad = set(conflicting) - {str(r["tap"]) for r in blocks}
    if bad:
        raise ValueError(f"conflicting taps {sorted(bad)} are not blocks of these rows")
    per_block = [int(r["stage"]) for r in blocks]
    counts = tuple(per_block.count(st) for st in range(4))
    entropies = [1.0 if str(r["tap"]) in set(conflicting) else 0.0 for r in blocks]  # H > 0 iff conflicting
    step = prune_all_stages if rule == "paper" else prune_blocks
    new, _ = step(counts, per_block, entropies)
    return tuple(new[st] for st in sorted(set(per_block)))


def _rule_3a(histories: Sequence[Sequence[dict]], window: int) -> bool | None:
    """3a on one seed's nets; None when no net ends conflicting."""
    ending = [h for h in histories if final_state(h) == "conflicting"]
    return all(first_conflict(h, window) is not None for h in ending) if ending else None


def _rule_3b(histories: Sequence[Sequence[dict]], window: int) -> bool | None:
    """3b on one seed's nets; None when no net is clean at every epoch 1..window with its end
    readable (at least ``FINAL_RECORDS`` trained records, some after the window)."""
    clean = [h for h in histories if clean_early(h, window) is True and final_state(h) is not None
             and not math.isnan(later_fraction(h, window))]
    if not clean:
        return None
    return all(later_fraction(h, window) <= LATER_TOLERANCE and final_state(h) == "clean" for h in clean)


def layer_match_gap(history: Sequence[dict], window: int) -> str | None:
    """Why rule 3c cannot be tested on one net (None when it can), checked in this order: a^(L)
    clean at every epoch ``1..window``; fewer than ``FINAL_RECORDS`` trained records (F undefined);
    F empty; no second-batch record at e*."""
    e = first_conflict(history, window)
    if e is None:
        return f"a^(L) clean at epochs 1..{window}"
    final = final_blocks(history)
    if final is None:
        return f"fewer than {FINAL_RECORDS} trained records"
    if not final:
        return "final set F empty"
    if not any(_epoch(r) == e and r.get(SECOND_KEY) for r in history):
        return f"no second-batch record at e*={e}"
    return None


def layer_match(history: Sequence[dict], window: int) -> dict[str, Any] | None:
    """Rule 3c on one net: S (second-batch per-block set at e*, the first epoch <= ``window`` where
    a^(L) conflicts) against F (:func:`final_blocks`). None (not testable) when a^(L) never conflicts
    at 1..window, when e* has no second-batch record, or when F is undefined or empty
    (:func:`layer_match_gap` says which). Else a dict:
    ``epoch``, ``early``/``final`` (|S|, |F|), ``recall`` = |S∩F|/|F|, ``precision`` = |S∩F|/|S|
    (0 when S is empty), ``holds`` (both >= ``LAYER_OVERLAP``) and ``same_paper``/``same_revised``
    (whether :func:`pruning_decision` from S equals the one from F)."""
    if layer_match_gap(history, window) is not None:
        return None
    e = first_conflict(history, window)
    rows = next(r for r in history if _epoch(r) == e and r.get(SECOND_KEY))[SECOND_KEY]
    final = final_blocks(history)
    early = bundles.conflicting_layers(rows)
    common = len(early & final)
    recall, precision = common / len(final), (common / len(early) if early else 0.0)
    same = {f"same_{rule}": pruning_decision(rows, early, rule) == pruning_decision(rows, final, rule)
            for rule in _PRUNE_RULES}
    return {"epoch": e, "early": len(early), "final": len(final), "recall": recall, "precision": precision,
            "holds": recall >= LAYER_OVERLAP and precision >= LAYER_OVERLAP, **same}


def _rule_3c(histories: Sequence[Sequence[dict]], window: int) -> tuple[bool | None, list[dict]]:
    """3c on one seed's nets: holds iff it holds for every testable net; None when none is testable."""
    matches = [m for m in (layer_match(h, window) for h in histories) if m is not None]
    return (all(m["holds"] for m in matches) if matches else None), matches


def _text(value: Any, missing: str) -> str:
    """``value`` as text, ``missing`` for None (the claims rows' wording of "nothing there")."""
    return missing if value is None else str(value)


def _by_seed(runs: dict[Any, Any]) -> dict[int, dict[str, list[dict]]]:
    """``{seed: {kind: history}}`` from runs keyed by ``(kind, seed)`` (a RunResult or a history each)."""
    out: dict[int, dict[str, list[dict]]] = {}
    for key, run in runs.items():
        if not (isinstance(key, tuple) and len(key) == 2 and isinstance(key[0], str)):
            raise ValueError(f"runs must be keyed by (kind, seed), got key {key!r}")
        history = list(run.history if hasattr(run, "history") else run)
        out.setdefault(int(key[1]), {})[key[0]] = history
    if not out:
        raise ValueError("claim 3 needs at least one run")
    return dict(sorted(out.items()))


def claim3_claims(runs: dict[tuple[str, int], Any], *, window: int, depth: int) -> list[Claim]:
    """Claim 3 as the paper states it ("conflicting layers are detected at the beginning of
    training"), from the depth-study runs keyed by ``(kind, seed)``; ``window`` is W =
    ``Scale.autotune_check_epochs``. Rules, fixed before any number was computed; "ends conflicting"
    means H(a^(L)) > 0 in at least 3 of the last 4 measured trained records, "ends clean" H = 0 in
    at least 3 of them (:func:`final_state`). Per seed:

    * 3a, detectable early: every net of the seed that ends conflicting has H(a^(L)) > 0 at some
      trained epoch <= W. Not testable when no net of the seed ends conflicting.
    * 3b, clean early means clean later (auto-tune's stopping premise): every net with H(a^(L)) = 0
      at all epochs 1..W has H > 0 in at most 5 % of its later records and ends clean. Not testable
      when no net of the seed is clean at all of 1..W (a net whose end cannot be read, with fewer
      than 4 trained records or none after W, is left out).
    * 3c, the layers: for every net where a^(L) conflicts at some epoch <= W, take the first such
      epoch e*, the per-block conflicting set S measured there on a second batch
      (:func:`second_batch_callback`) and the final set F (blocks conflicting in at least 3 of the
      last 4 records); the net passes iff |S∩F|/|F| >= 0.8 and |S∩F|/|S| >= 0.8. The seed passes iff
      every such net passes. Not testable when no net of the seed has one (a^(L) never conflicts
      <= W, no second-batch record at e*, or F empty). Reported beside it, deciding nothing: whether
      the pruning decision from S equals the one from F (:func:`pruning_decision`, "paper" and
      "revised" rules).

    Over seeds: :func:`reproduce.experiments.claims.over_seeds` (no pooled form).
    """
    seeds = _by_seed(runs)
    order = list(seeds)
    out = []
    a = [_rule_3a(list(nets.values()), window) for nets in seeds.values()]
    firsts = "; ".join(f"{k}: " + "/".join(_text(first_conflict(seeds[s][k], window), "none")
                                           for s in order if k in seeds[s])
                       for k in dict.fromkeys(k for nets in seeds.values() for k in nets))
    unreadable = f"unreadable (< {FINAL_RECORDS} trained records)"
    ends = "; ".join(f"seed {s}: " + ", ".join(f"{k} {_text(final_state(h), unreadable)}" for k, h in nets.items())
                     for s, nets in seeds.items())
    out.append(Claim(f"depth {depth}, 3a: conflicts detectable by epoch {window}",
                     "conflicting layers are detected at the beginning of training",
                     f"first epoch <= {window} with H(a^(L)) > 0 per seed, {firsts}; end states {ends}; "
                     f"{seed_outcomes(a, order)}", over_seeds(a), seeds=len(order)))
    b = [_rule_3b(list(nets.values()), window) for nets in seeds.values()]
    later = "; ".join(f"seed {s}: " + ", ".join(f"{k} clean early {clean_early(h, window)}, later conflicting "
                                                   f"{later_fraction(h, window):.0%}" for k, h in nets.items())
                      for s, nets in seeds.items())
    out.append(Claim(f"depth {depth}, 3b: clean by epoch {window} stays clean",
                     "a net without conflicts at the start trains without them (auto-tune's premise)",
                     f"{later}; {seed_outcomes(b, order)}", over_seeds(b), seeds=len(order)))
    out.append(_claim_3c(seeds, window, depth))
    return out


def _claim_3c(seeds: dict[int, dict[str, list[dict]]], window: int, depth: int) -> Claim:
    """Row 3c of :func:`claim3_claims`."""
    outcomes, parts = [], []
    for s, nets in seeds.items():
        holds, _ = _rule_3c(list(nets.values()), window)
        outcomes.append(holds)
        for k, h in nets.items():
            m = layer_match(h, window)
            parts.append(f"seed {s} {k}: not testable ({layer_match_gap(h, window)})" if m is None else
                         f"seed {s} {k}: e*={m['epoch']}, |S|={m['early']}, |F|={m['final']}, "
                         f"recall {m['recall']:.2f}, precision {m['precision']:.2f}, same pruning "
                         f"paper {m['same_paper']} / revised {m['same_revised']}")
    return Claim(f"depth {depth}, 3c: early per-block set matches the final one",
                 "the conflicting layers themselves are found early",
                 "; ".join(parts) + f"; {seed_outcomes(outcomes, list(seeds))}", over_seeds(outcomes),
                 seeds=len(seeds))


def notebook_jobs(stem: str, scale: Scale, seed: int) -> list[RunSpec]:
    """Notebook 03's runs (:func:`run_specs`) or 04's (:func:`early_detection_specs`: the plain and
    residual net at ``scale.early_depth``, runs of 03) over the seeds ``seed .. seed + scale.repeats - 1``
    (:mod:`reproduce.experiments.notebooks`)."""
    seeds = range(seed, seed + scale.repeats)
    if stem == "04_early_detection":
        return list(early_detection_specs(scale, seeds))
    return list(run_specs(scale, seeds=seeds))


def cooks_distance(x: Sequence[float], y: Sequence[float]) -> np.ndarray:
    """Cook's distance of every point of the least-squares line of ``y`` on ``x``: how far the fit
    moves without that point, ``D_i = e_i**2 h_i / (2 s**2 (1 - h_i)**2)`` with the residual
    ``e_i``, the leverage ``h_i = 1/n + (x_i - mean)**2 / sum((x - mean)**2)`` and
    ``s**2 = sum(e**2) / (n - 2)``. A point of leverage 1 (the only one at its ``x``) gets ``inf``;
    a perfect fit gives 0 elsewhere. Needs at least 3 points and more than one ``x`` value."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 3 or np.ptp(x) == 0:
        raise ValueError(f"need x and y of one equal length >= 3 with more than one x value, got {x.shape}, {y.shape}")
    lev = 1 / len(x) + (x - x.mean()) ** 2 / ((x - x.mean()) ** 2).sum()
    res = y - np.polyval(np.polyfit(x, y, 1), x)
    s2 = float((res ** 2).sum()) / (len(x) - 2)
    scale = 2 * s2 if s2 > 0 else 1.0
    return np.where(lev < 1 - 1e-9, res ** 2 * lev / (scale * np.maximum(1 - lev, 1e-9) ** 2), np.inf)
