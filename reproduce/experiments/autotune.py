"""Auto-tune (claim 5): a search that removes conflicting layers at the start of training.

The paper's algorithm (``docs/method.md#autotune``), as :func:`search` with ``kind="plain"``. The
authors' repository holds two versions of it, and ``AutotuneConfig.variant`` picks one:

* ``"paper"`` (the default): the code of commit 8690359 (2021-02-21), the last one before the paper
  (arXiv v1, 2021-03-07)::

      blocks = start blocks ([3, 12, 41, 3] = 120 layers); plain network (no skips)
      repeat:
          build a network with `blocks` from a new random initialisation
          for epoch e = 0 .. epochs-1:
              if e < check_epochs and H(a^(L)) > 0 on a fresh training batch:  # e = 0: untrained net
                  measure H of every block on another fresh batch
                  for every stage s: blocks[s] = number of blocks of stage s with H == 0
                  restart with the new blocks
              train epoch e
      until a network trains for all epochs with no conflict found

  In this project's loop (``TrainConfig.measure_start``) "before training epoch e" is the record
  of epoch ``e`` (the state after ``e`` trained epochs), so records ``0 .. check_epochs-1`` are
  checked (:func:`prune_all_stages`).
* ``"revised"``: the repository's HEAD, commit 9c0b9b5 (2022-05-09), written after the paper: the
  checks come after training each of epochs ``1 .. check_epochs`` and only the first stage
  holding a conflicting block is cut, ``blocks[s]`` = its number of blocks with ``H == 0``; the
  other stages keep their counts (:func:`prune_blocks`).

This is our reading of those two versions (their TensorFlow code is not ours); the choices the
specification leaves open are listed below.

Each attempt is one :func:`reproduce.training.train` call with its own run folder
(``results/<scale>/autotune/<dataset>-<kind>-s<seed>-try<i>-<blocks>-<hash>``) and a
:class:`ConflictCheck` callback; a conflict ends the attempt (status ``stopped``, reason
``conflict``). The search log -- one entry per attempt: blocks before, epoch of detection,
H(a^(L)), per-block entropies, pruned stage, blocks after -- is written atomically after every
attempt to ``results/<scale>/autotune/searches/<dataset>-<kind>-s<seed>-<hash>.json``. An
interrupted search resumes: finished attempts are returned by ``train`` from their folders without
training, an interrupted attempt resumes from its last checkpoint, and the search goes on.

Choices the specification leaves open (written down here):

* "Measure H of every block": a block's entropy is that of the tap that decides whether it is
  conflicting (:func:`reproduce.metric.bundles.layer_rows`: a plain block's output tap, a residual
  block's branch tap). ``blocks[s]`` counts the blocks of stage ``s`` with ``H == 0`` exactly as the
  method says (in a plain net bundles never split, so this equals the index of the first
  conflicting block of the stage); ``revised`` sets it for the first conflicting stage and keeps
  the other counts, ``paper`` sets it for every stage; a stage may drop to 0 blocks.
* Seeds: every attempt starts from a new initialisation and measures new batches, as the
  released code does (TensorFlow draws new weights). Attempt ``i`` trains with
  ``TrainConfig(seed=s_i)`` and measures with ``measurement_samples(data, n, s_i, ...)``, where
  ``s_0 = seed`` and ``s_i = derive_seed(seed, i, "autotune-attempt")`` for ``i >= 1``
  (:mod:`reproduce.config.seeds`); the data split is always
  ``load_dataset(dataset, seed=seed, train_limit=scale.train_limit)`` (as the fixed-depth baselines of
  :mod:`reproduce.experiments.depth_study`).
* When a conflict is found but the pruning pass finds no conflicting block (every block has
  ``H == 0``, or pruning changes nothing), the release trains the same blocks again from new
  weights: so does the search (attempt outcome ``retry-no-conflicting-block``), under the attempt cap.
* Every attempt logs a machine-readable ``outcome`` (:data:`ATTEMPT_OUTCOMES`) and the search a
  ``stop_reason`` (:data:`STOP_REASONS`) next to the readable ``reason``: ``found``;
  ``diverged`` (non-finite loss); ``empty-net`` (pruning would leave no block); ``attempt-cap``
  (``max_attempts`` attempts, default 20; the search resumes when called with a larger cap);
  ``unknown-stop`` (a run stopped for another reason).
* The found network's **test accuracy** is the mean over its last ``scale.last_epochs`` epochs (as for
  every run of this project).

**Beyond the paper (this project's addition): the residual variant** (``kind="residual"``). The
same loop on residual nets, where a block is conflicting when its *branch tap* has ``H > 0``
(``docs/method.md#taps``). A residual net's a^(L) carries the identity path and rarely bundles, so the trigger is
different: after each check epoch every tap is measured, and a conflict is found when some block's
branch tap has ``H > 0`` (trigger ``"branch"``). Pruning uses the variant's stage-wise rule on the branch
entropies (``revised``: ``s`` = first stage with a conflicting branch, ``blocks[s]`` = number of blocks
of stage ``s`` whose branch has ``H == 0``; ``paper``: the same count for every stage). (Branches may split again after a conflict, so unlike the plain
case this is not the index of the first conflicting block.) ``trigger="a_L"`` runs the residual
search with the paper's trigger instead.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from reproduce.metric import bundles
from reproduce.data.datasets import MEASUREMENT_SAMPLES, DataBundle, load_dataset, measurement_samples
from reproduce.experiments.efficiency import efficiency_report, inference_times
from reproduce.models.nets import CONV_KINDS, ModelConfig, as_blocks, conv_config, depth_for_blocks
from reproduce.experiments.claims import Claim, over_seeds, seed_outcomes, seed_values
from reproduce.files.paths import results_dir, run_dir
from reproduce.training.runs import RunSpec, train_spec
from reproduce.config.scales import Scale
from reproduce.files.storage import atomic_write_text, config_hash, legacy_field
from reproduce.training.loop import RunResult, TrainConfig, final_test_accuracy, train
from reproduce.config.seeds import derive_seed

__all__ = [
    "EXPERIMENT",
    "AUTOTUNE_KINDS",
    "TRIGGERS",
    "SEARCH_STATUSES",
    "TABLE_COLUMNS",
    "AutotuneConfig",
    "ConflictCheck",
    "SearchResult",
    "block_entropies",
    "baseline_specs",
    "SearchSpec",
    "search_specs",
    "autotune_claims",
    "prune_blocks",
    "prune_all_stages",
    "larger_net_rule",
    "STRICT_ROWS",
    "LARGER_ROW",
    "VARIANTS",
    "ATTEMPT_OUTCOMES",
    "STOP_REASONS",
    "attempt_seed",
    "search",
    "search_log_path",
    "load_search_log",
    "run_searches",
    "baseline_runs",
    "comparison_table",
    "summary_table",
    "pareto_front",
    "latency_table",
    "study",
    "restart_entropies", "NOTEBOOK_DEFAULTS", "notebook_jobs"]

#: experiment folder under ``results/<scale>/``
EXPERIMENT = "autotune"

#: the defaults of notebook 06's parameters cell that decide its runs (:mod:`reproduce.experiments.notebooks`)
NOTEBOOK_DEFAULTS = {"06_auto_tune": {"dataset": None, "residual": None, "max_attempts": 20}}
AUTOTUNE_KINDS = CONV_KINDS
#: ``a_L``: the paper's trigger H(a^(L)) > 0; ``branch``: some residual branch has H > 0
TRIGGERS = ("a_L", "branch")
#: ``found``: a net trained to the end without conflict; ``stopped``: the search gave up (reason
#: logged); ``incomplete``: the attempt cap was reached (resumable with a larger cap)
SEARCH_STATUSES = ("found", "stopped", "incomplete")
#: ``paper``: the authors' code before the paper (8690359); ``revised``: their HEAD (9c0b9b5)
VARIANTS = ("paper", "revised")
#: what one attempt led to (``outcome`` of its log entry)
ATTEMPT_OUTCOMES = ("found", "pruned", "retry-no-conflicting-block", "diverged", "empty-net", "unknown-stop")
#: why a search ended (``stop_reason`` of its log)
STOP_REASONS = ("found", "attempt-cap", "diverged", "empty-net", "unknown-stop")
DEFAULT_MAX_ATTEMPTS = 20
STOP_REASON = "conflict"
#: columns of :func:`comparison_table` (``latency_ms`` and ``cuda_peak_mb`` are measured on this machine;
#: everything else follows from the runs and the architectures)
TABLE_COLUMNS = (
    "dataset", "model", "source", "kind", "seed", "blocks", "depth", "status", "attempts",
    "test_acc", "parameters", "macs", "size_mb", "activation_mb", "memory_mb", "latency_ms", "cuda_peak_mb",
)


def _blocks_label(blocks: Sequence[int]) -> str:
    return "-".join(str(int(b)) for b in blocks)


@dataclass(frozen=True)
class AutotuneConfig:
    """What one search does (everything but the dataset, the seed and the attempt cap).

    ``trigger`` defaults by kind: ``a_L`` (paper) for plain nets, ``branch`` for residual nets
    (module docstring). ``variant`` (:data:`VARIANTS`): ``paper`` (8690359, the default: checks on
    records ``0 .. check_epochs-1``, every stage pruned) or ``revised`` (9c0b9b5: checks after
    epochs ``1 .. check_epochs``, the first conflicting stage pruned).
    """

    kind: str = "plain"
    start_blocks: tuple[int, int, int, int] = (3, 12, 41, 3)
    check_epochs: int = 10
    epochs: int = 120
    width: float = 1.0
    batch_size: int = 64
    lr: float = 1e-3
    sample_size: int = 64
    train_limit: int | None = None
    trigger: str | None = None
    #: "fresh": every check measures a new seeded training batch and its pruning pass another one
    #: (as released); "fixed": one measurement set for the whole search
    measurement: str = "fresh"
    #: which released version of the search (module docstring); "paper" = 8690359. Configs
    #: written before the field were "revised" (left out of the hash there: their names stay)
    variant: str = legacy_field("paper", "revised")

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown auto-tune variant {self.variant!r}; valid choices are {', '.join(VARIANTS)}")
        if self.measurement not in MEASUREMENT_SAMPLES:
            raise ValueError(f"unknown measurement {self.measurement!r}; valid choices are "
                             f"{', '.join(MEASUREMENT_SAMPLES)}")
        if self.kind not in AUTOTUNE_KINDS:
            raise ValueError(f"unknown auto-tune kind {self.kind!r}; valid kinds are {', '.join(AUTOTUNE_KINDS)}")
        object.__setattr__(self, "start_blocks", as_blocks(self.start_blocks))
        if sum(self.start_blocks) == 0:
            raise ValueError(f"start_blocks must hold at least one block, got {self.start_blocks!r}")
        if self.epochs < 1 or not 0 <= self.check_epochs:
            raise ValueError(f"need epochs >= 1 and check_epochs >= 0, got {self.epochs}, {self.check_epochs}")
        trigger = self.trigger or ("a_L" if self.kind == "plain" else "branch")
        if trigger not in TRIGGERS:
            raise ValueError(f"unknown trigger {trigger!r}; valid triggers are {', '.join(TRIGGERS)}")
        if trigger == "branch" and self.kind != "residual":
            raise ValueError("trigger 'branch' needs residual nets (plain blocks have no branch tap)")
        object.__setattr__(self, "trigger", trigger)

    @classmethod
    def from_scale(cls, scale: Scale, kind: str = "plain", **changes: Any) -> "AutotuneConfig":
        """The search of preset ``scale``: its start blocks, check epochs, epochs, width, lr, ..."""
        values = dict(kind=kind, start_blocks=scale.autotune_blocks, check_epochs=scale.autotune_check_epochs,
                      epochs=scale.autotune_epochs, width=scale.width, batch_size=scale.batch_size, lr=scale.lr,
                      sample_size=scale.sample_size, train_limit=scale.train_limit, measurement=scale.measurement)
        values.update(changes)
        return cls(**values)

    def train_config(self, scale: Scale, seed: int) -> TrainConfig:
        """The ``TrainConfig`` every attempt of this search trains with (the plan sizes a search
        with it too)."""
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, seed=seed,
                           **scale.train_options())

    @property
    def first_check_epoch(self) -> int:
        """The first checked record: 0 (the untrained net, ``paper``) or 1 (``revised``)."""
        return 0 if self.variant == "paper" else 1

    @property
    def is_paper(self) -> bool:
        """True for the paper's algorithm (plain nets, a^(L) trigger); False for the addition."""
        return self.kind == "plain" and self.trigger == "a_L"


