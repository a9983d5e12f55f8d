"""Claim 6: a test-accuracy map of fully connected nets over a width x depth grid, with the
boundary between the nets whose last hidden layer a^(L) holds conflicting bundles and the rest.

:func:`run_specs` declares one run per grid cell (:func:`cell_spec`, a
:class:`reproduce.runs.RunSpec`); :func:`sweep` trains them (resumable:
``results/<scale>/fnn_map/<label>-<hash>``), measuring after every epoch

* a^(L)'s bundles on the measurement sample set (``measurement_samples(data, sample_size, seed)``,
  the method's protocol): ``a_L_entropy``, ``a_L_num_bundles``, ``a_L_max_accuracy``;
* a^(L)'s bundles and the eval-mode accuracy on the *whole* unaugmented training set
  (:func:`reproduce.theory.bound_callback`, for claim 1's accuracy bound): ``bound_*``.

It returns a :class:`FnnMap`: a tidy per-network table (:data:`MAP_COLUMNS`) and a long per-epoch
table (:data:`EPOCH_COLUMNS`). :func:`boundary_segments` gives the cell edges that separate
conflicting from non-conflicting cells, for drawing the boundary on the heatmap.

Choices the specification leaves open (written down here):

* A network "induces conflicting bundles" when a^(L) has ``H > 0`` at its **final** epoch (the
  paper's map is of trained networks).
* Test accuracy of a cell: mean over the last ``last_epochs`` epochs
  (:func:`reproduce.training.final_test_accuracy`); a diverged run has NaN test accuracy.
* The run folder's hash covers the model and training configs plus the dataset, its
  ``train_limit``, the data seed and the measurement settings, so a changed scale never reuses a
  stale run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .models import ModelConfig, count_parameters
from .progress import progress_bar
from .runs import DataSpec, Hook, RunSpec, train_spec
from .scales import Scale
from .training import RunResult, TrainConfig, final_test_accuracy

__all__ = [
    "EXPERIMENT",
    "MAP_COLUMNS",
    "EPOCH_COLUMNS",
    "FnnMap",
    "fnn_config",
    "train_config",
    "train_cell",
    "sweep",
    "accuracy_grid",
    "conflict_mask",
    "boundary_segments",
    "ConflictStatistics",
    "conflict_statistics",
]

#: results/<scale>/<EXPERIMENT>/ holds the runs (shared by notebooks 01 and 02)
EXPERIMENT = "fnn_map"
#: bump when the measurements stored in a run's history change
_MEASURE_VERSION = 1

#: columns of :attr:`FnnMap.table` (one row per network)
MAP_COLUMNS = (
    "width", "depth", "label", "parameters", "status", "epochs_done", "test_acc", "final_test_acc",
    "train_acc", "a_L_num_bundles", "a_L_entropy", "a_L_max_accuracy", "a_L_conflicting",
    "bound_max_accuracy", "bound_accuracy", "bound_respected",
)
#: columns of :attr:`FnnMap.epochs` (one row per network and epoch)
EPOCH_COLUMNS = (
    "width", "depth", "epoch", "train_acc", "test_acc", "a_L_num_bundles", "a_L_entropy",
    "bound_samples", "bound_correct", "bound_limit", "bound_accuracy", "bound_max_accuracy",
    "bound_num_bundles",
)


@dataclass
class FnnMap:
    """Result of :func:`sweep`: ``table`` (one row per network) and ``epochs`` (per epoch)."""

    table: pd.DataFrame
    epochs: pd.DataFrame
    sample_size: int
    train_samples: int


def fnn_config(data: Any, width: int, depth: int) -> ModelConfig:
    """The FNN of one grid cell for ``data`` (a :class:`reproduce.data.DataBundle` or a
    :class:`reproduce.runs.DataSpec`)."""
    return ModelConfig("fnn", num_classes=data.num_classes, in_channels=data.in_channels,
                       input_size=data.image_size, fnn_width=int(width), fnn_depth=int(depth))


def train_config(scale: Scale, seed: int) -> TrainConfig:
    """Training of every grid cell: the scale's ``fnn_epochs``, batch size and learning rate."""
    return TrainConfig(epochs=scale.fnn_epochs, batch_size=scale.batch_size, lr=scale.lr, seed=seed,
                       **scale.train_options())


