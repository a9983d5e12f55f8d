"""Claim 6: a test-accuracy map of fully connected nets over a width x depth grid, with the
boundary between the nets whose last hidden layer a^(L) holds conflicting bundles and the rest.

:func:`run_specs` declares one run per grid cell and seed (:func:`cell_spec`, a
:class:`reproduce.training.runs.RunSpec`); :func:`train_grid` trains them (resumable:
``results/<scale>/fnn_map/<label>-<hash>``), measuring after every epoch

* a^(L)'s bundles on the measurement sample set (``measurement_samples(data, sample_size, seed)``,
  the method's protocol): ``a_L_entropy``, ``a_L_num_bundles``, ``a_L_max_accuracy``;
* a^(L)'s bundles and the eval-mode accuracy on the *whole* unaugmented training set
  (:func:`reproduce.experiments.theory.bound_callback`, for claim 1's accuracy bound): ``bound_*``.

It returns a :class:`FnnMap`: a tidy per-network table (:data:`MAP_COLUMNS`, one row per seed and
cell) and a long per-epoch table (:data:`EPOCH_COLUMNS`). :func:`seed_mean_table` aggregates the
seeds of each cell (:data:`MEAN_COLUMNS`: the map the notebook draws). :func:`boundary_segments`
gives the cell edges that separate conflicting from non-conflicting cells, for drawing the boundary
on the heatmap. :func:`map_claims` holds the rule of claim 6 over seeds, with a row of this
project's own (:func:`width_comparison`: conflicting against clean nets of the same width).

Choices the specification leaves open (written down here):

* A network "induces conflicting bundles" when a^(L) has ``H > 0`` at its **final** epoch (the
  paper's map is of trained networks).
* Test accuracy of a cell: mean over the last ``last_epochs`` epochs
  (:func:`reproduce.training.final_test_accuracy`); a diverged run has NaN test accuracy.
* A seed fixes the data split, the initialisation and the measurement samples of a run (as
  everywhere in this package); every seed's grid is a full grid. A run's history may begin with an
  epoch-0 record (the untrained net): it appears in the per-epoch table with ``epoch`` 0; the
  per-network "final" values are those of the last record that has them.
* The seed-mean map (:func:`seed_mean_table`) of a cell averages the seeds whose run did not
  diverge and has a finite test accuracy and an a^(L) measurement; its a^(L) entropy is the mean
  entropy, so the cell counts as conflicting when a^(L) is conflicting in at least one such seed.
* The run folder's hash covers the model and training configs plus the dataset, its
  ``train_limit``, the data seed and the measurement settings, so a changed scale never reuses a
  stale run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from reproduce.models.nets import ModelConfig, count_parameters
from reproduce.files.progress import progress_bar
from reproduce.experiments.claims import Claim, over_seeds, seed_outcomes, seed_values
from reproduce.training.runs import DataSpec, Hook, RunSpec, train_spec
from reproduce.config.scales import Scale
from reproduce.config.seeds import check_seeds
from reproduce.experiments.theory import data_for_seed, seed_data_spec
from reproduce.training.loop import RunResult, TrainConfig, final_test_accuracy

__all__ = [
    "EXPERIMENT",
    "MAP_COLUMNS",
    "EPOCH_COLUMNS",
    "MEAN_COLUMNS",
    "FnnMap",
    "fnn_config",
    "train_config",
    "train_cell",
    "train_grid",
    "accuracy_grid",
    "conflict_mask",
    "boundary_segments",
    "ConflictStatistics",
    "conflict_statistics",
    "cell_spec",
    "run_specs",
    "seed_mean_table",
    "seed_statistics",
    "WidthComparison",
    "width_comparison",
    "map_claims", "NOTEBOOK_DEFAULTS", "notebook_jobs"]

#: results/<scale>/<EXPERIMENT>/ holds the runs (shared by notebooks 01 and 02)
EXPERIMENT = "fnn_map"

#: the defaults of notebook 02's parameters cell that decide its runs (:mod:`reproduce.experiments.notebooks`)
NOTEBOOK_DEFAULTS = {"02_fnn_width_depth": {"dataset": None}}
#: bump when the measurements stored in a run's history change
_MEASURE_VERSION = 1

#: columns of :attr:`FnnMap.table` (one row per seed and network)
MAP_COLUMNS = (
    "seed", "width", "depth", "label", "parameters", "status", "epochs_done", "test_acc", "final_test_acc",
    "train_acc", "a_L_num_bundles", "a_L_entropy", "a_L_max_accuracy", "a_L_conflicting",
    "bound_max_accuracy", "bound_accuracy", "bound_respected",
)
#: columns of :attr:`FnnMap.epochs` (one row per seed, network and epoch)
EPOCH_COLUMNS = (
    "seed", "width", "depth", "epoch", "train_acc", "test_acc", "a_L_num_bundles", "a_L_entropy",
    "bound_samples", "bound_correct", "bound_limit", "bound_accuracy", "bound_max_accuracy",
    "bound_num_bundles",
)
#: columns of :func:`seed_mean_table` (one row per network, over its seeds): ``seeds`` the seeds
#: averaged (not diverged, finite test accuracy, a^(L) measured), ``seeds_conflicting`` those with
#: a^(L) entropy > 0, ``test_acc``/``a_L_entropy``/``a_L_num_bundles`` seed means, ``*_min``/``*_max``
#: the spread, ``bound_respected`` in every seed
MEAN_COLUMNS = (
    "width", "depth", "label", "status", "seeds", "seeds_conflicting", "test_acc", "test_acc_min", "test_acc_max",
    "a_L_entropy", "a_L_entropy_min", "a_L_entropy_max", "a_L_num_bundles", "a_L_conflicting", "bound_respected",
)


@dataclass
class FnnMap:
    """Result of :func:`train_grid`: ``table`` (one row per seed and network), ``epochs`` (per seed,
    network and epoch) and the ``seeds`` trained."""

    table: pd.DataFrame
    epochs: pd.DataFrame
    sample_size: int
    train_samples: int
    seeds: tuple[int, ...] = (0,)

    @property
    def mean(self) -> pd.DataFrame:
        """The seed-mean map (:func:`seed_mean_table`)."""
        return seed_mean_table(self.table)


def fnn_config(data: Any, width: int, depth: int) -> ModelConfig:
    """The FNN of one grid cell for ``data`` (a :class:`reproduce.data.DataBundle` or a
    :class:`reproduce.training.runs.DataSpec`)."""
    return ModelConfig("fnn", num_classes=data.num_classes, in_channels=data.in_channels,
                       input_size=data.image_size, fnn_width=int(width), fnn_depth=int(depth))


def train_config(scale: Scale, seed: int) -> TrainConfig:
    """Training of every grid cell: the scale's ``fnn_epochs``, batch size and learning rate."""
    return TrainConfig(epochs=scale.fnn_epochs, batch_size=scale.batch_size, lr=scale.lr, seed=seed,
                       **scale.train_options(fnn=True))