# --------------------------------------------------------------------------------------------
# the pruning rule


def block_entropies(rows: Sequence[dict] | pd.DataFrame) -> list[dict[str, Any]]:
    """Per-block entropies from the tap rows of :func:`reproduce.metric.bundles.measure_model`.

    Each block is judged by its deciding tap (:func:`reproduce.metric.bundles.layer_rows`: a plain
    block's output, a residual block's branch). Returns dicts with ``block``, ``stage``, ``tap``,
    ``entropy``, ``num_bundles`` in block order (empty for a net without blocks).
    """
    out = [{"block": int(r["block"]), "stage": int(r["stage"]), "tap": str(r["tap"]),
            "entropy": float(r["entropy"]), "num_bundles": int(r["num_bundles"])}
           for r in bundles.layer_rows(rows) if r.get("role") in ("branch", "output")]
    return sorted(out, key=lambda d: d["block"])


def prune_blocks(blocks: Sequence[int], stages: Sequence[int], entropies: Sequence[float]
                 ) -> tuple[tuple[int, int, int, int], int | None]:
    """The search's pruning step: ``(new_blocks, s)``.

    ``stages[i]`` and ``entropies[i]`` are the stage and the bundle entropy of block ``i`` (network
    order). ``s`` is the first stage holding a block with ``H > 0``, and ``new_blocks[s]`` is the
    number of blocks of stage ``s`` with ``H == 0``; the other stages are unchanged. Without a
    conflicting block the blocks come back unchanged with ``s = None``.
    """
    blocks, stages, entropies = _prune_input(blocks, stages, entropies)
    conflicting = [s for s, h in zip(stages, entropies) if h > 0]
    if not conflicting:
        return blocks, None
    s = conflicting[0]
    new = list(blocks)
    new[s] = sum(1 for st, h in zip(stages, entropies) if st == s and h == 0)
    return tuple(new), s  # type: ignore[return-value]


