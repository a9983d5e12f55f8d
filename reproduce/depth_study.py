"""Depth study (claim 2) and early detection (claim 3): plain vs residual conv nets across depth.

* :func:`conv_spec` declares one run (:class:`reproduce.runs.RunSpec`), :func:`run_specs` every
  run of the depth study (a sweep trains them as jobs);
* :func:`train_conv` trains one plain or residual conv net of the preset's width and measures the
  bundle entropy of **every tap** after every epoch (64 samples: cheap), so that the
  early-detection study reuses the depth-study runs of the same depth instead of retraining.
  The auto-tune study calls it for its fixed-depth baselines; its name and signature are stable.
* :func:`depth_sweep` runs the preset's depths x {plain, residual} x datasets x seeds and returns
  two tidy tables (one row per run; one row per run and epoch).
* :func:`correlations` gives Pearson and Spearman correlations (with p-values) between the
  averaged a^(L) bundle entropy and the test accuracy, per dataset.
* :func:`layer_epoch_matrix`, :func:`conflicting_layers`, :func:`first_detection_epoch` and
  :func:`detection_curve` read a run's per-epoch, per-tap measurements for claim 3;
  :func:`detection_summary` sums them up per network.
* :func:`depth_claims` (claim 2) and :func:`early_detection_claims` (claim 3) are the claims
  tables' rules, fixed before any number was seen.

Choices the specification leaves open (written down here):

* A run's **test accuracy** is the mean over its last ``scale.last_epochs`` measured epochs; its
  **averaged entropy** (the paper's "integral") is the mean of the a^(L) bundle entropy over all
  measured epochs. A diverged run keeps the epochs measured before it diverged; its row stays in
  the tables with ``status == "diverged"`` (and NaN where nothing was measured).
* The run folder is ``results/<scale>/depth/<dataset>-<kind>-<depth>-s<seed>-<hash>``; the hash
  covers the model and training configs and the measurement set-up (dataset, ``train_limit``,
  sample-set size, ``every_tap``), so a changed preset never reuses a stale run.
* A block is **conflicting** by the rule of :func:`reproduce.bundles.layer_rows` (a residual
  block by its branch tap, a plain block by its output tap, an FNN layer by its hidden tap).
  "Layers" in claim 3 are these taps, named by their tap names.
* The **detection horizon** of claim 3 is the first quarter of training
  (:func:`detection_horizon`: ``ceil(epochs / 4)``).
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

from . import bundles
from .data import DataBundle
from .models import CONV_KINDS, DEPTH_TABLE, ModelConfig, blocks_for_depth, check_conv_kind, conv_config, depth_for_blocks
from .reporting import Claim
from .runs import DataSpec, Hook, RunSpec, train_spec
from .scales import Scale
from .training import RunResult, TrainConfig, final_test_accuracy, train

__all__ = [
    "CONV_KINDS",
    "EXPERIMENT",
    "RUN_COLUMNS",
    "EPOCH_COLUMNS",
    "CORRELATION_COLUMNS",
    "conv_configs",
    "conv_spec",
    "run_specs",
    "train_conv",
    "run_row",
    "epoch_rows",
    "depth_sweep",
    "correlations",
    "layer_epoch_matrix",
    "conflicting_layers",
    "first_detection_epoch",
    "detection_curve",
    "detection_horizon",
    "detection_summary",
    "depth_claims",
    "early_detection_claims",
]

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
    history. The run lives in ``results/<scale>/depth/``.
    """
    data = DataSpec(dataset or scale.dataset, int(seed), scale.train_limit)
    mcfg, tcfg = conv_configs(scale, kind, blocks_or_depth, data, seed)
    measure = Hook.to("reproduce.bundles:bundle_callback", sample_size=scale.sample_size, seed=int(seed),
                      every_tap=bool(every_tap))
    return RunSpec(scale.name, EXPERIMENT, _run_label(data.name, kind, mcfg.blocks, seed), mcfg, tcfg, data,
                   (measure,))


def run_specs(scale: Scale, *, datasets: Sequence[str] | None = None, seeds: Sequence[int] | None = None,
              depths: Sequence[int] | None = None, kinds: Sequence[str] = CONV_KINDS) -> list[RunSpec]:
    """Every run of the depth study: ``scale.datasets`` x seeds ``0..scale.repeats-1`` x
    ``scale.depths`` x both kinds (defaults), in the order :func:`depth_sweep` trains them."""
    datasets = tuple(datasets or scale.datasets)
    seeds = tuple(range(scale.repeats)) if seeds is None else tuple(seeds)
    depths = tuple(depths or scale.depths)
    for kind in kinds:
        check_conv_kind(kind)
    for depth in depths:
        blocks_for_depth(depth)
    return [conv_spec(scale, kind, depth, dataset=dataset, seed=seed)
            for dataset in datasets for seed in seeds for kind in kinds for depth in depths]


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


def conflicting_layers(record: dict) -> frozenset[str]:
    """Tap names of the conflicting layers of one epoch record
    (:func:`reproduce.bundles.conflicting_layers` of its ``bundles``)."""
    return bundles.conflicting_layers(record.get("bundles") or [])


def layer_epoch_matrix(run: RunResult | Sequence[dict], *, role: str | None = None,
                       value: str = "entropy") -> pd.DataFrame:
    """Tap x epoch table of ``value`` (default the bundle entropy) from a run or its history.

    Rows are tap names in network order (index ``tap``), columns the measured epochs. ``role``
    keeps only taps of that role (``branch``, ``output``, ``hidden``, ``stem``); None keeps all.
    """
    history = _history(run)
    rows = [{"epoch": int(r.get("epoch", i)), **b} for i, r in enumerate(history) for b in r["bundles"]]
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


