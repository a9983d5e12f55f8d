"""The plan: every run the notebooks need and the hours left, from seconds per step measured on this device (:func:`plan`)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from reproduce.experiments import autotune
from reproduce.models.nets import ModelConfig, conv_config
from reproduce.training.runs import DataSpec, RunSpec
from reproduce.config.scales import Scale
from reproduce.training.loop import TrainConfig
from reproduce.data.datasets import dataset_train_size
from reproduce.experiments.efficiency import multiply_accumulates
from reproduce.sweep.jobs import DEFAULT_STEPS_PER_SECOND, DONE_STATES, Job, _INLINE_ONLY, _as_scale, _epochs_done, _pinned_root, job_state, notebook_jobs, unique_jobs
from reproduce.sweep.submission import _tail_text
from reproduce.files.progress import progress_bar
from reproduce.files.tables import text_table as _table

__all__ = ["PlanRow", "Plan", "plan"]


@dataclass(frozen=True)
class _CostKey:
    """What the cost of one optimiser step depends on."""

    model: ModelConfig
    batch_size: int


@dataclass
class PlanRow:
    """One job of :func:`plan`: what it trains and how much of it is left."""

    key: str
    notebooks: tuple[str, ...]
    model: str
    dataset: str
    epochs: int
    seed: int
    state: str
    epochs_done: int | None
    steps_per_epoch: int
    seconds_per_step: float
    timing: str
    note: str = ""

    @property
    def epochs_left(self) -> int:
        if self.state in DONE_STATES:
            return 0
        return max(0, self.epochs - (self.epochs_done or 0))

    @property
    def hours_left(self) -> float:
        return self.epochs_left * self.steps_per_epoch * self.seconds_per_step / 3600.0


@dataclass
class Plan:
    """:func:`plan`: one row per job (each once), the notebooks' jobs, and how the seconds per step
    were obtained (``device``, ``assumption``)."""

    scale: str
    rows: list[PlanRow]
    notebooks: dict[str, list[str]]
    device: str
    assumption: str | None
    measured: int
    extrapolated: int

    @property
    def hours_left(self) -> float:
        return sum(r.hours_left for r in self.rows)

    @property
    def hours_name(self) -> str:
        """What the hours are: ``CPU-h``/``GPU-h`` when the seconds per step were measured on that
        device, ``hours`` when they were assumed."""
        if self.assumption:
            return "hours"
        return "CPU-h" if self.device.startswith("cpu") else "GPU-h"

    def format(self) -> str:
        """Every run (aligned), the totals per notebook and overall, and how they were estimated."""
        done = sum(r.state in DONE_STATES for r in self.rows)
        lines = [f"plan for scale '{self.scale}': {len(self.rows)} training job(s), {done} done, "
                 f"{len(self.rows) - done} to train"]
        header = ("job", "notebooks", "model", "dataset", "epochs", "seed", "state", "done", "steps/epoch",
                  "s/step", f"{self.hours_name} left", "timing")
        rows = [(r.key, ",".join(s[:2] for s in r.notebooks), r.model, r.dataset, str(r.epochs), str(r.seed), r.state,
                 "-" if r.epochs_done is None else str(r.epochs_done), str(r.steps_per_epoch),
                 f"{r.seconds_per_step:.3g}", _hours(r.hours_left), r.timing + (f" {r.note}" if r.note else ""))
                for r in self.rows]
        lines.append(_table(header, rows, right={4, 5, 7, 8, 9, 10}))
        by_key = {r.key: r for r in self.rows}
        nb_rows = []
        for stem, keys in self.notebooks.items():
            if stem in _INLINE_ONLY:
                nb_rows.append((stem, "0", "-", "-", _INLINE_ONLY[stem]))
                continue
            rs = [by_key[k] for k in keys]
            nb_rows.append((stem, str(len(rs)), str(sum(r.state in DONE_STATES for r in rs)),
                            _hours(sum(r.hours_left for r in rs)), ""))
        nb_rows.append(("all (each job once)", str(len(self.rows)), str(done), _hours(self.hours_left), ""))
        lines += ["", _table(("notebook", "jobs", "done", f"{self.hours_name} left", ""), nb_rows, right={1, 2, 3})]
        if self.assumption:
            how = f"assumed: {self.assumption}"
        else:
            how = (f"measured on {self.device}: {self.measured} model config(s) timed (synthetic batches of each "
                   f"run's shape, 2 warm-up steps, then the fastest of up to 5)"
                   + (f", {self.extrapolated} extrapolated by FLOPs from the nearest timed one"
                      if self.extrapolated else ""))
        total = {"CPU-h": "CPU-hours", "GPU-h": "GPU-hours"}.get(self.hours_name, "Hours")
        lines += ["", f"{total} left: {_hours(self.hours_left)} (seconds per step {how})",
                  "counts optimiser steps only: per-epoch evaluation, bundle measurements and data loading come on "
                  "top; a search counts as one training of its starting net"]
        return "\n".join(lines)


def _train_size(dataset: str, train_limit: int | None, seed: int) -> int:
    """Training samples of one epoch: ``train_limit`` when set, else the dataset's training set."""
    if train_limit is not None:
        return int(train_limit)
    return dataset_train_size(dataset, seed)