def prune_all_stages(blocks: Sequence[int], stages: Sequence[int], entropies: Sequence[float]
                     ) -> tuple[tuple[int, int, int, int], list[int]]:
    """The ``paper`` variant's pruning step: ``(new_blocks, changed_stages)``.

    Same inputs as :func:`prune_blocks`. Every stage ``s`` at once gets ``new_blocks[s]`` = the
    number of its blocks with ``H == 0``; ``changed_stages`` lists the stages whose count dropped
    (empty, with the blocks unchanged, when no block is conflicting).
    """
    blocks, stages, entropies = _prune_input(blocks, stages, entropies)
    new = tuple(sum(1 for st, h in zip(stages, entropies) if st == s and h == 0) for s in range(4))
    return new, [s for s in range(4) if new[s] != blocks[s]]  # type: ignore[return-value]


def _prune_input(blocks: Sequence[int], stages: Sequence[int], entropies: Sequence[float]
                 ) -> tuple[tuple[int, int, int, int], list[int], list[float]]:
    """The checked inputs of the pruning rules (ValueError naming what does not match)."""
    blocks = as_blocks(blocks)
    stages = [int(s) for s in stages]
    entropies = [float(h) for h in entropies]
    if len(stages) != len(entropies):
        raise ValueError(f"stages and entropies differ in length: {len(stages)} != {len(entropies)}")
    counts = [stages.count(s) for s in range(4)]
    if len(stages) != sum(blocks) or tuple(counts) != blocks or stages != sorted(stages):
        raise ValueError(f"per-block stages {stages} do not match blocks {list(blocks)}")
    if any(not math.isfinite(h) or h < 0 for h in entropies):
        raise ValueError(f"entropies must be finite and >= 0, got {entropies}")
    return blocks, stages, entropies


# --------------------------------------------------------------------------------------------
# the check after every epoch


class ConflictCheck:
    """Training callback: at each of ``check_epochs`` records look for a conflict.

    Records ``first_epoch .. first_epoch + check_epochs - 1`` are checked: with ``first_epoch=1``
    (``revised``) the epochs ``1..check_epochs``, never the epoch-0 record (the untrained net);
    with ``first_epoch=0`` (``paper``) the untrained net and the states before training epochs
    ``1..check_epochs-1``.
    Trigger ``a_L``: measure H(a^(L)); if it is > 0, measure every tap. Trigger ``branch``: measure
    every tap; a conflict is a branch tap with ``H > 0``. On a conflict the per-block entropies go
    to ``record["autotune_blocks"]`` and ``record["stop"] = "conflict"`` ends the attempt. Every
    checked epoch records ``autotune_a_L_entropy``, ``autotune_a_L_num_bundles`` and
    ``autotune_conflict`` (bool).

    Samples: ``x``, ``y`` for every measurement, or, with ``draw`` (``draw(k)`` -> a fresh batch),
    the released behaviour: the check of epoch ``e`` measures ``draw(2 e)`` and its pruning pass
    (every tap, after an ``a_L`` trigger) another batch, ``draw(2 e + 1)``.
    """

    def __init__(self, x: torch.Tensor | None, y: torch.Tensor | None, *, kind: str, trigger: str,
                 num_classes: int, lr: float, batch_size: int, check_epochs: int,
                 draw: Callable[[int], tuple[torch.Tensor, torch.Tensor]] | None = None, first_epoch: int = 1):
        if trigger not in TRIGGERS:
            raise ValueError(f"unknown trigger {trigger!r}; valid triggers are {', '.join(TRIGGERS)}")
        if kind not in AUTOTUNE_KINDS:
            raise ValueError(f"unknown auto-tune kind {kind!r}; valid kinds are {', '.join(AUTOTUNE_KINDS)}")
        self.x, self.y, self.draw = x, y, draw
        self.kind, self.trigger = kind, trigger
        self.kw = dict(num_classes=int(num_classes), lr=float(lr), batch_size=int(batch_size))
        self.check_epochs = int(check_epochs)
        if first_epoch not in (0, 1):
            raise ValueError(f"first_epoch must be 0 (paper) or 1 (revised), got {first_epoch!r}")
        self.first_epoch = int(first_epoch)

    def __call__(self, model: nn.Module, epoch: int, record: dict) -> None:
        # revised: epoch 0 (the untrained net) is not checked; paper: records 0..check_epochs-1
        if not self.first_epoch <= epoch < self.first_epoch + self.check_epochs:
            return
        (x, y), prune = self._samples(2 * epoch), lambda: self._samples(2 * epoch + 1)
        if self.trigger == "a_L":
            st = bundles.measure_last_layer(model, x, y, **self.kw)
            a_l, n_b = float(st.entropy), int(st.num_bundles)
            conflict = a_l > 0
            per_block = (block_entropies(bundles.measure_model(model, *prune(), **self.kw))
                         if conflict else None)
        else:
            rows = bundles.measure_model(model, x, y, **self.kw).to_dict("records")
            a_l, n_b = float(rows[-1]["entropy"]), int(rows[-1]["num_bundles"])
            per_block = block_entropies(rows)
            conflict = any(b["entropy"] > 0 for b in per_block)
            if not conflict:
                per_block = None
        record["autotune_a_L_entropy"] = a_l
        record["autotune_a_L_num_bundles"] = n_b
        record["autotune_conflict"] = bool(conflict)
        if conflict:
            record["autotune_blocks"] = per_block
            record["stop"] = STOP_REASON

    def _samples(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.draw(k) if self.draw is not None else (self.x, self.y)


# --------------------------------------------------------------------------------------------
# the search


@dataclass
class SearchResult:
    """The outcome of one search. ``blocks`` is the found architecture (None unless ``found``);
    ``final`` the run of the last attempt; ``attempts`` the log entries (see :func:`search`)."""

    dataset: str
    kind: str
    seed: int
    status: str
    reason: str
    blocks: tuple[int, int, int, int] | None
    attempts: list[dict]
    final: RunResult | None
    log_path: Path
    config: AutotuneConfig
    last_epochs: int = 1
    #: machine-readable reason the search ended (:data:`STOP_REASONS`)
    stop_reason: str = ""

    @property
    def depth(self) -> int | None:
        return None if self.blocks is None else depth_for_blocks(self.blocks)

    @property
    def restarts(self) -> int:
        """Number of restarts (attempts stopped by a conflict and followed by another attempt)."""
        return sum(1 for a in self.attempts if a.get("blocks_after") is not None)

    @property
    def test_accuracy(self) -> float:
        """Mean test accuracy of the found net over the last epochs (nan unless ``found``)."""
        if self.status != "found" or self.final is None:
            return math.nan
        return final_test_accuracy(self.final.history, self.last_epochs)


def search_log_path(scale: Scale, cfg: AutotuneConfig, *, dataset: str, seed: int) -> Path:
    """``results/<scale>/autotune/searches/<dataset>-<kind>-s<seed>-<hash of cfg>.json``."""
    return results_dir(scale, EXPERIMENT, "searches") / f"{dataset}-{cfg.kind}-s{seed}-{config_hash(cfg, dataset)}.json"


def load_search_log(path: str | Path) -> dict | None:
    """The search log at ``path``, or None when missing or unreadable (it is rewritten then)."""
    try:
        log = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return log if isinstance(log, dict) and "attempts" in log else None


def _attempt_entry(i: int, run: RunResult, blocks: tuple[int, ...], last_epochs: int) -> dict[str, Any]:
    hist = run.history
    conflict_rec = next((r for r in hist if r.get("autotune_conflict")), None)
    return {
        "attempt": i,
        "blocks": list(blocks),
        "depth": depth_for_blocks(blocks),
        "run_dir": str(run.run_dir) if run.run_dir is not None else None,
        "status": run.status,
        "epochs_done": run.epochs_done,
        "detection_epoch": None if conflict_rec is None else int(conflict_rec["epoch"]),
        "a_L_entropy": None if conflict_rec is None else conflict_rec.get("autotune_a_L_entropy"),
        "a_L_entropies": [r.get("autotune_a_L_entropy") for r in hist if "autotune_a_L_entropy" in r],
        "block_entropies": None if conflict_rec is None else conflict_rec.get("autotune_blocks"),
        "conflicting_blocks": (None if conflict_rec is None else
                               [b["block"] for b in conflict_rec.get("autotune_blocks") or [] if b["entropy"] > 0]),
        "outcome": None,
        "pruned_stage": None,
        "pruned_stages": None,
        "blocks_after": None,
        "test_acc": final_test_accuracy(hist, last_epochs) if run.status == "finished" else None,
        "seconds": float(sum(r.get("seconds", 0.0) or 0.0 for r in hist)),
    }


def attempt_seed(seed: int, attempt: int) -> int:
    """The training and measurement seed of attempt ``attempt`` of the search seeded ``seed``:
    ``seed`` itself for attempt 0, ``derive_seed(seed, attempt, "autotune-attempt")`` after it."""
    if int(attempt) < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt!r}")
    return int(seed) if int(attempt) == 0 else derive_seed(seed, attempt, "autotune-attempt")