def _check_grid(name: str, values: Sequence[int]) -> tuple[int, ...]:
    values = tuple(values)
    if not values or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in values):
        raise ValueError(f"{name} must be a non-empty sequence of ints >= 1, got {values!r}")
    if len(set(values)) != len(values):
        raise ValueError(f"{name} must not repeat values, got {values!r}")
    return tuple(int(v) for v in values)


def cell_spec(scale: Scale, width: int, depth: int, *, dataset: str | None = None, seed: int = 0,
              data: Any = None) -> RunSpec:
    """The run of the FNN ``width x depth`` of the grid with ``seed``, declared (see the module docstring).

    ``data`` (already loaded, possibly custom data) takes the place of ``dataset``; the run trains
    on it loaded with ``seed`` (:func:`reproduce.experiments.theory.seed_data_spec`)."""
    spec = seed_data_spec(data, seed) if data is not None else DataSpec(dataset or scale.dataset, int(seed),
                                                                         scale.train_limit, flat=True)
    mcfg, tcfg = fnn_config(data if data is not None else spec, width, depth), train_config(scale, seed)
    callbacks = (Hook.to("reproduce.bundles:bundle_callback", sample_size=scale.sample_size, seed=int(seed),
                         every_tap=False, samples=scale.measurement, augment=False),
                 Hook.to("reproduce.theory:bound_callback"))
    return RunSpec(scale.name, EXPERIMENT, mcfg.label, mcfg, tcfg, spec, callbacks,
                   extra=(("measure", _MEASURE_VERSION),))


