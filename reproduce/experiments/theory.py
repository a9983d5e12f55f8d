"""Claim 1: conflicting bundles at a^(L) bound the training accuracy; one bundle = untrainable.

Two pieces of the method's theory (``docs/method.md#bound``), made measurable:

* **The accuracy bound.** All samples of one bundle at the last hidden layer a^(L) receive (up to
  the resolution of the bundle metric) the same output, so no training accuracy above
  ``(1/N) sum_b max_c n_bc`` is reachable. :func:`bound_check` measures the bundles of a^(L) on a
  set of training samples and the eval-mode accuracy of the *same* model on the *same* samples;
  :class:`TrainingBoundCallback` does it after every epoch of :func:`reproduce.training.train`.
  Samples of one bundle are equal only up to the metric's resolution (``t_i == t_j`` in float32,
  not ``a_i == a_j``), so the bound being respected is a real check, not a tautology.
* **The worst case.** :func:`collapse_layer` turns one hidden layer of an FNN into a dead ReLU
  layer (weights 0, bias -1: its output is 0 for every input, so a^(L) holds a single bundle).
  A dead ReLU layer passes no gradient, so its weights get none; the optimiser's decoupled weight
  decay only shrinks the bias geometrically towards 0 (``-1 * (1 - lr*wd)^steps``), which never
  reaches 0, so the layer stays dead for the whole run. :func:`train_worst_case` trains such a
  network (or the same network intact) and records every epoch's training accuracy, which for
  the collapsed network can never exceed the majority-class frequency.

Choices the specification leaves open (written down here):

* The bound is compared in integer counts: ``correct`` (samples whose argmax logit is their label)
  against ``sum_b max_c n_bc`` (:attr:`reproduce.metric.bundles.BundleStats.max_accuracy` times ``N``,
  rounded to the integer it is), so no float rounding enters.
* Ties between logits are broken by ``argmax`` (the first maximal class), as in ``evaluate``.
* :func:`train_worst_case` trains with :func:`reproduce.training.train` (same optimiser, seeding,
  checkpoints and resume as every other run), collapsing the layer through its ``init_fn`` hook
  between the model's initialisation and the optimiser's creation, so that Lookahead's slow weights
  start collapsed too.
* Seeds: a seed fixes the data split, the initialisation and the measurement samples of a run;
  :func:`worst_case_specs` declares the intact and the collapsed net for each seed, and
  :func:`theory_claims` decides both claims per seed and over seeds
  (:func:`reproduce.experiments.claims.over_seeds`).
* Training length: the grid's nets train the preset's ``fnn_epochs`` of ``fnn_passes`` passes (at
  ``cpu`` the released FNN scripts' length on digits,
  :data:`reproduce.config.scales.CPU_RELEASED_FNN_LENGTH`: 10 epochs of 43 passes, 9,460 steps),
  the worst case 3 x as many epochs. Rule 1a quantifies over every (network, epoch)
  record, so more epochs give it more measurements to respect; the rule is unchanged.
* A run's history may begin with an epoch-0 record (the untrained net, measured before any
  step). The bound (1a) is checked on it too (it holds for any net); the worst case (1b) is about
  training, so its rule reads the records of epochs >= 1 only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from reproduce.metric.bundles import bundle_stats, weight_amplitude
from reproduce.config.seeds import check_seeds
from reproduce.data.datasets import dataset_tensors
from reproduce.models.nets import FNN, ModelConfig, eval_mode, model_device
from reproduce.experiments.claims import Claim, over_seeds, seed_outcomes, seed_values
from reproduce.training.runs import DataSpec, Hook, RunSpec, train_spec
from reproduce.config.scales import Scale
from reproduce.training.loop import RunResult, TrainConfig, train, trained_records

__all__ = [
    "BoundCheck",
    "bound_check",
    "TrainingBoundCallback",
    "dataset_tensors",  # re-exported from reproduce.data
    "majority_frequency",
    "collapse_layer",
    "layer_is_dead",
    "WorstCaseRun",
    "train_worst_case",
    "worst_case_spec",
    "run_worst_case",
    "bound_callback",
    "dead_layer_callback",
    "EXPERIMENT",
    "worst_case_frame",
    "BoundSummary",
    "bound_summary",
    "WorstCaseSummary",
    "worst_case_summary",
    "seed_data_spec",
    "data_for_seed",
    "worst_case_specs",
    "run_worst_cases",
    "theory_claims", "NOTEBOOK_DEFAULTS", "notebook_jobs"]

#: results/<scale>/<EXPERIMENT>/ holds the worst-case runs
EXPERIMENT = "theory"

#: the defaults of notebook 01's parameters cell that decide its runs (:mod:`reproduce.experiments.notebooks`)
NOTEBOOK_DEFAULTS = {"01_bundles_theory": {"dataset": None, "worst_case_width": None, "worst_case_depth": 4,
                                           "collapse_index": 1, "worst_case_epochs": None}}
#: bias given to a collapsed layer (any negative value kills every ReLU when the weights are 0)
COLLAPSE_BIAS = -1.0


# --------------------------------------------------------------------------------------------
# seeds



def seed_data_spec(data: Any, seed: int) -> DataSpec:
    """The :class:`reproduce.training.runs.DataSpec` of ``data``'s dataset loaded with ``seed``: a loaded
    dataset's identity with its seed replaced; custom data (no identity) stays the same data for
    every seed (only its name is checked)."""
    identity = getattr(data, "identity", None) or {}
    spec = DataSpec.of(data, seed)
    if identity:
        spec = DataSpec(spec.name, int(seed), spec.train_limit, spec.flat)
    return spec


def data_for_seed(data: Any, seed: int, root: str | Path | None = None) -> Any:
    """``data`` itself when it is the data of :func:`seed_data_spec` (its own seed, or custom data),
    else the same dataset loaded with ``seed`` (from ``root``)."""
    spec = seed_data_spec(data, seed)
    return data if spec.matches(data) else spec.load(root)


# --------------------------------------------------------------------------------------------
# the accuracy bound


@dataclass(frozen=True)
class BoundCheck:
    """a^(L) bundles and the training accuracy of one model on one sample set.

    ``correct`` samples are classified right; no more than ``bound_correct`` (``sum_b max_c n_bc``)
    can be. ``accuracy`` and ``max_accuracy`` are the same counts divided by ``num_samples``.
    """

    num_samples: int
    correct: int
    bound_correct: int
    num_bundles: int
    entropy: float

    @property
    def accuracy(self) -> float:
        return self.correct / self.num_samples

    @property
    def max_accuracy(self) -> float:
        return self.bound_correct / self.num_samples

    @property
    def respected(self) -> bool:
        """True iff the measured accuracy does not exceed the bound."""
        return self.correct <= self.bound_correct


def bound_check(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, num_classes: int, lr: float,
                batch_size: int) -> BoundCheck:
    """Measure a^(L)'s bundles on ``(x, y)`` and the model's accuracy on the same samples.

    The model runs under :func:`reproduce.models.eval_mode`. ``lr``/``batch_size`` are the
    training run's, ``w_max`` is the model's (:func:`reproduce.metric.bundles.weight_amplitude`).
    """
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor) or len(x) != len(y) or len(x) == 0:
        raise ValueError("x and y must be non-empty tensors with the same number of samples")
    if not hasattr(model, "features"):
        raise ValueError(f"bound_check needs a model of this package (with features), got {type(model).__name__}")
    device = model_device(model)
    x, y = x.to(device), y.to(device)
    with eval_mode(model):
        activation = model.features(x)
        logits = model(x)
        stats = bundle_stats(activation, y, num_classes=num_classes, lr=lr, batch_size=batch_size,
                             weight_amplitude=weight_amplitude(model))
    n = len(y)
    correct = int((logits.argmax(dim=1) == y).sum())
    return BoundCheck(num_samples=n, correct=correct, bound_correct=int(round(stats.max_accuracy * n)),
                      num_bundles=int(stats.num_bundles), entropy=float(stats.entropy))


class TrainingBoundCallback:
    """Training callback ``cb(model, epoch, record)``: :func:`bound_check` on ``(x, y)``.

    Adds ``bound_samples``, ``bound_correct`` (accuracy in counts), ``bound_limit``
    (``sum_b max_c n_bc``), ``bound_accuracy``, ``bound_max_accuracy``, ``bound_num_bundles`` and
    ``bound_entropy`` to the epoch record. Pass the whole unaugmented training set as ``(x, y)``.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, *, num_classes: int, lr: float, batch_size: int):
        if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor) or len(x) != len(y) or len(x) == 0:
            raise ValueError("x and y must be non-empty tensors with the same number of samples")
        self.x, self.y = x, y
        self.num_classes, self.lr, self.batch_size = int(num_classes), float(lr), int(batch_size)

    def __call__(self, model: nn.Module, epoch: int, record: dict) -> None:
        chk = bound_check(model, self.x, self.y, num_classes=self.num_classes, lr=self.lr,
                          batch_size=self.batch_size)
        record.update(bound_samples=chk.num_samples, bound_correct=chk.correct, bound_limit=chk.bound_correct,
                      bound_accuracy=chk.accuracy, bound_max_accuracy=chk.max_accuracy,
                      bound_num_bundles=chk.num_bundles, bound_entropy=chk.entropy)