def _attempt_check(cfg: AutotuneConfig, data: DataBundle, seed_i: int) -> ConflictCheck:
    """The conflict check of one attempt: its batches drawn from ``seed_i``."""
    n = min(cfg.sample_size, len(data.train_eval))
    if cfg.measurement == "fresh":
        x = y = None
        draw = lambda k: measurement_samples(data, n, seed_i, draw=k)  # noqa: E731
    else:
        (x, y), draw = measurement_samples(data, n, seed_i), None
    return ConflictCheck(x, y, kind=cfg.kind, trigger=cfg.trigger, num_classes=data.num_classes, lr=cfg.lr,
                         batch_size=cfg.batch_size, check_epochs=cfg.check_epochs, draw=draw,
                         first_epoch=cfg.first_check_epoch)


def _next_blocks(cfg: AutotuneConfig, blocks: tuple[int, int, int, int], entry: dict) -> tuple[int, int, int, int]:
    """After a conflict: the variant's pruning of ``blocks``; fills ``entry``'s ``outcome``,
    ``pruned_stage`` (first changed stage), ``pruned_stages`` and ``blocks_after``."""
    per_block = entry["block_entropies"] or []
    stages, hs = [b["stage"] for b in per_block], [b["entropy"] for b in per_block]
    if cfg.variant == "paper":
        new, changed = prune_all_stages(blocks, stages, hs)
    else:
        new, s = prune_blocks(blocks, stages, hs)
        changed = [] if s is None or new == blocks else [s]
    if not changed:
        entry["outcome"] = "retry-no-conflicting-block"
        return blocks
    entry.update(pruned_stage=changed[0], pruned_stages=changed, blocks_after=list(new))
    entry["outcome"] = "empty-net" if sum(new) == 0 else "pruned"
    return new


def search(
    scale: Scale,
    kind: str = "plain",
    *,
    dataset: str | None = None,
    seed: int = 0,
    data: DataBundle | None = None,
    config: AutotuneConfig | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    device: str | None = "auto",
    progress: bool = True,
) -> SearchResult:
    """Run (or resume) one auto-tune search on ``dataset`` (default ``scale.dataset``) with ``seed``.

    ``config`` defaults to ``AutotuneConfig.from_scale(scale, kind)``. ``data`` may pass the loaded
    dataset (``load_dataset(dataset, seed=seed, train_limit=scale.train_limit)``). The log (a JSON
    object with the config, ``attempts``, ``status``, ``reason``, ``stop_reason`` and ``blocks``) is
    rewritten atomically after every attempt; each attempt entry holds ``attempt``, ``seed`` (its
    :func:`attempt_seed`), ``blocks`` (before), ``depth``, ``run_dir``, ``status`` of the run,
    ``outcome``, ``epochs_done``, ``detection_epoch``, ``a_L_entropy`` (at detection),
    ``a_L_entropies`` (every checked epoch), ``block_entropies`` (per block at detection: ``block``,
    ``stage``, ``tap``, ``entropy``, ``num_bundles``), ``conflicting_blocks``, ``pruned_stage``,
    ``pruned_stages``, ``blocks_after``, ``test_acc`` and ``seconds``.
    """
    cfg = config or AutotuneConfig.from_scale(scale, kind)
    if config is not None and config.kind != kind:
        raise ValueError(f"config.kind {config.kind!r} differs from kind {kind!r}")
    if int(max_attempts) < 1:
        raise ValueError(f"max_attempts must be >= 1, got {max_attempts!r}")
    dataset = dataset or scale.dataset
    if data is None:
        data = load_dataset(dataset, seed=seed, train_limit=cfg.train_limit)
    elif data.name != dataset:
        raise ValueError(f"data holds dataset {data.name!r} but dataset={dataset!r} was asked for")
    if cfg.variant == "paper" and not cfg.train_config(scale, seed).measure_start:
        raise ValueError("variant 'paper' checks the untrained net: it needs TrainConfig.measure_start=True")
    log = _SearchLog(scale, cfg, dataset, seed)
    blocks, run = cfg.start_blocks, None
    for i in range(int(max_attempts)):
        seed_i = attempt_seed(seed, i)
        tcfg = cfg.train_config(scale, seed_i)
        mcfg = conv_config(cfg.kind, blocks, data, width=cfg.width)
        label = f"{dataset}-{cfg.kind}-s{seed}-try{i}-{_blocks_label(blocks)}"
        folder = run_dir(scale, EXPERIMENT, label, mcfg, tcfg, _measure_key(cfg, dataset))
        run = train(mcfg, data, tcfg, folder, callbacks=[_attempt_check(cfg, data, seed_i)], device=device,
                    progress=progress, desc=label)
        entry = _attempt_entry(i, run, blocks, scale.last_epochs)
        entry["seed"] = seed_i
        log.attempts.append(entry)
        if run.status == "finished":
            entry["outcome"] = "found"
            return log.finish("found", "found", f"{mcfg.label} trained {cfg.epochs} epochs without conflict "
                                                f"in its checks", blocks, run)
        if run.status == "diverged" or run.stop_reason != STOP_REASON:
            code = "diverged" if run.status == "diverged" else "unknown-stop"
            entry["outcome"] = code
            why = (f"diverged at epoch {run.diverged_epoch}" if code == "diverged"
                   else f"stopped for an unknown reason {run.stop_reason!r}")
            return log.finish("stopped", code, f"attempt {i} ({_blocks_label(blocks)}) {why}", None, run)
        new = _next_blocks(cfg, blocks, entry)
        if entry["outcome"] == "empty-net":
            return log.finish("stopped", "empty-net", f"attempt {i}: pruning stages "
                                                      f"{entry['pruned_stages']} would leave no block", None, run)
        log.write()
        blocks, run = new, None
    return log.finish("incomplete", "attempt-cap", f"attempt limit ({int(max_attempts)}) reached before a net "
                                                   f"trained without conflict; call again with a larger "
                                                   f"max_attempts to continue", None, run)