def _resolve_seeds(scale: Scale, seeds: Sequence[int] | None, seed: int | None) -> tuple[int, ...]:
    if seeds is not None and seed is not None:
        raise ValueError(f"pass seeds or seed, not both (got seeds={seeds!r}, seed={seed!r})")
    if seed is not None:
        return check_seeds((seed,))
    return check_seeds(range(scale.repeats) if seeds is None else seeds)


def run_specs(scale: Scale, *, dataset: str | None = None, seeds: Sequence[int] | None = None,
              seed: int | None = None, widths: Sequence[int] | None = None, depths: Sequence[int] | None = None,
              data: Any = None) -> list[RunSpec]:
    """One run per seed and cell of ``widths x depths`` (default: the scale's grid), seed-major, then
    depth-major. ``seeds`` default to ``0..scale.repeats-1`` (a notebook passes
    ``range(seed, seed + scale.repeats)``); ``seed`` alone means that one seed."""
    seeds = _resolve_seeds(scale, seeds, seed)
    widths = _check_grid("widths", scale.fnn_widths if widths is None else widths)
    depths = _check_grid("depths", scale.fnn_depths if depths is None else depths)
    return [cell_spec(scale, w, d, dataset=dataset, seed=s, data=data)
            for s in seeds for d in depths for w in widths]


def train_cell(scale: Scale, data: Any, width: int, depth: int, *, seed: int = 0, device: str = "auto",
               progress: bool = False) -> RunResult:
    """Train (or load) the run of :func:`cell_spec` on the loaded ``data`` (loaded again with
    ``seed`` when that is not its own, :func:`reproduce.experiments.theory.data_for_seed`), resumably."""
    spec = cell_spec(scale, width, depth, seed=seed, data=data)
    return train_spec(spec, data=data_for_seed(data, seed), device=device, progress=progress)


def _final(history: list[dict], key: str) -> Any:
    for rec in reversed(history):
        if rec.get(key) is not None:
            return rec[key]
    return None


def train_grid(scale: Scale, data: Any, *, seeds: Sequence[int] | None = None, seed: int | None = None,
          widths: Sequence[int] | None = None, depths: Sequence[int] | None = None, data_root: Any = None,
          device: str = "auto", progress: bool = True) -> FnnMap:
    """Train every FNN of ``widths x depths`` (default: the scale's grid) for every seed and tabulate them.

    ``data`` must be loaded with ``flat=True``; a seed other than its own trains on the same
    dataset loaded with that seed (:func:`reproduce.experiments.theory.data_for_seed`, from ``data_root``;
    custom data without an identity is used as it is). ``seeds`` default to ``0..scale.repeats-1``;
    ``seed`` alone means that one seed. The measurement sample set is
    ``measurement_samples(data, scale.sample_size, seed)``; the bound is measured on the whole
    ``data.train_eval``. Finished runs are reused, interrupted ones resumed.
    """
    seeds = _resolve_seeds(scale, seeds, seed)
    loaded = {s: data_for_seed(data, s, data_root) for s in seeds}
    specs = run_specs(scale, seeds=seeds, widths=widths, depths=depths, data=data)
    rows, epoch_rows = [], []
    for spec in progress_bar(specs, enabled=progress, desc="fnn grid", unit="net"):
        w, d, s = spec.model.fnn_width, spec.model.fnn_depth, spec.train.seed
        res = train_spec(spec, data=loaded[s], device=device, progress=False)
        hist = [r for r in res.history if not r.get("diverged")]
        for r in hist:
            epoch_rows.append({"seed": s, "width": w, "depth": d, **{k: r.get(k) for k in EPOCH_COLUMNS[3:]}})
        entropy = _final(hist, "a_L_entropy")
        rows.append({
            "seed": s, "width": w, "depth": d, "label": res.model_config.label,
            "parameters": count_parameters(res.model), "status": res.status, "epochs_done": res.epochs_done,
            "test_acc": final_test_accuracy(hist, scale.last_epochs),
            "final_test_acc": _final(hist, "test_acc"), "train_acc": _final(hist, "train_acc"),
            "a_L_num_bundles": _final(hist, "a_L_num_bundles"), "a_L_entropy": entropy,
            "a_L_max_accuracy": _final(hist, "a_L_max_accuracy"),
            "a_L_conflicting": None if entropy is None else bool(entropy > 0),
            "bound_max_accuracy": _final(hist, "bound_max_accuracy"),
            "bound_accuracy": _final(hist, "bound_accuracy"),
            "bound_respected": bool(all(r["bound_correct"] <= r["bound_limit"] for r in hist)) if hist else None,
        })
    table = pd.DataFrame(rows, columns=list(MAP_COLUMNS))
    epochs = pd.DataFrame(epoch_rows, columns=list(EPOCH_COLUMNS))
    return FnnMap(table=table, epochs=epochs, sample_size=min(scale.sample_size, len(data.train_eval)),
                  train_samples=len(data.train_eval), seeds=seeds)