def _describe(job: Job) -> tuple[str, str, int, int, _CostKey, int | None, str, TrainConfig]:
    """``(model, dataset, epochs, seed, step, train_limit, note, train config)`` of a job."""
    if isinstance(job, RunSpec):
        return (job.model.label, job.data.name, job.train.epochs, job.train.seed,
                _CostKey(job.model, job.train.batch_size), job.data.train_limit, "", job.train)
    cfg = autotune.AutotuneConfig.from_scale(job.scale, job.kind)
    data = DataSpec(job.dataset, job.seed, cfg.train_limit)
    mcfg = conv_config(job.kind, cfg.start_blocks, data, width=cfg.width)
    tcfg = cfg.train_config(job.scale, job.seed)
    return (f"auto-tune {job.kind} from {mcfg.label}", job.dataset, cfg.epochs, job.seed,
            _CostKey(mcfg, cfg.batch_size), cfg.train_limit, "(search)", tcfg)


def _input_shape(model: ModelConfig, batch: int) -> tuple[int, ...]:
    if model.kind == "fnn":
        return (batch, model.in_channels * model.input_size ** 2)
    return (batch, model.in_channels, model.input_size, model.input_size)


def _step_flops(step: _CostKey) -> float:
    """FLOPs of one optimiser step (3 x 2 x the multiply-adds of a forward pass of the batch,
    :func:`reproduce.experiments.efficiency.multiply_accumulates`), counted on the meta device
    (nothing is computed)."""
    import torch

    from reproduce.models.nets import build_model

    with torch.device("meta"):
        model = build_model(step.model)
    try:
        macs = step.batch_size * multiply_accumulates(model, _input_shape(step.model, 1)[1:])
    except Exception:  # noqa: BLE001 - a model the meta device cannot run: count its parameters instead
        macs = step.batch_size * sum(p.numel() for p in model.parameters())
    return 6.0 * max(macs, 1)