def majority_frequency(labels: torch.Tensor | Sequence[int], num_classes: int) -> float:
    """Frequency of the most frequent class: the accuracy bound of a single bundle."""
    y = torch.as_tensor(labels, dtype=torch.int64).flatten()
    if y.numel() == 0:
        raise ValueError("labels are empty")
    if int(y.min()) < 0 or int(y.max()) >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes - 1}], got range [{int(y.min())}, {int(y.max())}]")
    return int(torch.bincount(y, minlength=num_classes).max()) / y.numel()


# --------------------------------------------------------------------------------------------
# the worst case


def _check_collapse_index(model: nn.Module, index: int) -> None:
    if not isinstance(model, FNN):
        raise ValueError(f"collapse_layer needs an FNN, got {type(model).__name__}")
    n = len(model.hidden)
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < n:
        raise ValueError(f"collapse index must be an int in [0, {n - 1}] (hidden layers of {model.config.label}), "
                         f"got {index!r}")


def collapse_layer(model: FNN, index: int, bias: float = COLLAPSE_BIAS) -> FNN:
    """Make hidden layer ``index`` of ``model`` output 0 for every input (in place; returns it).

    Its weights become 0 and its biases ``bias`` (< 0), so ``ReLU(W x + b) = 0``: every input falls
    into one bundle from this layer on (the worst case of claim 1).
    """
    _check_collapse_index(model, index)
    if not bias < 0:
        raise ValueError(f"bias must be < 0 for the layer to be dead, got {bias!r}")
    with torch.no_grad():
        model.hidden[index].weight.zero_()
        model.hidden[index].bias.fill_(float(bias))
    return model