def _usable(table: pd.DataFrame) -> pd.DataFrame:
    """The rows claim 6 uses: not diverged, finite test accuracy, a^(L) measured."""
    t = table.dropna(subset=["test_acc", "a_L_entropy"])
    if "status" in t.columns:  # a net that diverged at a later epoch keeps earlier numbers: leave it out
        t = t[t["status"] != "diverged"]
    return t[np.isfinite(t["test_acc"].astype(float))]


def seed_mean_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per network (``width``, ``depth``) over its seeds (:data:`MEAN_COLUMNS`).

    Means and ranges cover the usable seeds (not diverged, finite test accuracy, a^(L) measured);
    a cell without one has NaN values and status ``diverged``. ``a_L_conflicting``: a^(L) entropy
    > 0 in at least one usable seed (the seed-mean entropy is then > 0).
    """
    missing = [c for c in ("width", "depth", "test_acc", "a_L_entropy") if c not in table.columns]
    if missing:
        raise ValueError(f"the table lacks columns {missing}; its columns are {list(table.columns)}")
    usable = _usable(table)
    rows = []
    for (w, d), cell in table.groupby(["width", "depth"], sort=True):
        u = usable[(usable["width"] == w) & (usable["depth"] == d)]
        acc, ent = u["test_acc"].astype(float), u["a_L_entropy"].astype(float)
        nan = float("nan")
        bundles = u["a_L_num_bundles"].astype(float).mean() if "a_L_num_bundles" in u.columns and len(u) else nan
        respected = cell["bound_respected"].dropna() if "bound_respected" in cell.columns else pd.Series([], dtype=object)
        rows.append({
            "width": int(w), "depth": int(d),
            "label": cell["label"].iloc[0] if "label" in cell.columns else f"fnn-{w}x{d}",
            "status": "finished" if len(u) else "diverged", "seeds": int(len(u)),
            "seeds_conflicting": int((ent > 0).sum()),
            "test_acc": float(acc.mean()) if len(u) else nan,
            "test_acc_min": float(acc.min()) if len(u) else nan, "test_acc_max": float(acc.max()) if len(u) else nan,
            "a_L_entropy": float(ent.mean()) if len(u) else nan,
            "a_L_entropy_min": float(ent.min()) if len(u) else nan,
            "a_L_entropy_max": float(ent.max()) if len(u) else nan,
            "a_L_num_bundles": float(bundles),
            "a_L_conflicting": bool((ent > 0).any()) if len(u) else None,
            "bound_respected": bool(respected.astype(bool).all()) if len(respected) else None,
        })
    return pd.DataFrame(rows, columns=list(MEAN_COLUMNS))


def accuracy_grid(table: pd.DataFrame, value: str = "test_acc") -> pd.DataFrame:
    """``value`` as a depth (rows, ascending) x width (columns, ascending) grid."""
    if value not in table.columns:
        raise ValueError(f"unknown column {value!r}; valid columns are {', '.join(table.columns)}")
    return table.pivot(index="depth", columns="width", values=value).sort_index().sort_index(axis=1)


def conflict_mask(table: pd.DataFrame) -> pd.DataFrame:
    """Depth x width grid (as :func:`accuracy_grid`) of plain bools: a^(L) conflicting at the final
    epoch; networks without a measurement (diverged in the first epoch) count as not conflicting."""
    grid = accuracy_grid(table, "a_L_conflicting")
    return grid.apply(lambda col: col.map(lambda v: False if pd.isna(v) else bool(v))).astype(bool)


def boundary_segments(mask: np.ndarray | pd.DataFrame) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    """Cell edges separating ``True`` from ``False`` cells of a 2-D boolean grid.

    Cell ``(i, j)`` (row ``i``, column ``j``) spans ``[j, j+1] x [i, i+1]`` in plot coordinates
    (as in :func:`seaborn.heatmap`); each segment is ``((x0, y0), (x1, y1))``. Missing cells
    (NaN in a DataFrame) count as ``False``. The outer border of the grid is not a boundary.
    """
    m = np.asarray(mask.to_numpy(dtype=object) if isinstance(mask, pd.DataFrame) else mask, dtype=object)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {m.shape}")
    m = np.array([[False if pd.isna(v) else bool(v) for v in row] for row in m], dtype=bool).reshape(m.shape)
    segments = []
    rows, cols = m.shape
    for i in range(rows):
        for j in range(cols):
            if j + 1 < cols and m[i, j] != m[i, j + 1]:
                segments.append(((float(j + 1), float(i)), (float(j + 1), float(i + 1))))
            if i + 1 < rows and m[i, j] != m[i + 1, j]:
                segments.append(((float(j), float(i + 1)), (float(j + 1), float(i + 1))))
    return segments


@dataclass(frozen=True)
class ConflictStatistics:
    """Claim 6's tests on a map table (networks that did not diverge, with a finite test accuracy).

    ``p_mannwhitney``: one-sided Mann-Whitney U test that the test accuracy of the networks whose
    a^(L) is conflicting is lower than that of the others (NaN when a group is empty).
    ``spearman_rho``/``p_spearman``: Spearman correlation of a^(L) entropy with test accuracy and
    its two-sided p-value (NaN when either is constant).
    """

    n_conflicting: int
    n_clean: int
    mean_acc_conflicting: float
    mean_acc_clean: float
    p_mannwhitney: float
    spearman_rho: float
    p_spearman: float

    @property
    def separates(self) -> bool:
        """Rule 1: both groups non-empty and the one-sided Mann-Whitney p < 0.05."""
        return self.n_conflicting > 0 and self.n_clean > 0 and bool(self.p_mannwhitney < 0.05)

    @property
    def correlates(self) -> bool:
        """Rule 2: Spearman rho < 0 with p < 0.05."""
        return bool(self.spearman_rho < 0) and bool(self.p_spearman < 0.05)


def conflict_statistics(table: pd.DataFrame) -> ConflictStatistics:
    """Compute :class:`ConflictStatistics` from :attr:`FnnMap.table`."""
    from scipy import stats

    t = _usable(table)
    conf = t["a_L_entropy"].astype(float) > 0
    acc = t["test_acc"].astype(float)
    a, b = acc[conf], acc[~conf]
    p_mwu = float(stats.mannwhitneyu(a, b, alternative="less").pvalue) if len(a) and len(b) else float("nan")
    ent = t["a_L_entropy"].astype(float)
    if len(t) >= 3 and ent.nunique() > 1 and acc.nunique() > 1:
        res = stats.spearmanr(ent, acc)
        rho, p_rho = float(res.statistic), float(res.pvalue)
    else:
        rho, p_rho = float("nan"), float("nan")
    return ConflictStatistics(
        n_conflicting=int(len(a)), n_clean=int(len(b)),
        mean_acc_conflicting=float(a.mean()) if len(a) else float("nan"),
        mean_acc_clean=float(b.mean()) if len(b) else float("nan"),
        p_mannwhitney=p_mwu, spearman_rho=rho, p_spearman=p_rho,
    )


def seed_statistics(table: pd.DataFrame, seeds: Sequence[int] | None = None) -> dict[int, ConflictStatistics]:
    """:func:`conflict_statistics` of each seed's map (``seeds``: those of the table, ascending;
    a seed without rows is a ValueError naming the seeds the table has)."""
    if "seed" not in table.columns:
        raise ValueError(f"the table has no seed column; its columns are {list(table.columns)}")
    have = sorted(int(s) for s in table["seed"].unique())
    seeds = have if seeds is None else list(check_seeds(seeds))
    absent = [s for s in seeds if s not in have]
    if absent:
        raise ValueError(f"seeds {absent} have no rows; the table has seeds {have}")
    return {s: conflict_statistics(table[table["seed"] == s]) for s in seeds}


@dataclass(frozen=True)
class WidthComparison:
    """Claim 6's width row (this project's addition) on one map: conflicting against clean nets of
    the *same* width.

    ``widths``: the widths (ascending) at which the map has at least one usable conflicting net
    (final-epoch a^(L) entropy > 0) and at least one usable clean net; ``differences``: at each of
    them, the mean test accuracy of its clean nets minus that of its conflicting nets.
    """

    widths: tuple[int, ...]
    differences: tuple[float, ...]

    @property
    def lower(self) -> int:
        """At how many of :attr:`widths` the conflicting nets' mean is strictly below the clean nets'."""
        return sum(d > 0 for d in self.differences)

    @property
    def holds(self) -> bool | None:
        """The rule: lower at more than half of :attr:`widths`; None (not testable) without any."""
        return None if not self.widths else self.lower > len(self.widths) / 2


def width_comparison(table: pd.DataFrame) -> WidthComparison:
    """:class:`WidthComparison` of a map table (one seed's, or :func:`seed_mean_table`'s); the nets
    used are those of :func:`conflict_statistics` (not diverged, finite test accuracy, a^(L) measured)."""
    missing = [c for c in ("width", "test_acc", "a_L_entropy") if c not in table.columns]
    if missing:
        raise ValueError(f"the table lacks columns {missing}; its columns are {list(table.columns)}")
    t = _usable(table)
    conf = t["a_L_entropy"].astype(float) > 0
    acc = t["test_acc"].astype(float)
    widths, diffs = [], []
    for w in sorted(int(v) for v in t["width"].unique()):
        at = t["width"] == w
        if (at & conf).any() and (at & ~conf).any():
            widths.append(w)
            diffs.append(float(acc[at & ~conf].mean() - acc[at & conf].mean()))
    return WidthComparison(tuple(widths), tuple(diffs))


def _width_text(c: WidthComparison) -> str:
    if not c.widths:
        return "no width has both"
    each = ", ".join(f"{w}: {d:+.3f}" for w, d in zip(c.widths, c.differences))
    return f"lower at {c.lower} of {len(c.widths)} widths (clean minus conflicting, {each})"


def _width_claim(table: pd.DataFrame, seeds: list[int]) -> Claim:
    """The width row of :func:`map_claims`."""
    per = {s: width_comparison(table[table["seed"] == s]) for s in seeds}
    pooled = width_comparison(seed_mean_table(table[table["seed"].isin(seeds)]))
    outcomes = [per[s].holds for s in seeds]
    verdict = {True: "holds", False: "fails", None: "not testable"}[pooled.holds]
    return Claim(
        "6 (this project's addition): at equal width, nets conflicting at a^(L) are less accurate than clean ones",
        "not in the paper: the conflicting nets are the narrow ones, so the boundary alone does not tell a "
        "depth (conflict) effect from a width effect",
        f"conflicting = final-epoch a^(L) entropy > 0; mean test accuracy compared within each width that has "
        f"both; per seed {seed_outcomes(outcomes, seeds)}; "
        + "; ".join(f"seed {s}: {_width_text(per[s])}" for s in seeds)
        + f". Seed-mean map: {_width_text(pooled)} ({verdict})",
        over_seeds(outcomes, pooled.holds), seeds=len(seeds))


def map_claims(table: pd.DataFrame, *, dataset: str, seeds: Sequence[int] | None = None) -> list[Claim]:
    """Claim 6's three rows, decided per seed and over seeds (rules fixed before any run).

    Per seed (the map of one seed, :func:`conflict_statistics`): **boundary** holds iff both groups
    are non-empty and the test accuracy of the networks with conflicting bundles at a^(L) is lower
    than that of the others by a one-sided Mann-Whitney U test, p < 0.05; **entropy** holds iff the
    Spearman correlation of a^(L)'s bundle entropy with the test accuracy is negative with p < 0.05.

    **width** (this project's addition, :func:`width_comparison`): at every width where the map has
    both a conflicting and a clean net, compare the mean test accuracy of the two groups; the row
    holds iff the conflicting nets' mean is strictly lower at more than half of those widths, and is
    not testable when no width has both. Why a count over widths and not a test: a grid has few
    widths with both groups (the conflicting nets are the narrow ones), each group holding a few
    depths, so no per-width test has power, and one test over the nets of all those widths together
    would compare nets of different widths again; the count asks the boundary's question once per
    width, and the differences are shown.
    Within a width the conflicting nets are mostly the deeper ones: the row removes the width
    effect from the comparison, not depth.

    Which entropy: every row reads a^(L)'s entropy at the **final** epoch (a net is conflicting when
    it is > 0 then; the entropy row correlates that value), not the run's average over training
    (the paper's "integral", which claim 2 uses and which includes the untrained net of epoch 0).
    The paper's map is a map of trained networks, its accuracy that of the trained net (the last
    epochs), and its boundary separates the networks that induce conflicting bundles once trained;
    the average would mix in the start of training, which describes the initialisation. All three
    rows use the same value so that they speak of the same nets.

    Rule over seeds (:func:`reproduce.experiments.claims.over_seeds`): a row holds iff its rule holds in
    every seed *and* in the pooled form, the same rule applied to the seed-mean map
    (:func:`seed_mean_table`: per network the mean test accuracy and mean a^(L) entropy of its
    usable seeds); it does not hold if the rule fails in any seed or in the pooled form. The width
    row is not testable when a seed has no width with both groups and no seed fails; when only the
    seed-mean map has no such width, the seeds decide.
    """
    per = seed_statistics(table, seeds)
    seeds = list(per)
    pooled = conflict_statistics(seed_mean_table(table[table["seed"].isin(seeds)]))
    sep = [per[s].separates for s in seeds]
    cor = [per[s].correlates for s in seeds]
    nets = len(table[table["seed"] == seeds[0]])

    def vals(attr: str, fmt: str) -> str:
        return seed_values([getattr(per[s], attr) for s in seeds], fmt, seeds)

    return [
        Claim(
            "6: the conflicting-bundle boundary separates low from high test accuracy",
            "map of 176 FNNs on MNIST with the boundary of networks that induce conflicting bundles",
            f"{nets} FNNs on {dataset} per seed; conflicting = final-epoch a^(L) entropy > 0; per seed "
            f"{seed_outcomes(sep, seeds)}; conflicting at a^(L): "
            f"{vals('n_conflicting', '{:.0f}')}; mean test accuracy conflicting {vals('mean_acc_conflicting', '{:.3f}')} "
            f"vs others {vals('mean_acc_clean', '{:.3f}')}; one-sided Mann-Whitney p {vals('p_mannwhitney', '{:.2g}')}. "
            f"Seed-mean map: {pooled.n_conflicting} conflicting, mean test accuracy {pooled.mean_acc_conflicting:.3f} "
            f"vs {pooled.mean_acc_clean:.3f} ({pooled.n_clean} others), p = {pooled.p_mannwhitney:.2g} "
            f"({'holds' if pooled.separates else 'fails'})",
            over_seeds(sep, pooled.separates), seeds=len(seeds)),
        Claim(
            "6: a^(L) bundle entropy correlates negatively with test accuracy",
            "conflicting bundles go with lower test accuracy",
            f"entropy = final-epoch a^(L) entropy (not the average over training); per seed "
            f"{seed_outcomes(cor, seeds)}; Spearman rho {vals('spearman_rho', '{:.3f}')}, "
            f"p {vals('p_spearman', '{:.2g}')}. Seed-mean map: rho = {pooled.spearman_rho:.3f}, "
            f"p = {pooled.p_spearman:.2g} over {pooled.n_conflicting + pooled.n_clean} networks "
            f"({'holds' if pooled.correlates else 'fails'})",
            over_seeds(cor, pooled.correlates), seeds=len(seeds)),
        _width_claim(table, seeds),
    ]


def notebook_jobs(stem: str, scale: Scale, seed: int) -> list[RunSpec]:
    """Notebook 02's runs (:mod:`reproduce.experiments.notebooks`): the grid over the seeds
    ``seed .. seed + scale.repeats - 1``."""
    return list(run_specs(scale, seeds=range(seed, seed + scale.repeats)))