def _measure_key(cfg: AutotuneConfig, dataset: str) -> dict[str, Any]:
    """What the checks of an attempt add to its run folder's hash. ``variant`` is left out at
    ``revised`` (the behaviour before the field existed), so those folders keep their names."""
    key = {"dataset": dataset, "train_limit": cfg.train_limit, "sample_size": cfg.sample_size,
           "check_epochs": cfg.check_epochs, "trigger": cfg.trigger, "measurement": cfg.measurement}
    if cfg.variant != "revised":
        key["variant"] = cfg.variant
    return key


class _SearchLog:
    """The search log of :func:`search`, written atomically to :func:`search_log_path`."""

    def __init__(self, scale: Scale, cfg: AutotuneConfig, dataset: str, seed: int):
        self.scale, self.cfg, self.dataset, self.seed = scale, cfg, dataset, seed
        self.path = search_log_path(scale, cfg, dataset=dataset, seed=seed)
        self.attempts: list[dict] = []
        self.data: dict[str, Any] = {"dataset": dataset, "kind": cfg.kind, "seed": seed, "config": asdict(cfg),
                                     "paper_algorithm": cfg.is_paper, "variant": cfg.variant,
                                     "attempts": self.attempts, "status": "running", "reason": "",
                                     "stop_reason": None, "blocks": None}

    def write(self) -> None:
        atomic_write_text(self.path, json.dumps(self.data, indent=1) + "\n")

    def finish(self, status: str, code: str, reason: str, blocks: tuple[int, ...] | None,
               final: RunResult | None) -> SearchResult:
        if code not in STOP_REASONS:
            raise ValueError(f"unknown stop reason {code!r}; valid choices are {', '.join(STOP_REASONS)}")
        self.data.update(status=status, reason=reason, stop_reason=code,
                         blocks=None if blocks is None else list(blocks))
        self.write()
        return SearchResult(self.dataset, self.cfg.kind, self.seed, status, reason,
                            None if blocks is None else as_blocks(blocks), self.attempts, final, self.path,
                            self.cfg, self.scale.last_epochs, stop_reason=code)


def run_searches(scale: Scale, kinds: Sequence[str] = ("plain",), *, datasets: Sequence[str] | None = None,
                 seeds: Sequence[int] | None = None, max_attempts: int = DEFAULT_MAX_ATTEMPTS,
                 device: str | None = "auto", progress: bool = True) -> tuple[list[SearchResult], pd.DataFrame]:
    """Every search of the preset: ``scale.autotune_seeds`` seeds per dataset and kind (in the order
    dataset, kind, seed).

    Returns the results and a tidy log with one row per attempt (dataset, kind, seed, attempt,
    blocks, detection_epoch, a_L_entropy, conflicting (count), pruned_stage (1..4), blocks_after, outcome,
    search_status, stop_reason).
    """
    datasets = tuple(datasets or scale.datasets)
    seeds = tuple(range(scale.autotune_seeds)) if seeds is None else tuple(seeds)
    results, rows = [], []
    for dataset in datasets:
        for kind in kinds:  # every search of a kind before the next kind: the paper's plain ones first
            for seed in seeds:
                data = load_dataset(dataset, seed=seed, train_limit=scale.train_limit)
                res = search(scale, kind, dataset=dataset, seed=seed, data=data, max_attempts=max_attempts,
                             device=device, progress=progress)
                results.append(res)
                for a in res.attempts:
                    rows.append({
                        "dataset": dataset, "kind": kind, "seed": seed, "attempt": a["attempt"],
                        "blocks": _blocks_label(a["blocks"]), "depth": a["depth"], "run_status": a["status"],
                        "detection_epoch": a["detection_epoch"], "a_L_entropy": a["a_L_entropy"],
                        "conflicting": None if a["conflicting_blocks"] is None else len(a["conflicting_blocks"]),
                        # stages are numbered 1..4 in every table and figure (the log keeps 0..3)
                        "pruned_stage": None if a["pruned_stage"] is None else a["pruned_stage"] + 1,
                        "blocks_after": None if a["blocks_after"] is None else _blocks_label(a["blocks_after"]),
                        "outcome": a.get("outcome"), "search_status": res.status, "stop_reason": res.stop_reason,
                    })
    return results, pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# comparison with fixed-depth nets


def baseline_specs(scale: Scale, *, dataset: str | None = None, seeds: Sequence[int] | None = None,
                   depths: Sequence[int] | None = None, kinds: Sequence[str] = AUTOTUNE_KINDS) -> list[RunSpec]:
    """The fixed-depth plain and residual nets of ``scale.autotune_baseline_depths``, declared.

    They are :func:`reproduce.experiments.depth_study.conv_spec` runs trained for ``scale.autotune_epochs``
    epochs (so they share their run folders with the depth study when the epochs agree). Seeds
    default to ``0..scale.repeats-1``.
    """
    from reproduce.experiments.depth_study import conv_spec

    dataset = dataset or scale.dataset
    seeds = tuple(range(scale.repeats)) if seeds is None else tuple(seeds)
    depths = tuple(depths or scale.autotune_baseline_depths)
    scale_b = scale.replace(epochs=scale.autotune_epochs)
    return [conv_spec(scale_b, kind, depth, dataset=dataset, seed=seed)
            for seed in seeds for kind in kinds for depth in depths]


def baseline_runs(scale: Scale, *, dataset: str | None = None, seeds: Sequence[int] | None = None,
                  depths: Sequence[int] | None = None, kinds: Sequence[str] = AUTOTUNE_KINDS,
                  device: str | None = "auto", progress: bool = True) -> list[tuple[int, RunResult]]:
    """Train (or reuse) the runs of :func:`baseline_specs`: ``(seed, run)`` pairs."""
    out, data = [], None
    for spec in baseline_specs(scale, dataset=dataset, seeds=seeds, depths=depths, kinds=kinds):
        if data is None or not spec.data.matches(data):
            data = spec.data.load()
        out.append((spec.data.seed, train_spec(spec, data=data, device=device, progress=progress)))
    return out


@dataclass(frozen=True)
class SearchSpec:
    """One auto-tune search declared as data. A sweep runs a search as one job: its attempts
    depend on each other. Same job interface as :class:`reproduce.training.runs.RunSpec`."""

    scale: Scale
    kind: str
    dataset: str
    seed: int
    max_attempts: int = DEFAULT_MAX_ATTEMPTS

    @property
    def log_path(self) -> Path:
        return search_log_path(self.scale, AutotuneConfig.from_scale(self.scale, self.kind), dataset=self.dataset,
                               seed=self.seed)

    @property
    def key(self) -> str:
        return f"{EXPERIMENT}/{self.log_path.stem}"

    def state(self) -> str:
        """``missing`` (no log), ``partial`` (running or resumable), ``finished`` (a net was found) or
        ``stopped`` (the search gave up), from the search log. A log without ``stop_reason`` was
        written before every attempt drew its own seed: ``partial`` (its attempts >= 1 are redone)."""
        log = load_search_log(self.log_path)
        if log is None:
            return "missing"
        if "stop_reason" not in log:
            # written before attempts drew their own seeds: its attempts >= 1 are to be redone
            return "partial"
        return {"found": "finished", "stopped": "stopped"}.get(log.get("status"), "partial")

    def run(self, *, device: Any = "auto", progress: bool = True) -> SearchResult:
        return search(self.scale, self.kind, dataset=self.dataset, seed=self.seed, max_attempts=self.max_attempts,
                      device=device, progress=progress)