def layer_is_dead(model: FNN, index: int, x: torch.Tensor) -> bool:
    """True iff hidden layer ``index`` outputs exactly 0 for every sample of ``x`` (eval mode)."""
    _check_collapse_index(model, index)
    with eval_mode(model):
        for tap in model.iter_taps(x.to(model_device(model))):
            if tap.index == index:
                return bool((tap.activation == 0).all())
    raise AssertionError("unreachable: the index was checked")


@dataclass
class WorstCaseRun:
    """One run of :func:`train_worst_case`: its per-epoch records (and the model, unless cached).

    Every record holds ``epoch``, ``train_acc``, ``train_loss``, ``test_acc``, ``test_loss``, the
    keys of :class:`TrainingBoundCallback` (on the whole unaugmented training set), ``dead``
    (collapsed layer outputs 0 for every training sample; None for an intact net),
    ``collapsed_weight_absmax``/``collapsed_bias_max`` and ``seconds``.
    """

    model_config: ModelConfig
    train_config: TrainConfig
    collapse: int | None
    majority: float
    history: list[dict]
    model: nn.Module | None = None
    run_dir: Path | None = None
    cached: bool = False

    @property
    def label(self) -> str:
        return "collapsed" if self.collapse is not None else "intact"

    @property
    def seed(self) -> int:
        """The run's seed (data split, initialisation)."""
        return int(self.train_config.seed)