def detection_horizon(epochs: int) -> int:
    """The last epoch that still counts as "the beginning of training" for claim 3: ``ceil(epochs / 4)``."""
    return math.ceil(int(epochs) / 4)


def _at_epoch(history: Sequence[dict], epoch: int, key: str) -> Any:
    return next((r.get(key) for r in history if int(r.get("epoch", -1)) == epoch), None)


def detection_summary(runs: dict[str, RunResult], horizon: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Claim 3 per network: ``(curves, summary)``.

    ``curves`` stacks :func:`detection_curve` of every run (column ``kind`` = the dict key);
    ``summary`` has one row per run: ``kind, status, blocks, conflicting_final, first_detection,
    first_equal, a_L_entropy_horizon`` (H(a^(L)) at epoch ``horizon``, None if not measured) and
    ``a_L_entropy_final`` (at the last epoch of the history, None if it was not measured).
    """
    curves, summary = [], []
    for kind, run in runs.items():
        curve = detection_curve(run).assign(kind=kind)
        curves.append(curve)
        summary.append({"kind": kind, "status": run.status, "blocks": sum(run.model_config.blocks),
                        "conflicting_final": int(curve["final_conflicting"].iloc[-1]) if len(curve) else 0,
                        "first_detection": first_detection_epoch(run),
                        "first_equal": first_detection_epoch(run, mode="equal"),
                        "a_L_entropy_horizon": _at_epoch(run.history, horizon, "a_L_entropy"),
                        "a_L_entropy_final": run.history[-1].get("a_L_entropy") if run.history else None})
    return pd.concat(curves, ignore_index=True), pd.DataFrame(summary)


# --------------------------------------------------------------------------------------------
# the claims' rules (fixed before any number was seen)


def depth_claims(runs: pd.DataFrame, corr: pd.DataFrame) -> list[Claim]:
    """Claim 2 per dataset, from :func:`depth_sweep`'s run table and :func:`correlations`:

    * deep plain nets develop conflicting bundles: holds iff the deepest plain net's averaged
      a^(L) entropy is > 0;
    * residual nets develop fewer: holds iff, over the depths where either kind has an averaged
      entropy > 0, the residual net's is lower at more than half of them (not testable when no
      depth has one);
    * entropy vs test accuracy: holds iff Pearson r < 0 with p < 0.05 (not testable when the
      correlation is undefined: fewer than 3 runs or a constant column).
    """
    claims = []
    cidx = corr.set_index("dataset")
    for name, frame in runs.groupby("dataset"):
        by = frame.groupby(["depth", "kind"])["entropy_mean"].mean().unstack("kind")
        deepest = int(by.index.max())
        h_deep = by.loc[deepest, "plain"]
        claims.append(Claim(
            f"{name}: deep plain nets develop conflicting bundles", "deep plain networks develop them",
            f"plain depth {deepest}: averaged a^(L) entropy {h_deep:.3f}", bool(h_deep > 0)))
        active = by[(by["plain"] > 0) | (by["residual"] > 0)]
        lower = int((active["residual"] < active["plain"]).sum())
        claims.append(Claim(
            f"{name}: residual nets develop fewer conflicts", "residual networks much less",
            f"residual lower at {lower} of {len(active)} depths with a conflict {list(map(int, active.index))}",
            bool(lower > len(active) / 2) if len(active) else None))
        c = cidx.loc[name]
        claims.append(Claim(
            f"{name}: bundle entropy vs test accuracy", "negative correlation",
            f"Pearson r = {c.pearson_r:.3f} (p = {c.pearson_p:.2g}), Spearman rho = {c.spearman_r:.3f} "
            f"(p = {c.spearman_p:.2g}), n = {int(c.n)}",
            None if math.isnan(c.pearson_p) else bool(c.pearson_r < 0 and c.pearson_p < 0.05)))
    return claims


def early_detection_claims(summary: pd.DataFrame, *, horizon: int, depth: int) -> list[Claim]:
    """Claim 3 from :func:`detection_summary`'s summary:

    * the plain net's conflicting layers are visible early: holds iff its first detection epoch is
      <= ``horizon``; not testable when it has no conflicting layer at the end;
    * a^(L) at the horizon predicts the end: holds iff for every net, H(a^(L)) > 0 at epoch
      ``horizon`` exactly when it is > 0 at the end; not testable when a net was not measured at
      both epochs.
    """
    s = summary.set_index("kind")

    def num(v: Any) -> str:
        return "n/a" if pd.isna(v) else f"{v:.3f}"

    plain = s.loc["plain"]
    detected = pd.notna(plain.first_detection) and plain.conflicting_final > 0
    claims = [Claim(
        f"plain depth {depth}: conflicting layers visible early",
        "conflicting layers can be detected in the first epochs",
        f"{plain.conflicting_final} of {plain.blocks} blocks conflicting at the end; first detection epoch "
        f"{'n/a' if pd.isna(plain.first_detection) else int(plain.first_detection)} (horizon {horizon})",
        bool(plain.first_detection <= horizon) if detected else None)]
    measured = all(pd.notna(r.a_L_entropy_horizon) and pd.notna(r.a_L_entropy_final) for _, r in s.iterrows())
    agree = [(r.a_L_entropy_horizon > 0) == (r.a_L_entropy_final > 0) for _, r in s.iterrows()] if measured else []
    claims.append(Claim(
        f"depth {depth}: a^(L) conflict at epoch {horizon} predicts the final one",
        "conflicts are visible at the start of training",
        "; ".join(f"{k}: H(a^(L)) {num(r.a_L_entropy_horizon)} at epoch {horizon}, {num(r.a_L_entropy_final)} at the end"
                  for k, r in s.iterrows()),
        bool(all(agree)) if measured else None))
    return claims