def search_specs(scale: Scale, kinds: Sequence[str] = ("plain",), *, datasets: Sequence[str] | None = None,
                 seeds: Sequence[int] | None = None, max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> list[SearchSpec]:
    """Every search of the preset (``scale.autotune_seeds`` seeds per dataset and kind), declared,
    in the order :func:`run_searches` runs them."""
    datasets = tuple(datasets or scale.datasets)
    seeds = tuple(range(scale.autotune_seeds)) if seeds is None else tuple(seeds)
    return [SearchSpec(scale, kind, dataset, seed, max_attempts) for dataset in datasets for kind in kinds
            for seed in seeds]


def _efficiency_row(model: nn.Module, cfg: ModelConfig, batch_size: int) -> dict[str, Any]:
    rep = efficiency_report(model, _input_shape(cfg), batch_size, latency=False)
    return {
        "parameters": rep["parameters"],
        "macs": rep["macs"],
        "size_mb": rep["size_mb"],
        "activation_mb": rep["activation_mb"],
        "memory_mb": rep["size_mb"] + rep["activation_mb"],
        "cuda_peak_mb": None if rep["cuda_peak_bytes"] is None else rep["cuda_peak_bytes"] / 2**20,
    }


def _input_shape(cfg: ModelConfig) -> tuple[int, int, int]:
    return (cfg.in_channels, cfg.input_size, cfg.input_size)


def comparison_table(scale: Scale, searches: Sequence[SearchResult], baselines: Sequence[tuple[int, RunResult]],
                     *, dataset: str | None = None, repeats: int = 20) -> pd.DataFrame:
    """One row per found net and per baseline run (:data:`TABLE_COLUMNS`).

    ``model`` is ``auto-tune plain`` (the paper's search), ``auto-tune residual (addition)`` or the
    baseline's ``kind-depth``; ``source`` is ``auto-tune`` or ``fixed``. ``memory_mb`` = model size
    + peak activation memory of a batch-``scale.batch_size`` forward (what inference needs; both
    computed from tensor sizes, the same on every machine); ``macs`` the multiply-accumulates per
    image (:func:`reproduce.experiments.efficiency.multiply_accumulates`, from the architecture);
    ``latency_ms`` the median per batch (:mod:`reproduce.experiments.efficiency`), all models of the table
    timed together round-robin (:func:`reproduce.experiments.efficiency.inference_times`). Searches that found
    nothing get a row with NaN measures.
    """
    rows: list[dict[str, Any]] = []
    timed: list[tuple[int, nn.Module, ModelConfig]] = []
    for res in searches:
        if dataset is not None and res.dataset != dataset:
            continue
        name = "auto-tune plain" if res.config.is_paper else f"auto-tune {res.kind} (addition)"
        row: dict[str, Any] = {"dataset": res.dataset, "model": name, "source": "auto-tune", "kind": res.kind,
                               "seed": res.seed, "status": res.status, "attempts": len(res.attempts)}
        if res.status == "found" and res.final is not None:
            row.update(blocks=_blocks_label(res.blocks), depth=res.depth, test_acc=res.test_accuracy)
            row.update(_efficiency_row(res.final.model, res.final.model_config, scale.batch_size))
            timed.append((len(rows), res.final.model, res.final.model_config))
        rows.append(row)
    for seed, run in baselines:
        cfg = run.model_config
        row = {"dataset": dataset or scale.dataset, "model": f"{cfg.kind}-{cfg.depth}", "source": "fixed",
               "kind": cfg.kind, "seed": seed, "status": run.status, "attempts": None,
               "blocks": _blocks_label(cfg.blocks), "depth": cfg.depth,
               "test_acc": final_test_accuracy(run.history, scale.last_epochs)}
        row.update(_efficiency_row(run.model, cfg, scale.batch_size))
        timed.append((len(rows), run.model, cfg))
        rows.append(row)
    if timed:
        seconds = inference_times([m for _, m, _ in timed], [_input_shape(c) for _, _, c in timed], scale.batch_size,
                                  repeats=repeats)
        for (i, _, _), s in zip(timed, seconds):
            rows[i]["latency_ms"] = s * 1e3
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


def summary_table(table: pd.DataFrame) -> pd.DataFrame:
    """Seed aggregates per (dataset, model): ``runs`` (seeds), the found blocks (all distinct ones,
    ``;``-joined), mean depth, test accuracy (mean, std, min, max over seeds), parameters,
    multiply-accumulates, size, activation and total memory, and the mean latency (measured on this
    machine)."""
    if table.empty:
        return table.copy()
    agg = table.groupby(["dataset", "model", "source"], sort=False).agg(
        runs=("seed", "count"),
        blocks=("blocks", lambda s: ";".join(dict.fromkeys(str(b) for b in s.dropna()))),
        depth=("depth", "mean"),
        test_acc=("test_acc", "mean"),
        test_acc_std=("test_acc", "std"),
        test_acc_min=("test_acc", "min"),
        test_acc_max=("test_acc", "max"),
        parameters=("parameters", "mean"),
        macs=("macs", "mean"),
        size_mb=("size_mb", "mean"),
        activation_mb=("activation_mb", "mean"),
        memory_mb=("memory_mb", "mean"),
        latency_ms=("latency_ms", "mean"),
    )
    return agg.reset_index()


def latency_table(table: pd.DataFrame) -> pd.DataFrame:
    """The timing table: what :func:`comparison_table` measured on this machine, kept apart from
    the deterministic measures and from the claims. One row per (dataset, model, seed) with the
    multiply-accumulates per image next to it (the machine-independent cost the claims use),
    ``latency_ms`` (median per batch) and ``cuda_peak_mb`` (CUDA only); NaN for a search that found
    no net."""
    cols = ["dataset", "model", "source", "seed", "depth", "macs", "latency_ms", "cuda_peak_mb"]
    missing = [c for c in cols if c not in table.columns]
    if missing:
        raise ValueError(f"latency_table needs a comparison_table; missing columns {missing}")
    return table[cols].reset_index(drop=True)


def pareto_front(x: Sequence[float], y: Sequence[float]) -> np.ndarray:
    """Boolean mask of the points on the Pareto front for *low* ``x`` (latency) and *high* ``y``
    (accuracy): a point is on the front when no other point is at least as good in both and
    strictly better in one. NaN points are never on the front."""
    xs = np.asarray(x, dtype=float)
    ys = np.asarray(y, dtype=float)
    if xs.shape != ys.shape or xs.ndim != 1:
        raise ValueError(f"x and y must be 1-D of equal length, got shapes {xs.shape} and {ys.shape}")
    ok = np.isfinite(xs) & np.isfinite(ys)
    mask = np.zeros(len(xs), dtype=bool)
    for i in np.flatnonzero(ok):
        better_eq = ok & (xs <= xs[i]) & (ys >= ys[i])
        strictly = (xs < xs[i]) | (ys > ys[i])
        mask[i] = not np.any(better_eq & strictly)
    return mask


def restart_entropies(searches: Sequence[SearchResult]) -> pd.DataFrame:
    """Long table of the per-block entropies at every detection: one row per (search, attempt,
    block) with dataset, kind, seed, attempt, blocks (before), block, stage, entropy."""
    rows = []
    for res in searches:
        for a in res.attempts:
            for b in a.get("block_entropies") or []:
                rows.append({"dataset": res.dataset, "kind": res.kind, "seed": res.seed, "attempt": a["attempt"],
                             "blocks": _blocks_label(a["blocks"]), "block": b["block"], "stage": b["stage"],
                             "entropy": b["entropy"]})
    return pd.DataFrame(rows, columns=["dataset", "kind", "seed", "attempt", "blocks", "block", "stage", "entropy"])


def study(scale: Scale, *, seeds: Sequence[int] | None = None, baseline_seeds: Sequence[int] | None = None,
          kinds: Sequence[str] = AUTOTUNE_KINDS, datasets: Sequence[str] | None = None,
          max_attempts: int = DEFAULT_MAX_ATTEMPTS, repeats: int = 20, device: str | None = "auto",
          progress: bool = True) -> tuple[list[SearchResult], pd.DataFrame, pd.DataFrame]:
    """The whole claim-5 study: every search (:func:`run_searches`), the fixed-depth baselines
    (:func:`baseline_runs`, seeds ``baseline_seeds``) and their comparison.

    Returns ``(searches, attempts, table)``: the search results, the per-attempt log table and
    :func:`comparison_table` over all datasets. Efficiency is measured after all training, one
    model after another on the same device.
    """
    datasets = tuple(datasets or scale.datasets)
    searches, attempts = run_searches(scale, kinds, datasets=datasets, seeds=seeds, max_attempts=max_attempts,
                                      device=device, progress=progress)
    tables = []
    for dataset in datasets:
        base = baseline_runs(scale, dataset=dataset, seeds=baseline_seeds, device=device, progress=progress)
        tables.append(comparison_table(scale, searches, base, dataset=dataset, repeats=repeats))
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=list(TABLE_COLUMNS))
    return searches, attempts, table