def bound_callback(data: Any, spec: Any) -> TrainingBoundCallback:
    """The :class:`TrainingBoundCallback` a run declares: on the whole unaugmented training set,
    with the run's learning rate and batch size."""
    x, y = dataset_tensors(data.train_eval)
    return TrainingBoundCallback(x, y, num_classes=data.num_classes, lr=spec.train.lr,
                                 batch_size=spec.train.batch_size)


def dead_layer_callback(data: Any, spec: Any, *, index: int | None) -> Callable[[nn.Module, int, dict], None]:
    """A callback recording whether hidden layer ``index`` is dead (``dead``; None when ``index`` is
    None) and its largest ``|weight|`` and bias (``collapsed_weight_absmax``, ``collapsed_bias_max``)."""
    x, _ = dataset_tensors(data.train_eval)

    def track_dead_layer(model: nn.Module, epoch: int, record: dict) -> None:
        if index is None:
            record["dead"] = None
            return
        layer = model.hidden[index]
        record["dead"] = layer_is_dead(model, index, x)
        record["collapsed_weight_absmax"] = float(layer.weight.detach().abs().max())
        record["collapsed_bias_max"] = float(layer.bias.detach().max())

    return track_dead_layer


def _check_worst_case(mcfg: ModelConfig, collapse: int | None) -> int | None:
    if mcfg.kind != "fnn":
        raise ValueError(f"the worst-case study uses an FNN, got model kind {mcfg.kind!r}")
    if collapse is not None and not (isinstance(collapse, (int, np.integer)) and 0 <= collapse < mcfg.fnn_depth):
        raise ValueError(f"collapse must be None or an int in [0, {mcfg.fnn_depth - 1}], got {collapse!r}")
    return None if collapse is None else int(collapse)