def _check_grid(name: str, values: Sequence[int]) -> tuple[int, ...]:
    values = tuple(values)
    if not values or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in values):
        raise ValueError(f"{name} must be a non-empty sequence of ints >= 1, got {values!r}")
    if len(set(values)) != len(values):
        raise ValueError(f"{name} must not repeat values, got {values!r}")
    return tuple(int(v) for v in values)


def cell_spec(scale: Scale, width: int, depth: int, *, dataset: str | None = None, seed: int = 0,
              data: Any = None) -> RunSpec:
    """The run of the FNN ``width x depth`` of the grid, declared (see the module docstring).

    ``data`` (already loaded, possibly custom data) takes the place of ``dataset``."""
    spec = DataSpec.of(data, seed) if data is not None else DataSpec(dataset or scale.dataset, int(seed),
                                                                       scale.train_limit, flat=True)
    mcfg, tcfg = fnn_config(data if data is not None else spec, width, depth), train_config(scale, seed)
    callbacks = (Hook.to("reproduce.bundles:bundle_callback", sample_size=scale.sample_size, seed=int(seed),
                         every_tap=False),
                 Hook.to("reproduce.theory:bound_callback"))
    return RunSpec(scale.name, EXPERIMENT, mcfg.label, mcfg, tcfg, spec, callbacks,
                   extra=(("measure", _MEASURE_VERSION),))


def run_specs(scale: Scale, *, dataset: str | None = None, seed: int = 0, widths: Sequence[int] | None = None,
              depths: Sequence[int] | None = None, data: Any = None) -> list[RunSpec]:
    """One run per cell of ``widths x depths`` (default: the scale's grid), depth-major."""
    widths = _check_grid("widths", scale.fnn_widths if widths is None else widths)
    depths = _check_grid("depths", scale.fnn_depths if depths is None else depths)
    return [cell_spec(scale, w, d, dataset=dataset, seed=seed, data=data) for d in depths for w in widths]


def train_cell(scale: Scale, data: Any, width: int, depth: int, *, seed: int = 0, device: str = "auto",
               progress: bool = False) -> RunResult:
    """Train (or load) the run of :func:`cell_spec` on the loaded ``data``, resumably."""
    spec = cell_spec(scale, width, depth, seed=seed, data=data)
    return train_spec(spec, data=data, device=device, progress=progress)


def _final(history: list[dict], key: str) -> Any:
    for rec in reversed(history):
        if rec.get(key) is not None:
            return rec[key]
    return None


def sweep(scale: Scale, data: Any, *, seed: int = 0, widths: Sequence[int] | None = None,
          depths: Sequence[int] | None = None, device: str = "auto", progress: bool = True) -> FnnMap:
    """Train every FNN of ``widths x depths`` (default: the scale's grid) and tabulate them.

    ``data`` must be loaded with ``flat=True``. The measurement sample set is
    ``measurement_samples(data, scale.sample_size, seed)``; the bound is measured on the whole
    ``data.train_eval``. Finished runs are reused, interrupted ones resumed.
    """
    specs = run_specs(scale, seed=seed, widths=widths, depths=depths, data=data)
    rows, epoch_rows = [], []
    for spec in progress_bar(specs, enabled=progress, desc="fnn grid", unit="net"):
        w, d = spec.model.fnn_width, spec.model.fnn_depth
        res = train_spec(spec, data=data, device=device, progress=False)
        hist = [r for r in res.history if not r.get("diverged")]
        for r in hist:
            epoch_rows.append({"width": w, "depth": d, **{k: r.get(k) for k in EPOCH_COLUMNS[2:]}})
        entropy = _final(hist, "a_L_entropy")
        rows.append({
            "width": w, "depth": d, "label": res.model_config.label,
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
                  train_samples=len(data.train_eval))


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

    t = table.dropna(subset=["test_acc", "a_L_entropy"])
    if "status" in t.columns:  # a net that diverged at a later epoch keeps earlier numbers: leave it out
        t = t[t["status"] != "diverged"]
    t = t[np.isfinite(t["test_acc"].astype(float))]
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