# --------------------------------------------------------------------------------------------
# the claims' rules (fixed before any number was seen)


def _best_baseline(fixed_summary: pd.DataFrame) -> pd.Series | None:
    """The fixed-depth net with the highest mean test accuracy over its seeds (first on a tie);
    None without a finite one."""
    fixed = fixed_summary[np.isfinite(fixed_summary["test_acc"].astype(float))]
    if fixed.empty:
        return None
    return fixed.loc[fixed["test_acc"].astype(float).idxmax()]


#: names of rows 3-5 of :func:`autotune_claims` (the strict reading: against the best fixed net)
STRICT_ROWS = ("competitive accuracy (strict: vs the best fixed net)", "less memory (strict: vs the best fixed net)",
               "faster inference (strict: vs the best fixed net)")
#: name of row 5′ of :func:`autotune_claims`
LARGER_ROW = "5′ competitive with more complex nets"


def larger_net_rule(acc: float, memory: float, macs: float, fixed: pd.DataFrame, margin: float = 0.02
                    ) -> tuple[bool | None, pd.DataFrame]:
    """Row 5′ of :func:`autotune_claims` for one found net: ``(outcome, reference)``.

    ``fixed`` holds the fixed-depth nets (``test_acc``, ``memory_mb``, ``macs``; seed means). The
    reference is those with ``macs`` > ``macs`` (and a finite accuracy); the outcome is None when
    it is empty or a value is not finite, else ``acc >= max reference accuracy - margin`` and
    ``memory`` < every reference memory and ``macs`` < every reference ``macs``.
    """
    if not all(math.isfinite(float(v)) for v in (acc, memory, macs)):
        return None, fixed.iloc[0:0]
    ok = np.isfinite(fixed["test_acc"].astype(float)) & (fixed["macs"].astype(float) > float(macs))
    ref = fixed[ok]
    if ref.empty:
        return None, ref
    holds = (acc >= float(ref["test_acc"].astype(float).max()) - margin
             and bool((float(memory) < ref["memory_mb"].astype(float)).all())
             and bool((float(macs) < ref["macs"].astype(float)).all()))
    return bool(holds), ref


def _lt(a: float, b: float) -> bool | None:
    return None if not (math.isfinite(a) and math.isfinite(b)) else bool(a < b)


def autotune_claims(table: pd.DataFrame, summary: pd.DataFrame, start_blocks: Sequence[int],
                    margin: float = 0.02) -> list[Claim]:
    """Claim 5 per dataset, from :func:`comparison_table` and :func:`summary_table`, for the paper's
    search (``auto-tune plain``), decided per seed and then over seeds.

    One search is one seed. *Best baseline*: the fixed-depth net (plain or residual, any depth) with
    the highest test accuracy averaged over the baseline seeds; every search seed is compared with
    that one net's seed means. Per-seed rules (a seed whose search found no net cannot apply rules
    2-5: not testable there):

    1. the search ends: the seed's search found a net (status ``found``);
    2. it shrinks the net: the found net has fewer layers than the start;
    3. competitive accuracy: the found net's test accuracy >= best baseline's mean - ``margin``;
    4. less memory: the found net's inference memory (model size + peak activations, computed
       from tensor sizes) < the best baseline's;
    5. faster inference: the found net's multiply-accumulates per image (computed from the
       architecture) < the best baseline's. Latency is machine-dependent: it is reported in the
       separate latency table (:func:`latency_table`) and decides nothing.

    Rows 3-5 are the *strict* reading (against the single best fixed net, whatever its size; their
    names say ``strict``). Row 5′ is the paper's wording, "compared with more complex nets":

    5′. competitive with more complex nets: the *reference* of a found net is the set of fixed-depth
       nets (rows of ``summary``, seed means) with *more* multiply-accumulates per image than the
       found net. The rule holds if the found net's accuracy >= the best mean accuracy in the
       reference - ``margin``, AND its memory is lower than that of *every* net of the reference,
       AND its multiply-accumulates are lower than those of every one of them (true by the
       reference's definition; stated so the row reads alone). "Every" rather than "the most
       accurate one": the paper compares the found net with the more complex nets as a group, so
       it should be cheaper than each net it is compared with. Not testable for a seed whose search
       found no net or when no fixed net has more multiply-accumulates. Pooled form: the same rule
       for the mean over the found nets of accuracy, memory and multiply-accumulates (the reference
       taken at the mean multiply-accumulates).

    Rule over seeds: :func:`reproduce.experiments.claims.over_seeds` -- a claim holds iff its rule holds in
    every seed and, for 3-5′, in the pooled form (the mean over the found nets of accuracy, memory,
    multiply-accumulates against the same threshold); it does not hold if it fails in any seed or
    pooled; otherwise (some search found no net, none failed; or no baseline) it is not testable.
    Claims 1-2 have no pooled form. ``seeds`` is the number of searches.
    """
    claims = []
    for name, frame in table.groupby("dataset", sort=True):
        searches = _Searches.of(name, frame, summary, depth_for_blocks(start_blocks), margin)
        if searches is None:
            continue
        claims += [_claim_ends(searches), _claim_shrinks(searches)]
        if searches.best is None:
            claims += [Claim(f"{name}: {claim}", paper, "no fixed-depth baseline with a test accuracy", None,
                             seeds=len(searches.seeds))
                       for claim, paper in ((STRICT_ROWS[0], "accuracy competitive with larger nets"),
                                            (STRICT_ROWS[1], "much less memory"),
                                            (STRICT_ROWS[2], "faster inference"),
                                            (LARGER_ROW, "competitive with more complex nets"))]
            continue
        claims += [_claim_accuracy(searches), _claim_memory(searches), _claim_macs(searches),
                   _claim_vs_larger(searches)]
    return claims