def worst_case_spec(scale: Scale, *, collapse: int | None, dataset: str | None = None, seed: int = 0,
                    width: int | None = None, depth: int = 4, epochs: int | None = None) -> RunSpec:
    """The run of the worst-case FNN (hidden layer ``collapse`` dead from the start; None: intact),
    declared. Defaults: ``width`` the middle of ``scale.fnn_widths``, ``epochs`` 3 x
    ``scale.fnn_epochs`` ("however long it trains")."""
    data = DataSpec(dataset or scale.dataset, int(seed), scale.train_limit, flat=True)
    width = width or scale.fnn_widths[len(scale.fnn_widths) // 2]
    mcfg = ModelConfig("fnn", data.num_classes, data.in_channels, data.image_size, fnn_width=int(width),
                       fnn_depth=int(depth))
    tcfg = TrainConfig(epochs=epochs or 3 * scale.fnn_epochs, batch_size=scale.batch_size, lr=scale.lr, seed=seed,
                       **scale.train_options(fnn=True))
    k = _check_worst_case(mcfg, collapse)
    name = "intact" if k is None else f"collapse{k}"
    callbacks = (Hook.to("reproduce.theory:bound_callback"), Hook.to("reproduce.theory:dead_layer_callback", index=k))
    init = None if k is None else Hook.to("reproduce.theory:collapse_layer", index=k)
    return RunSpec(scale.name, EXPERIMENT, f"{mcfg.label}-{name}", mcfg, tcfg, data, callbacks, init)


def worst_case_specs(scale: Scale, *, seeds: Sequence[int], collapse: int, dataset: str | None = None,
                     width: int | None = None, depth: int = 4, epochs: int | None = None) -> list[RunSpec]:
    """The worst-case runs of every seed: for each seed in order, the intact net then the net with
    hidden layer ``collapse`` dead (:func:`worst_case_spec`; same defaults)."""
    if collapse is None:
        raise ValueError("collapse must be the index of the hidden layer to collapse, got None")
    return [worst_case_spec(scale, collapse=k, dataset=dataset, seed=s, width=width, depth=depth, epochs=epochs)
            for s in check_seeds(seeds) for k in (None, collapse)]


def _worst_case_run(result: RunResult, data: Any, collapse: int | None, folder: Path | None) -> WorstCaseRun:
    majority = majority_frequency(dataset_tensors(data.train_eval)[1], data.num_classes)
    cached = result.resumed_from >= result.epochs_done and result.epochs_done > 0
    return WorstCaseRun(result.model_config, result.train_config, collapse, majority, result.history,
                        result.model, folder, cached)


def run_worst_case(spec: RunSpec, data: Any, *, device: str | None = "auto", progress: bool = True) -> WorstCaseRun:
    """Train (or reuse) the run of :func:`worst_case_spec` on the loaded ``data``."""
    collapse = None if spec.init is None else int(dict(spec.init.kwargs)["index"])
    return _worst_case_run(train_spec(spec, data=data, device=device, progress=progress), data, collapse,
                           spec.run_dir)


def run_worst_cases(scale: Scale, data: Any, *, seeds: Sequence[int], collapse: int, width: int | None = None,
                    depth: int = 4, epochs: int | None = None, data_root: str | Path | None = None,
                    device: str | None = "auto", progress: bool = True) -> dict[int, dict[str, WorstCaseRun]]:
    """Train (or reuse) the runs of :func:`worst_case_specs` on ``data``'s dataset, loaded with each
    seed (:func:`data_for_seed`); return ``{seed: {"intact": run, "collapsed": run}}``."""
    out: dict[int, dict[str, WorstCaseRun]] = {}
    for spec in worst_case_specs(scale, seeds=seeds, collapse=collapse, dataset=data.name, width=width,
                                 depth=depth, epochs=epochs):
        seed = int(spec.train.seed)
        run = run_worst_case(spec, data_for_seed(data, seed, data_root), device=device, progress=progress)
        out.setdefault(seed, {})[run.label] = run
    return out


def train_worst_case(model_config: ModelConfig, data: Any, train_config: TrainConfig, *,
                     collapse: int | None, run_dir: str | Path | None = None, device: str | None = "auto",
                     progress: bool = True, desc: str | None = None) -> WorstCaseRun:
    """Train an FNN whose hidden layer ``collapse`` is dead from the start (or, with ``collapse=None``,
    the same network intact) on any ``data`` and record every epoch (see :class:`WorstCaseRun`);
    the same callbacks and initialisation as :func:`worst_case_spec` declares.

    Training is :func:`reproduce.training.train` with an ``init_fn`` that collapses the layer
    before the optimiser is built (so Lookahead's slow weights start collapsed too). With
    ``run_dir`` the run is checkpointed in ``run_dir/collapse<k>`` (or ``run_dir/intact``): a later
    call resumes it or returns it finished (``cached`` is then True).
    """
    k = _check_worst_case(model_config, collapse)
    spec = SimpleNamespace(train=train_config)
    callbacks = [bound_callback(data, spec), dead_layer_callback(data, spec, index=k)]
    folder = None if run_dir is None else Path(run_dir) / ("intact" if k is None else f"collapse{k}")
    result = train(model_config, data, train_config, folder, callbacks=callbacks, device=device, progress=progress,
                   desc=desc or f"{model_config.label} {'intact' if k is None else 'collapsed'}",
                   init_fn=None if k is None else (lambda model: collapse_layer(model, k)))
    return _worst_case_run(result, data, k, folder)


def worst_case_frame(runs: Sequence[WorstCaseRun]) -> pd.DataFrame:
    """Long table of several :class:`WorstCaseRun` s: one row per (run, epoch), with ``seed``,
    ``network`` (``collapsed``/``intact``) and the run's ``majority`` frequency."""
    rows = []
    for run in runs:
        for rec in run.history:
            rows.append({"seed": run.seed, "network": run.label, "collapse": run.collapse, "majority": run.majority,
                         **rec})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# the claims' rules


@dataclass(frozen=True)
class BoundSummary:
    """Claim 1(a) over a per-epoch table with ``bound_correct``/``bound_limit`` columns.

    ``pairs``: (network, epoch) measurements; ``respected``: those with accuracy <= bound;
    ``below_one``: those whose bound is < 1 (a^(L) has conflicting bundles on the training set);
    ``tight``: those with accuracy == bound < 1; ``min_gap``: the smallest ``bound - accuracy``.
    ``holds`` is the rule: every pair respects the bound (integer counts, no tolerance).
    """

    pairs: int
    respected: int
    below_one: int
    tight: int
    min_gap: float

    @property
    def holds(self) -> bool:
        return self.pairs > 0 and self.respected == self.pairs


def bound_summary(epochs: pd.DataFrame) -> BoundSummary:
    """Apply claim 1(a)'s rule to a table with columns ``bound_samples``, ``bound_correct``,
    ``bound_limit`` (one row per network and epoch, e.g. :attr:`reproduce.experiments.fnn_map.FnnMap.epochs`)."""
    missing = [c for c in ("bound_samples", "bound_correct", "bound_limit") if c not in epochs.columns]
    if missing:
        raise ValueError(f"the table lacks columns {missing}")
    e = epochs.dropna(subset=["bound_correct", "bound_limit", "bound_samples"])
    n, correct, limit = (e[c].astype("int64") for c in ("bound_samples", "bound_correct", "bound_limit"))
    below = limit < n
    gap = (limit - correct) / n
    return BoundSummary(pairs=int(len(e)), respected=int((correct <= limit).sum()), below_one=int(below.sum()),
                        tight=int((below & (correct == limit)).sum()),
                        min_gap=float(gap.min()) if len(e) else float("nan"))


@dataclass(frozen=True)
class WorstCaseSummary:
    """Claim 1(b): the collapsed net against the same net intact.

    ``holds`` is the rule: the collapsed layer was dead after every epoch, the collapsed net's
    training accuracy never exceeded the majority-class frequency (no tolerance: it is exact), and
    the intact net's final training accuracy exceeds it.
    """

    majority: float
    epochs: int
    collapsed_max_train_acc: float
    collapsed_final_train_acc: float
    dead_every_epoch: bool
    intact_final_train_acc: float

    @property
    def holds(self) -> bool:
        return (self.dead_every_epoch and self.collapsed_max_train_acc <= self.majority
                and self.intact_final_train_acc > self.majority)


def worst_case_summary(collapsed: WorstCaseRun, intact: WorstCaseRun) -> WorstCaseSummary:
    """Apply claim 1(b)'s rule (see :class:`WorstCaseSummary`) to the records of epochs >= 1 (an
    epoch-0 record, the untrained net, is left out: the claim is about training)."""
    if collapsed.collapse is None or intact.collapse is not None:
        raise ValueError("pass the collapsed run first and the intact run second")
    c_hist = trained_records(collapsed.history)
    c_acc = [r.get("train_acc") for r in c_hist]
    i_acc = [r.get("train_acc") for r in trained_records(intact.history)]
    if not c_acc or not i_acc or None in c_acc:
        raise ValueError("both runs need at least one finished epoch (the collapsed run must not diverge)")
    return WorstCaseSummary(
        majority=collapsed.majority, epochs=len(c_acc), collapsed_max_train_acc=max(c_acc),
        collapsed_final_train_acc=c_acc[-1], dead_every_epoch=all(r.get("dead") is True for r in c_hist),
        intact_final_train_acc=float("nan") if i_acc[-1] is None else i_acc[-1],
    )



def theory_claims(epochs: pd.DataFrame, worst: dict[int, dict[str, WorstCaseRun]], *,
                  train_samples: int) -> list[Claim]:
    """Claim 1's two rows, decided per seed and over seeds (rules fixed before any run).

    ``epochs``: the grid's per-epoch table with a ``seed`` column (:attr:`reproduce.experiments.fnn_map.FnnMap.epochs`);
    ``worst``: :func:`run_worst_cases`' result. Both must cover the same seeds.

    Per seed: **1a** holds iff for every network of the grid and every epoch (an epoch-0 record
    included) the number of correctly classified training samples is <= ``sum_b max_c n_bc``
    (:func:`bound_summary`, integer counts, no tolerance); **1b** holds iff the collapsed layer was
    dead after every epoch, the collapsed net's training accuracy never exceeded the majority-class
    frequency and the intact net's final training accuracy exceeds it (:func:`worst_case_summary`).

    Rule over seeds (:func:`reproduce.experiments.claims.over_seeds`, no pooled form: both rules already
    quantify over every measurement): a row holds iff its rule holds in every seed, and does not
    hold if it fails in any seed.
    """
    if "seed" not in epochs.columns:
        raise ValueError(f"the epochs table has no seed column; its columns are {list(epochs.columns)}")
    seeds = sorted(int(s) for s in epochs["seed"].unique())
    if seeds != sorted(worst):
        raise ValueError(f"the grid has seeds {seeds} but the worst-case runs have seeds {sorted(worst)}")
    bounds = [bound_summary(epochs[epochs["seed"] == s]) for s in seeds]
    cases = [worst_case_summary(worst[s]["collapsed"], worst[s]["intact"]) for s in seeds]
    label = worst[seeds[0]]["collapsed"].model_config.label
    pairs, respected = sum(b.pairs for b in bounds), sum(b.respected for b in bounds)
    b_ok, w_ok = [b.holds for b in bounds], [w.holds for w in cases]
    return [
        Claim(
            "1a: conflicting bundles at a^(L) bound the training accuracy",
            "no training accuracy above (1/N) sum_b max_c n_bc is reachable",
            f"{respected}/{pairs} (network, epoch) measurements over {len(seeds)} seed(s) respect the bound on "
            f"{train_samples} training samples; per seed {seed_outcomes(b_ok, seeds)}; measurements over the "
            f"bound {seed_values([b.pairs - b.respected for b in bounds], '{:.0f}', seeds)}; bound < 1 in "
            f"{sum(b.below_one for b in bounds)}, tight in {sum(b.tight for b in bounds)}",
            over_seeds(b_ok), seeds=len(seeds)),
        Claim(
            "1b: a single bundle makes a network untrainable",
            "one bundle gives at most the majority-class frequency",
            f"collapsed {label}: max training accuracy "
            f"{seed_values([w.collapsed_max_train_acc for w in cases], '{:.4f}', seeds)} over "
            f"{seed_values([w.epochs for w in cases], '{:.0f}', seeds)} epochs (majority "
            f"{seed_values([w.majority for w in cases], '{:.4f}', seeds)}; layer dead every epoch in "
            f"{sum(w.dead_every_epoch for w in cases)} of {len(seeds)} seeds); intact final "
            f"{seed_values([w.intact_final_train_acc for w in cases], '{:.4f}', seeds)}; per seed "
            f"{seed_outcomes(w_ok, seeds)}",
            over_seeds(w_ok), seeds=len(seeds)),
    ]


def notebook_jobs(stem: str, scale: Scale, seed: int) -> list[RunSpec]:
    """Notebook 01's runs (:mod:`reproduce.experiments.notebooks`): the FNN grid of
    :func:`reproduce.experiments.fnn_map.run_specs` over the seeds ``seed .. seed + scale.repeats - 1``,
    then the worst-case cell's intact and collapsed nets per seed (:func:`worst_case_specs`)."""
    from reproduce.experiments import fnn_map

    d = NOTEBOOK_DEFAULTS[stem]
    seeds = range(seed, seed + scale.repeats)
    return [*fnn_map.run_specs(scale, seeds=seeds),
            *worst_case_specs(scale, seeds=seeds, collapse=d["collapse_index"], dataset=scale.dataset,
                              width=d["worst_case_width"], depth=d["worst_case_depth"], epochs=d["worst_case_epochs"])]