def _time_step(step: _CostKey, device: Any, cap_s: float, warmup: int = 2, timed: int = 5) -> float:
    """Seconds of the fastest of ``timed`` optimiser steps after ``warmup`` ones, on synthetic data
    of the step's shape (stops early after ``cap_s`` seconds, keeping what it has). The fastest, not
    the median: on a shared machine other processes only ever slow a step down."""
    import torch
    import torch.nn.functional as F

    from reproduce.models.nets import build_model
    from reproduce.training.loop import make_optimizer

    torch.manual_seed(0)
    model = build_model(step.model).to(device)
    model.train()
    opt = make_optimizer(model, TrainConfig(epochs=1, batch_size=step.batch_size))
    x = torch.randn(_input_shape(step.model, step.batch_size), device=device)
    y = torch.randint(0, step.model.num_classes, (step.batch_size,), device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times, last, start = [], 0.0, time.perf_counter()
    for i in range(warmup + timed):
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sync()
        last = time.perf_counter() - t0
        if i >= warmup:
            times.append(last)
        if time.perf_counter() - start > cap_s:
            break
    return min(times) if times else last


def _spread(n: int) -> list[int]:
    """0..n-1 in an order that covers the range early: last, first, middle, quarters, ..."""
    order = [i for i in (n - 1, 0) if i >= 0][: n]
    queue = [(0, n - 1)]
    while queue:
        lo, hi = queue.pop(0)
        if hi - lo < 2:
            continue
        mid = (lo + hi) // 2
        order.append(mid)
        queue += [(lo, mid), (mid, hi)]
    return list(dict.fromkeys(order))


def _seconds_per_step(steps: Sequence[_CostKey], device: Any, budget_s: float, cap_s: float
                      ) -> tuple[dict[_CostKey, tuple[float, str]], int, int]:
    """Seconds per step of every step shape: timed within ``budget_s`` (the cheapest FNN and the
    cheapest conv net first, then the others spread over the range of FLOPs, skipping those whose
    three steps would not fit in the budget left, as predicted from the nearest timed one of their
    family) or extrapolated by FLOPs from the nearest timed one of their family (FNN or conv net)."""
    import torch

    flops = {s: _step_flops(s) for s in steps}
    ordered = sorted(steps, key=lambda s: flops[s])
    timed: dict[_CostKey, float] = {}

    def predicted(s: _CostKey) -> tuple[float, _CostKey]:
        family = [t for t in timed if (t.model.kind == "fnn") == (s.model.kind == "fnn")] or list(timed)
        ref = min(family, key=lambda t: abs(math.log(flops[t]) - math.log(flops[s])))
        return timed[ref] * flops[s] / flops[ref], ref

    def family_timed(s: _CostKey) -> bool:
        return any((t.model.kind == "fnn") == (s.model.kind == "fnn") for t in timed)

    start = time.perf_counter()
    cheapest = list(dict.fromkeys(next(i for i, s in enumerate(ordered) if (s.model.kind == "fnn") == fnn)
                                  for fnn in (True, False) if any((s.model.kind == "fnn") == fnn for s in ordered)))
    bar = progress_bar(total=len(ordered), desc="timing model configs", unit="config", leave=False)
    for i in [*cheapest, *(j for j in _spread(len(ordered)) if j not in cheapest)]:
        left = budget_s - (time.perf_counter() - start)
        if left <= 0 and timed:
            break
        bar.update()
        if family_timed(ordered[i]) and 3 * predicted(ordered[i])[0] > left:
            continue
        bar.set_postfix_str(f"{ordered[i].model.label} ({left:.0f} s of the budget left)")
        try:
            timed[ordered[i]] = _time_step(ordered[i], device, cap_s=min(cap_s, max(left, 0.5)))
        except Exception:  # noqa: BLE001 - e.g. out of memory: extrapolate it instead
            pass
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
    bar.close()
    if not timed:
        raise RuntimeError("no model config could be timed on this device")
    out: dict[_CostKey, tuple[float, str]] = {s: (t, "measured") for s, t in timed.items()}
    for s in steps:
        if s not in out:
            seconds, ref = predicted(s)
            out[s] = (seconds, f"from {ref.model.label}")
    return out, len(timed), len(steps) - len(timed)


def plan(scale: Scale | str, notebooks: Sequence[str] | None = None, *, seed: int = 0,
         root: str | Path | None = None, steps_per_second: float | None = None, device: str = "auto",
         measure_budget_s: float = 60.0, per_config_cap_s: float = 5.0) -> Plan:
    """Every job the notebooks need, with its state and the hours left (CPU- or GPU-hours, after the device timed).

    Hours left of a run = remaining epochs x steps per epoch (``TrainConfig.steps_per_epoch``:
    full batches, times the scale's passes; sizes from ``train_limit`` or :func:`reproduce.data.dataset_train_size`)
    x seconds per step. Seconds per step: ``1 / steps_per_second`` when given (a stated
    assumption); else measured on ``device`` per distinct model config and batch size (2 warm-up and
    up to 5 timed steps on synthetic data of the run's shape, at most ``per_config_cap_s`` per config
    and ``measure_budget_s`` in all; configs left untimed are extrapolated by FLOPs from the nearest
    timed one); when nothing can be timed, :data:`DEFAULT_STEPS_PER_SECOND` is assumed and said so.
    """
    if steps_per_second is not None and not steps_per_second > 0:
        raise ValueError(f"steps_per_second must be > 0, got {steps_per_second!r}")
    scale = _as_scale(scale)
    with _pinned_root(root):
        by_notebook = notebook_jobs(scale, notebooks, seed=seed)
        described = []
        for job, stems in unique_jobs(by_notebook):
            model, dataset, epochs, run_seed, step, limit, note, tcfg = _describe(job)
            steps_per_epoch = tcfg.steps_per_epoch(_train_size(dataset, limit, run_seed))
            described.append((job, stems, model, dataset, epochs, run_seed, step, steps_per_epoch, note))
        needed = list(dict.fromkeys(d[6] for d in described if job_state(d[0]) not in DONE_STATES))
        assumption, measured, extrapolated = None, 0, 0
        from reproduce.training.loop import resolve_device

        dev = resolve_device(device)
        dev_name = _device_name(dev)
        timing: dict[_CostKey, tuple[float, str]] = {}
        if steps_per_second is not None:
            assumption = f"{steps_per_second:g} optimiser steps per second for every model (--assume-steps-per-second)"
        elif needed:
            try:
                timing, measured, extrapolated = _seconds_per_step(needed, dev, measure_budget_s, per_config_cap_s)
            except Exception as exc:  # noqa: BLE001 - say what was assumed instead
                steps_per_second = DEFAULT_STEPS_PER_SECOND
                assumption = (f"{steps_per_second:g} optimiser steps per second for every model (measuring on "
                              f"{dev_name} failed: {_tail_text(str(exc))})")
        rows = []
        for job, stems, model, dataset, epochs, run_seed, step, steps_per_epoch, note in described:
            state = job_state(job)
            if steps_per_second is not None:
                seconds, how = 1.0 / steps_per_second, "assumed"
            else:
                seconds, how = timing.get(step, (0.0, "-"))
            rows.append(PlanRow(job.key, stems, model, dataset, epochs, run_seed, state, _epochs_done(job),
                                steps_per_epoch, seconds, how, note))
        return Plan(scale.name, rows, {stem: [j.key for j in specs] for stem, specs in by_notebook.items()}, dev_name,
                    assumption, measured, extrapolated)


def _hours(hours: float) -> str:
    """Hours readable at every scale: ``1234``, ``12.34``, ``0.0012``, ``0``."""
    if hours == 0:
        return "0"
    return f"{hours:.0f}" if hours >= 100 else f"{hours:.2f}" if hours >= 1 else f"{hours:.2g}"


def _device_name(dev: Any) -> str:
    import torch

    if dev.type == "cuda":
        return f"{torch.cuda.get_device_name(dev)} (cuda)"
    n = torch.get_num_threads()
    return f"cpu ({n} thread{'s' if n != 1 else ''})"