@dataclass
class _Searches:
    """One dataset's searches (``auto-tune plain``, one per seed) and its best fixed-depth net, as
    the rows of :func:`autotune_claims` read them."""

    name: str
    frame: pd.DataFrame
    seeds: list[int]
    found: np.ndarray
    per: dict[str, np.ndarray]
    ok: pd.DataFrame
    best: pd.Series | None
    start: int
    margin: float
    fixed: pd.DataFrame

    @classmethod
    def of(cls, name: str, frame: pd.DataFrame, summary: pd.DataFrame, start: int, margin: float
           ) -> "_Searches | None":
        runs = frame[frame["model"] == "auto-tune plain"].sort_values("seed")
        if runs.empty:
            return None
        found = (runs["status"] == "found").to_numpy()
        per = {c: runs[c].astype(float).to_numpy() for c in ("depth", "test_acc", "memory_mb", "macs")}
        fixed = summary[(summary["dataset"] == name) & (summary["source"] == "fixed")]
        return cls(name, frame, [int(s) for s in runs["seed"]], found, per, runs[found], _best_baseline(fixed),
                   start, margin, fixed)


def _claim_ends(s: _Searches) -> Claim:
    """Row "the search ends" of :func:`autotune_claims`."""
    ends = [bool(f) for f in s.found]
    return Claim(f"{s.name}: the search ends", "a net trains without conflict",
                 f"{int(s.found.sum())} of {len(s.seeds)} searches found a net; {seed_outcomes(ends, s.seeds)}",
                 over_seeds(ends), seeds=len(s.seeds))


def _claim_shrinks(s: _Searches) -> Claim:
    """Row "auto-tune shrinks the net" of :func:`autotune_claims`."""
    shrinks = [bool(d < s.start) if f else None for f, d in zip(s.found, s.per["depth"])]
    return Claim(f"{s.name}: auto-tune shrinks the net", f"fewer than the {s.start} starting layers",
                 f"found depths {seed_values(s.per['depth'], '{:.0f}', s.seeds)}; {seed_outcomes(shrinks, s.seeds)}",
                 over_seeds(shrinks), seeds=len(s.seeds))


def _claim_accuracy(s: _Searches) -> Claim:
    """Row "competitive accuracy" of :func:`autotune_claims`."""
    best = s.best
    ref = s.frame[(s.frame["source"] == "fixed") & (s.frame["model"] == best["model"])].sort_values("seed")
    ref_acc = seed_values(ref["test_acc"].astype(float).tolist(), seeds=[int(x) for x in ref["seed"]])
    threshold = float(best["test_acc"]) - s.margin
    acc_ok = [bool(a >= threshold) if f and math.isfinite(a) else None for f, a in zip(s.found, s.per["test_acc"])]
    acc_pooled = bool(s.ok["test_acc"].mean() >= threshold) if len(s.ok) else None
    return Claim(f"{s.name}: {STRICT_ROWS[0]}", "accuracy competitive with larger nets",
                 f"found {seed_values(s.per['test_acc'], seeds=s.seeds)} vs best baseline {best['model']} {ref_acc}; "
                 f"threshold its mean - {s.margin:g} = {threshold:.3f}; "
                 f"{seed_outcomes(acc_ok, s.seeds)}",
                 over_seeds(acc_ok, acc_pooled), seeds=len(s.seeds))


def _claim_memory(s: _Searches) -> Claim:
    """Row "less memory" of :func:`autotune_claims`."""
    best_mem = float(s.best["memory_mb"])
    mem_ok = [_lt(m, best_mem) if f else None for f, m in zip(s.found, s.per["memory_mb"])]
    return Claim(f"{s.name}: {STRICT_ROWS[1]}", "much less memory",
                 f"found {seed_values(s.per['memory_mb'], seeds=s.seeds)} MB vs {s.best['model']} {best_mem:.3f} MB "
                 f"(model size + peak activations, computed); {seed_outcomes(mem_ok, s.seeds)}",
                 over_seeds(mem_ok, _lt(float(s.ok["memory_mb"].mean()), best_mem) if len(s.ok) else None),
                 seeds=len(s.seeds))


def _claim_macs(s: _Searches) -> Claim:
    """Row "faster inference" of :func:`autotune_claims`."""
    best_macs = float(s.best["macs"])
    macs_ok = [_lt(m, best_macs) if f else None for f, m in zip(s.found, s.per["macs"])]
    return Claim(f"{s.name}: {STRICT_ROWS[2]}", "faster inference",
                 f"multiply-accumulates per image: found {seed_values(s.per['macs'], '{:.0f}', s.seeds)} vs "
                 f"{s.best['model']} {best_macs:.0f}; {seed_outcomes(macs_ok, s.seeds)} (latency measured on this "
                 f"machine: separate latency table, not a verdict input)",
                 over_seeds(macs_ok, _lt(float(s.ok["macs"].mean()), best_macs) if len(s.ok) else None),
                 seeds=len(s.seeds))


def _claim_vs_larger(s: _Searches) -> Claim:
    """Row 5′ "competitive with more complex nets" of :func:`autotune_claims`."""
    per, refs = [], []
    for f, a, m, c in zip(s.found, s.per["test_acc"], s.per["memory_mb"], s.per["macs"]):
        outcome, ref = larger_net_rule(a, m, c, s.fixed, s.margin) if f else (None, s.fixed.iloc[0:0])
        per.append(outcome)
        refs.append(",".join(ref["model"].astype(str)) or "none")
    pooled = (larger_net_rule(*(float(s.ok[c].astype(float).mean()) for c in ("test_acc", "memory_mb", "macs")),
                              s.fixed, s.margin)[0] if len(s.ok) else None)
    return Claim(f"{s.name}: {LARGER_ROW}", "competitive with more complex nets, with less memory and compute",
                 f"found accuracy {seed_values(s.per['test_acc'], seeds=s.seeds)}, memory "
                 f"{seed_values(s.per['memory_mb'], seeds=s.seeds)} MB; reference (fixed nets with more "
                 f"multiply-accumulates) per seed: {'; '.join(refs)}; rule: accuracy >= their best - {s.margin:g}, "
                 f"memory and multiply-accumulates below all of them; {seed_outcomes(per, s.seeds)}",
                 over_seeds(per, pooled), seeds=len(s.seeds))


def notebook_jobs(stem: str, scale: Scale, seed: int) -> list:
    """Notebook 06's jobs (:mod:`reproduce.experiments.notebooks`): ``scale.autotune_seeds``
    searches per kind (:func:`search_specs`; residual too where the preset or the notebook's
    ``residual`` says so), then the fixed-depth baselines of every dataset over the seeds
    ``seed .. seed + scale.repeats - 1`` (:func:`baseline_specs`)."""
    d = NOTEBOOK_DEFAULTS[stem]
    residual = scale.autotune_residual if d["residual"] is None else d["residual"]
    kinds = ("plain", "residual") if residual else ("plain",)
    searches = search_specs(scale, kinds, seeds=range(seed, seed + scale.autotune_seeds),
                            max_attempts=d["max_attempts"])
    baselines = [spec for dataset in scale.datasets
                 for spec in baseline_specs(scale, dataset=dataset, seeds=range(seed, seed + scale.repeats))]
    return [*searches, *baselines]
