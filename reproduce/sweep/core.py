"""Sweeps: the training runs the notebooks need, trained as jobs through submitit.

Three commands of ``python -m reproduce`` are built on this module:

* ``plan``   -- :func:`plan`: every run the notebooks need (model, dataset, epochs, seed), which are
  done, and the hours left (CPU- or GPU-hours), from seconds per optimiser step measured on this device;
* ``sweep``  -- :func:`submit`: every missing or unfinished run as its own job, on this machine
  (``local``) or on a SLURM cluster (``slurm``);
* ``status`` -- :func:`status`: per notebook, runs done / running / queued / failed / partial /
  missing, and for each failed run its log and the last lines of it.

What a notebook needs is declared as data by the library calls the notebook makes
(:func:`notebook_jobs`): :class:`reproduce.training.runs.RunSpec` s and :class:`reproduce.experiments.autotune.SearchSpec` s,
both with the job interface ``.key``, ``.state()`` and ``.run(device=..., progress=...)``. A job
is the same training as the notebook's inline call, in the same run folder, so once a sweep has
trained a notebook's runs the notebook only collects them.

How a job runs (:class:`SweepJob`, a :class:`submitit.helpers.Checkpointable`):

* every run checkpoints after every epoch (:mod:`reproduce.training`); when submitit signals a
  preemption or a coming time limit (``USR2`` by default; ``SUBMITIT_PREEMPT_SIGNAL`` changes it)
  the job is requeued and the run resumes from its last finished epoch (the epoch in progress
  is trained again, to the same result);
* a run folder being trained by a live process (its lock, :func:`reproduce.training.run_lock`)
  ends the job with the outcome ``running elsewhere``: it is not a failure, and the run is never
  trained twice. A search holds a lock of its own beside its log for the whole search;
* CPU threads: under the pinned numerics (the default, :mod:`reproduce.config.numerics`) every job
  computes with the pinned thread count, whatever ``threads`` says, so its results are
  bit-identical to the notebook's inline run; with ``REPRODUCE_NUMERICS=native``, ``threads``
  (the SLURM executor passes ``--cpus-per-job``; locally ``cpu_count // jobs``) sets it.

Bookkeeping: every submission is recorded in ``results/<scale>/sweep/jobs.json`` (job key ->
submitit job id, executor, log files; earlier job ids of the same key under ``previous``) and
submitit's logs go to ``results/<scale>/sweep/logs/<job id>/``. :func:`status` reads both; a
SLURM job's liveness comes from ``squeue`` (without accounting, ``sacct`` and therefore
submitit's own job states are not available).

Executors:

* ``local``: submitit's local executor, at most ``jobs`` processes at a time (default: one per GPU,
  else 1), each pinned to one GPU (round robin) when there are GPUs; :func:`submit` waits for all.
  A process trains a batch of jobs one after another (:func:`next_batch`: long jobs alone, the
  short ones together, since a process start costs seconds); each job keeps its own record, and
  its outcome or error is its own entry in the batch's result.
* ``slurm``: one job array (``map_array``) with :class:`SlurmConfig` (partition, time, GPUs and
  CPUs per job, array parallelism, memory, extra ``sbatch`` options), from flags or a TOML/JSON file
  (:func:`slurm_config`); :func:`submit` returns once the array is queued
  (:meth:`SweepResult.wait` waits).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import math
import os
import pickle
import shutil
import socket
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence, Union

from reproduce.experiments import autotune
from reproduce.experiments import depth_study
from reproduce.experiments import fnn_map
from reproduce.experiments import lesion
from reproduce.config import numerics
from reproduce.experiments import theory
from reproduce.experiments.autotune import SearchSpec
from reproduce.models.nets import ModelConfig, conv_config
from reproduce.files.paths import project_root, results_dir
from reproduce.training.runs import DataSpec, RunSpec
from reproduce.config.scales import ROOT_ENV, Scale, get_scale
from reproduce.files.storage import LockHeld, atomic_write_text, exclusive_lock
from reproduce.training.loop import RunLockedError, TrainConfig

try:  # submitit is an optional dependency (extras `cluster` and `test`); it only duck-types `checkpoint`
    from submitit.helpers import Checkpointable as _Checkpointable
except ImportError:  # pragma: no cover - plan and status work without submitit
    class _Checkpointable:  # type: ignore[no-redef]
        """Stand-in for :class:`submitit.helpers.Checkpointable` where submitit is not installed."""

__all__ = [
    "NOTEBOOKS",
    "NOTEBOOK_DEFAULTS",
    "EXECUTORS",
    "DONE_STATES",
    "CATEGORIES",
    "RUNNING_ELSEWHERE",
    "DATASET_TRAIN_SIZES",
    "DEFAULT_STEPS_PER_SECOND",
    "Job",
    "JobOutcome",
    "SweepJob",
    "SlurmConfig",
    "Submission",
    "SweepResult",
    "JobStatus",
    "StatusReport",
    "PlanRow",
    "Plan",
    "SweepError",
    "resolve_notebooks",
    "notebook_jobs",
    "job_cost",
    "next_batch",
    "unique_jobs",
    "job_state",
    "slurm_config",
    "sweep_dir",
    "jobs_path",
    "load_records",
    "submit",
    "status",
    "plan",
]

#: the claim notebooks, by stem (``notebooks/<stem>.ipynb``)
NOTEBOOKS = ("00_quickstart", "01_bundles_theory", "02_fnn_width_depth", "03_depth_vgg_vs_resnet",
             "04_early_detection", "05_lesion", "06_auto_tune", "07_any_resnet")
#: the defaults of the notebooks' ``parameters`` cells that decide which runs they need (besides
#: ``scale`` and ``seed``; ``dataset``/``depth`` default to None = the preset's); a test checks
#: them against the notebooks
NOTEBOOK_DEFAULTS: Mapping[str, Mapping[str, Any]] = {
    "01_bundles_theory": {"dataset": None, "worst_case_width": None, "worst_case_depth": 4, "collapse_index": 1,
                          "worst_case_epochs": None},
    "02_fnn_width_depth": {"dataset": None},
    "03_depth_vgg_vs_resnet": {"dataset": None},
    "04_early_detection": {"dataset": None, "depth": None},
    "05_lesion": {"dataset": None},
    "06_auto_tune": {"dataset": None, "residual": None, "max_attempts": 20},
}
#: why a notebook has no sweep jobs
_INLINE_ONLY = {"00_quickstart": "trains one tiny run inline (no sweep jobs)",
                "07_any_resnet": "trains its torchvision ResNets inline (no sweep jobs)"}
EXECUTORS = ("local", "slurm")
#: run states that count as done: ``finished``; ``stopped`` (a callback ended it, e.g. an auto-tune
#: attempt that found a conflict, or a search that gave up); ``diverged`` (a result of the paper)
DONE_STATES = ("finished", "stopped", "diverged")
#: what :func:`status` counts, per notebook
CATEGORIES = ("done", "running", "queued", "failed", "partial", "missing")
#: the outcome of a job whose run another live process is training
RUNNING_ELSEWHERE = "running elsewhere"
#: training-set sizes of the paper's datasets, from the datasets' published splits (torchvision's
#: MNIST, CIFAR10, SVHN(split="train") and Imagenette(split="train") = imagenette2's train folder);
#: digits is measured from the embedded data (:func:`_train_size`)
DATASET_TRAIN_SIZES: Mapping[str, int] = {"mnist": 60_000, "cifar10": 50_000, "svhn": 73_257, "imagenette": 9_469}
#: the stated assumption of :func:`plan` when nothing can be measured
DEFAULT_STEPS_PER_SECOND = 10.0
#: local jobs are not limited in time (submitit's local default is 2 minutes)
LOCAL_TIMEOUT_MIN = 7 * 24 * 60
#: squeue states of a job that is still alive (queued, running or about to be)
_ACTIVE_SLURM_STATES = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD",
                        "REQUEUE_FED", "RESIZING", "SUSPENDED", "STAGE_OUT", "SIGNALING", "STOPPED"}

#: a job of a sweep: one training run, or one auto-tune search (its attempts depend on each other)
Job = Union[RunSpec, SearchSpec]


class SweepError(RuntimeError):
    """The sweep could not be submitted (submitit missing, ``sbatch`` refused, ...)."""


# --------------------------------------------------------------------------------------------
# which runs the notebooks need


def resolve_notebooks(names: Sequence[str] | None = None) -> list[str]:
    """The stems of the named notebooks (all of :data:`NOTEBOOKS` when ``names`` is empty).

    A name is a stem, a unique prefix of one (``03``) or a path to a ``.ipynb`` file whose stem is
    one; ValueError naming the bad name and the valid notebooks otherwise."""
    if not names:
        return list(NOTEBOOKS)
    out: list[str] = []
    for name in names:
        stem = Path(name).stem if str(name).endswith(".ipynb") or "/" in str(name) else str(name)
        matches = [stem] if stem in NOTEBOOKS else [n for n in NOTEBOOKS if n.startswith(stem)]
        if len(matches) != 1:
            what = "unknown notebook" if not matches else f"ambiguous notebook name (matches {', '.join(matches)})"
            raise ValueError(f"{what} {name!r}; valid notebooks: {', '.join(NOTEBOOKS)}")
        if matches[0] not in out:
            out.append(matches[0])
    return out


def _as_scale(scale: Scale | str) -> Scale:
    return scale if isinstance(scale, Scale) else get_scale(scale)


def _jobs_of(stem: str, scale: Scale, seed: int) -> list[Job]:
    """The runs notebook ``stem`` trains with its default parameters (see :data:`NOTEBOOK_DEFAULTS`)."""
    d = NOTEBOOK_DEFAULTS.get(stem, {})
    seeds = range(seed, seed + scale.repeats)
    if stem == "01_bundles_theory":
        # fnn_map.sweep over the seeds, then the worst-case cell's intact and collapsed nets per seed
        return [*fnn_map.run_specs(scale, seeds=seeds),
                *theory.worst_case_specs(scale, seeds=seeds, collapse=d["collapse_index"], dataset=scale.dataset,
                                         width=d["worst_case_width"], depth=d["worst_case_depth"],
                                         epochs=d["worst_case_epochs"])]
    if stem == "02_fnn_width_depth":
        return list(fnn_map.run_specs(scale, seeds=seeds))
    if stem == "03_depth_vgg_vs_resnet":
        return list(depth_study.run_specs(scale, seeds=seeds))
    if stem == "04_early_detection":  # the plain and residual net at scale.early_depth per seed (03's runs)
        return list(depth_study.early_detection_specs(scale, seeds))
    if stem == "05_lesion":
        return list(lesion.run_specs(scale, seeds=seeds, dataset=d["dataset"]))
    if stem == "06_auto_tune":
        residual = scale.autotune_residual if d["residual"] is None else d["residual"]
        kinds = ("plain", "residual") if residual else ("plain",)
        searches = autotune.search_specs(scale, kinds, seeds=range(seed, seed + scale.autotune_seeds),
                                         max_attempts=d["max_attempts"])
        baselines = [spec for dataset in scale.datasets
                     for spec in autotune.baseline_specs(scale, dataset=dataset, seeds=seeds)]
        return [*searches, *baselines]
    return []  # 00_quickstart, 07_any_resnet: inline only


def notebook_jobs(scale: Scale | str, notebooks: Sequence[str] | None = None, *, seed: int = 0,
                  root: str | Path | None = None) -> dict[str, list[Job]]:
    """The jobs each notebook needs at ``scale`` with its default parameters and ``seed`` (the
    ``--seed`` of ``python -m reproduce run``), by notebook stem, in the order the notebook trains
    them, without repeats within a notebook.

    These are exactly the specs of the library calls the notebooks make, for the seeds
    ``seed .. seed + scale.repeats - 1``: 01 the FNN grid of :func:`reproduce.experiments.fnn_map.run_specs`
    and the intact and collapsed nets of :func:`reproduce.experiments.theory.worst_case_specs`; 02 the grid;
    03 :func:`reproduce.experiments.depth_study.run_specs`; 04 :func:`reproduce.experiments.depth_study.early_detection_specs`
    (03's runs at ``scale.early_depth``); 05 :func:`reproduce.experiments.lesion.run_specs`; 06
    :func:`reproduce.experiments.autotune.search_specs` (``scale.autotune_seeds`` searches per kind) and
    :func:`reproduce.experiments.autotune.baseline_specs` per dataset. ``00_quickstart`` trains
    one tiny run inline and has no jobs. ``root`` (default: the project root) is where the run
    folders are.
    """
    scale = _as_scale(scale)
    with _pinned_root(root):
        out: dict[str, list[Job]] = {}
        for stem in resolve_notebooks(notebooks):
            seen: dict[str, Job] = {}
            for job in _jobs_of(stem, scale, int(seed)):
                seen.setdefault(job.key, job)
            out[stem] = list(seen.values())
        return out


def unique_jobs(jobs: Mapping[str, Sequence[Job]]) -> list[tuple[Job, tuple[str, ...]]]:
    """Every job of ``jobs`` (from :func:`notebook_jobs`) once, by key, with the notebooks needing it."""
    by_key: dict[str, tuple[Job, list[str]]] = {}
    for stem, specs in jobs.items():
        for job in specs:
            by_key.setdefault(job.key, (job, []))[1].append(stem)
    return [(job, tuple(stems)) for job, stems in by_key.values()]


@contextlib.contextmanager
def _pinned_root(root: str | Path | None) -> Iterator[Path]:
    """``$REPRODUCE_ROOT`` = ``root`` for the block (None: leave it; yields the project root)."""
    if root is None:
        yield project_root()
        return
    old = os.environ.get(ROOT_ENV)
    os.environ[ROOT_ENV] = str(Path(root).resolve())
    try:
        yield Path(root).resolve()
    finally:
        if old is None:
            os.environ.pop(ROOT_ENV, None)
        else:
            os.environ[ROOT_ENV] = old


# --------------------------------------------------------------------------------------------
# the state of a job


def _search_lock_path(spec: SearchSpec) -> Path:
    return spec.log_path.with_suffix(".lock")


def _lock_held(path: Path) -> bool:
    """True when a live process holds the lock file ``path``."""
    if not path.exists():
        return False
    try:
        with exclusive_lock(path):
            return False
    except LockHeld:
        return True


def job_state(job: Job) -> str:
    """``job.state()`` (one of :data:`reproduce.training.runs.RUN_STATES`), or ``running`` when a live process
    holds the lock of its run folder or, for a search, of the search."""
    if isinstance(job, SearchSpec) and _lock_held(_search_lock_path(job)):
        return "running"
    return job.state()


def _run_summary(spec: RunSpec) -> dict[str, Any]:
    try:
        return json.loads((spec.run_dir / "run.json").read_text())
    except (OSError, ValueError):
        return {}


def _epochs_done(job: Job) -> int | None:
    """Epochs the run has finished (from its ``run.json``; 0 for none); None for a search."""
    if not isinstance(job, RunSpec):
        return None
    return int(_run_summary(job).get("epochs_done") or 0)


# --------------------------------------------------------------------------------------------
# the job


@dataclass(frozen=True)
class JobOutcome:
    """What one job did. ``outcome`` is the run's state after the job (one of
    :data:`reproduce.training.runs.RUN_STATES`) or :data:`RUNNING_ELSEWHERE` (another live process trains it:
    this job trained nothing)."""

    key: str
    outcome: str
    before: str
    epochs_before: int | None
    epochs_after: int | None
    resumed_from: int | None
    seconds: float
    host: str
    job_id: str | None = None
    message: str = ""

    @property
    def done(self) -> bool:
        return self.outcome in DONE_STATES

    def __str__(self) -> str:
        if self.outcome == RUNNING_ELSEWHERE:
            return f"{self.key}: {RUNNING_ELSEWHERE} (not trained here; {self.message})"
        epochs = "" if self.epochs_after is None else f", epochs {self.epochs_before} -> {self.epochs_after}"
        resumed = f", resumed from epoch {self.resumed_from}" if self.resumed_from else ""
        return f"{self.key}: {self.outcome} (was {self.before}{epochs}{resumed}) in {self.seconds:.1f} s"


class _EpochLog:
    """A logging-only training callback: one line per epoch in the job's stdout log."""

    def __init__(self, label: str, epochs: int):
        self.label, self.epochs = label, epochs

    def __call__(self, model: Any, epoch: int, record: dict) -> None:
        acc = record.get("test_acc")
        print(f"{self.label}: epoch {epoch}/{self.epochs}" + ("" if acc is None else f", test accuracy {acc:.4f}"),
              flush=True)


class SweepJob(_Checkpointable):
    """The callable a sweep submits per job: ``SweepJob(root)(job)`` trains (or resumes) ``job`` in
    the results of ``root`` and returns a :class:`JobOutcome`.

    Picklable and importable, so submitit can run it in another process or on another machine.
    A :class:`submitit.helpers.Checkpointable`: on preemption or a coming time limit submitit calls
    :meth:`checkpoint`, which requeues the same call; the run then resumes from its last epoch
    checkpoint. ``threads`` sets ``torch.set_num_threads`` (None: ``$SLURM_CPUS_PER_TASK`` when set,
    else torch's default).
    """

    def __init__(self, root: str | Path, *, device: str = "auto", threads: int | None = None,
                 progress: bool = False):
        self.root = str(Path(root).resolve())
        self.device = device
        self.threads = threads
        self.progress = progress

    def __call__(self, job: Job | Sequence[Job]) -> JobOutcome | dict[str, tuple[str, Any]]:
        """Train ``job``; given a list of jobs (a local batch, :func:`next_batch`), train them one
        after another in this process and return ``{key: ("success", JobOutcome) or ("error",
        traceback)}``: a job that raises is reported (its traceback also goes to stderr, the job's
        log) and the next one runs."""
        if isinstance(job, (list, tuple)):
            return self._batch(job)
        return self._one(job)

    def _batch(self, jobs: Sequence[Job]) -> dict[str, tuple[str, Any]]:
        results: dict[str, tuple[str, Any]] = {}
        for job in jobs:
            try:
                results[job.key] = ("success", self._one(job))
            except Exception:  # noqa: BLE001 - reported per job, as submitit reports a job's error
                text = traceback.format_exc()
                print(f"reproduce sweep job: {job.key} raised:\n{text}", file=sys.stderr, flush=True)
                results[job.key] = ("error", text)
        return results

    def _one(self, job: Job) -> JobOutcome:
        os.environ[ROOT_ENV] = self.root
        threads = self.threads or int(os.environ.get("SLURM_CPUS_PER_TASK", "0") or 0) or None
        if threads and numerics.policy() == "pinned":
            threads = None  # the pinned numerics fix the thread count (a run's numbers depend on it)
        if threads:
            import torch

            torch.set_num_threads(int(threads))
        start = time.perf_counter()
        job_id = _current_job_id()
        before, epochs_before = job_state(job), _epochs_done(job)

        def outcome(state: str, resumed: int | None = None, message: str = "") -> JobOutcome:
            return JobOutcome(job.key, state, before, epochs_before, _epochs_done(job), resumed,
                              time.perf_counter() - start, socket.gethostname(), job_id, message)

        print(f"reproduce sweep job {job_id}: {job.key} ({before}, epochs done {epochs_before}) on "
              f"{socket.gethostname()}, root {self.root}", flush=True)
        if before == "running":
            result = outcome(RUNNING_ELSEWHERE, message="its folder is locked by a live trainer")
        elif before in DONE_STATES:
            result = outcome(before, message="already done")
        else:
            try:
                with _job_lock(job):
                    run = self._train(job)
                resumed = getattr(run, "resumed_from", None)
                result = outcome(job_state(job), resumed)
            except (RunLockedError, LockHeld) as exc:
                result = outcome(RUNNING_ELSEWHERE, message=str(exc))
        print(f"reproduce sweep job {job_id}: {result}", flush=True)
        return result

    def _train(self, job: Job) -> Any:
        if isinstance(job, RunSpec):
            from reproduce.training.runs import train_spec

            return train_spec(job, device=self.device, progress=self.progress,
                              callbacks=[_EpochLog(job.label, job.train.epochs)])
        return job.run(device=self.device, progress=self.progress)

    def checkpoint(self, job: Job | Sequence[Job]) -> Any:
        """Requeue the same call (submitit calls this on preemption / time-out): the run's state is
        its last epoch checkpoint on disk, from which the requeued job resumes."""
        from submitit.helpers import DelayedSubmission

        for one in job if isinstance(job, (list, tuple)) else [job]:
            print(f"reproduce sweep job: {one.key} preempted or out of time after {_epochs_done(one)} finished "
                  f"epoch(s); requeued, it resumes from its last epoch checkpoint (a done run is skipped)", flush=True)
        return DelayedSubmission(self, job)

    def __repr__(self) -> str:
        return f"SweepJob(root={self.root!r}, device={self.device!r}, threads={self.threads!r})"


def _job_lock(job: Job) -> contextlib.AbstractContextManager:
    """A search's own lock (held for the whole search); a run is locked by training itself."""
    if isinstance(job, SearchSpec):
        return exclusive_lock(_search_lock_path(job), wait=2.0)
    return contextlib.nullcontext()


def _current_job_id() -> str | None:
    try:
        import submitit

        return str(submitit.JobEnvironment().job_id)
    except Exception:  # noqa: BLE001 - not inside a submitit job
        return None


# --------------------------------------------------------------------------------------------
# SLURM settings


@dataclass(frozen=True)
class SlurmConfig:
    """How a SLURM sweep asks for resources; the keys of a ``--config`` file are these field names.

    ``time`` is the wall-clock limit of one job in minutes (submitit signals the job
    ``signal_delay_s`` seconds before it; the job is then requeued and resumes, up to
    ``max_timeouts`` times; keep ``time`` > 10: submitit counts every signal of a shorter job as a
    time-out). ``sbatch`` holds extra ``sbatch`` options (``account=abc`` -> ``--account=abc``),
    ``setup`` shell lines run before the job (e.g. ``module load cuda``).
    """

    partition: str | None = None
    time: int = 24 * 60
    gpus_per_job: int = 0
    cpus_per_job: int = 1
    array_parallelism: int = 64
    mem: str | None = None
    sbatch: tuple[tuple[str, str], ...] = ()
    signal_delay_s: int = 120
    max_timeouts: int = 20
    setup: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name, low in (("time", 1), ("gpus_per_job", 0), ("cpus_per_job", 1), ("array_parallelism", 1),
                          ("signal_delay_s", 0), ("max_timeouts", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"slurm setting {name} must be an int >= {low}, got {value!r}")
        for name in ("partition", "mem"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError(f"slurm setting {name} must be a non-empty string, got {value!r}")
        object.__setattr__(self, "sbatch", tuple(sorted(_sbatch_options(self.sbatch).items())))
        if isinstance(self.setup, str) or not all(isinstance(s, str) for s in self.setup):
            raise ValueError(f"slurm setting setup must be a list of shell lines, got {self.setup!r}")
        object.__setattr__(self, "setup", tuple(self.setup))

    def executor_parameters(self, job_name: str) -> dict[str, Any]:
        """The parameters of ``submitit.SlurmExecutor.update_parameters``."""
        params: dict[str, Any] = {"time": self.time, "cpus_per_task": self.cpus_per_job,
                                  "array_parallelism": self.array_parallelism,
                                  "signal_delay_s": self.signal_delay_s, "job_name": job_name}
        if self.partition:
            params["partition"] = self.partition
        if self.gpus_per_job:
            params["gpus_per_node"] = self.gpus_per_job
        if self.mem:
            params["mem"] = self.mem
        if self.sbatch:
            params["additional_parameters"] = dict(self.sbatch)
        if self.setup:
            params["setup"] = list(self.setup)
        return params


_SLURM_KEYS = tuple(f.name for f in fields(SlurmConfig))


def _sbatch_options(options: Any) -> dict[str, str]:
    """``{"account": "abc"}``, ``[("account", "abc")]`` or ``["account=abc"]`` as a dict."""
    if isinstance(options, Mapping):
        items = list(options.items())
    else:
        items = []
        for option in options or ():
            if isinstance(option, str):
                key, sep, value = option.partition("=")
                if not sep or not key.strip():
                    raise ValueError(f"an sbatch option is KEY=VALUE (e.g. account=abc), got {option!r}")
                items.append((key, value))
            elif isinstance(option, (tuple, list)) and len(option) == 2:
                items.append((option[0], option[1]))
            else:
                raise ValueError(f"an sbatch option is KEY=VALUE (e.g. account=abc), got {option!r}")
    out = {}
    for key, value in items:
        key = str(key).strip().lstrip("-")
        if not key:
            raise ValueError(f"an sbatch option needs a name, got {options!r}")
        out[key] = str(value)
    return out


def slurm_config(path: str | Path | None = None, **flags: Any) -> SlurmConfig:
    """The SLURM settings: :class:`SlurmConfig` defaults, then the file ``path`` (TOML or JSON,
    top-level keys or a ``[slurm]`` table, keys = the field names), then ``flags`` that are not
    None (flags win; ``sbatch`` options of flags and file are merged, the flag's value winning).

    ValueError naming the file, the bad key and the valid keys."""
    values: dict[str, Any] = {}
    if path is not None:
        values = _read_config(Path(path))
    sbatch = _sbatch_options(values.pop("sbatch", ()))
    flag_sbatch = flags.pop("sbatch", None)
    unknown = sorted(set(flags) - set(_SLURM_KEYS))
    if unknown:
        raise ValueError(f"unknown slurm setting(s) {', '.join(unknown)}; valid settings: {', '.join(_SLURM_KEYS)}")
    values.update({k: v for k, v in flags.items() if v is not None})
    sbatch.update(_sbatch_options(flag_sbatch or ()))
    if "setup" in values and isinstance(values["setup"], list):
        values["setup"] = tuple(values["setup"])
    try:
        return SlurmConfig(**values, sbatch=tuple(sbatch.items()))
    except ValueError as exc:
        where = f" (config file {path})" if path is not None else ""
        raise ValueError(f"{exc}{where}") from None


def _read_config(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            try:
                import tomllib
            except ImportError:  # Python 3.10
                try:
                    import tomli as tomllib  # type: ignore[no-redef]
                except ImportError:
                    raise ValueError(f"config file {path}: reading TOML needs Python >= 3.11 or the tomli "
                                     f"package; or write it as JSON (a .json file)") from None
            data = tomllib.loads(text)
    except ValueError as exc:
        if str(exc).startswith("config file"):
            raise
        raise ValueError(f"config file {path} is not valid {'JSON' if path.suffix.lower() == '.json' else 'TOML'}: "
                         f"{exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a table of settings, got {type(data).__name__}")
    if isinstance(data.get("slurm"), dict):
        data = {**{k: v for k, v in data.items() if k != "slurm"}, **data["slurm"]}
    unknown = sorted(set(data) - set(_SLURM_KEYS))
    if unknown:
        raise ValueError(f"config file {path}: unknown setting(s) {', '.join(unknown)}; "
                         f"valid settings: {', '.join(_SLURM_KEYS)}")
    return dict(data)


# --------------------------------------------------------------------------------------------
# bookkeeping: results/<scale>/sweep/jobs.json


def sweep_dir(scale: Scale | str) -> Path:
    """``results/<scale>/sweep`` (created)."""
    return results_dir(scale if isinstance(scale, str) else scale.name, "sweep")


def jobs_path(scale: Scale | str) -> Path:
    """``results/<scale>/sweep/jobs.json``: job key -> the latest submission of it."""
    return sweep_dir(scale) / "jobs.json"


def load_records(scale: Scale | str) -> dict[str, dict[str, Any]]:
    """The submissions recorded in :func:`jobs_path` (empty when none or unreadable)."""
    try:
        data = json.loads(jobs_path(scale).read_text())
    except (OSError, ValueError):
        return {}
    jobs = data.get("jobs") if isinstance(data, dict) else None
    return jobs if isinstance(jobs, dict) else {}


def _record(scale: Scale | str, records: Mapping[str, dict[str, Any]]) -> None:
    """Add submissions to :func:`jobs_path` (under its lock; earlier job ids of a key move to
    ``previous``)."""
    path = jobs_path(scale)
    with exclusive_lock(path.with_suffix(".lock"), wait=30.0):
        jobs = load_records(scale)
        for key, rec in records.items():
            old = jobs.get(key)
            previous = list(old.get("previous", [])) + [old["job_id"]] if old else []
            jobs[key] = {**rec, "previous": previous}
        atomic_write_text(path, json.dumps({"version": 1, "jobs": jobs}, indent=1, sort_keys=True) + "\n")


@dataclass
class Submission:
    """One submitted job: its key, submitit job id, executor and log files (``job``: the submitit
    job object, in the submitting process only)."""

    key: str
    job_id: str
    executor: str
    stdout: str
    stderr: str
    result: str
    notebooks: tuple[str, ...]
    submitted: str
    job: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, key: str, job: Any, executor: str, notebooks: Sequence[str]) -> "Submission":
        paths = job.paths
        return cls(key, str(job.job_id), executor, str(paths.stdout), str(paths.stderr), str(paths.result_pickle),
                   tuple(notebooks), datetime.now(timezone.utc).isoformat(timespec="seconds"), job)

    def record(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "executor": self.executor, "stdout": self.stdout, "stderr": self.stderr,
                "result": self.result, "notebooks": list(self.notebooks), "submitted": self.submitted}


def _slurm_queue() -> dict[str, str] | None:
    """``{job id: state}`` of this user's SLURM jobs (array tasks one by one); None without squeue."""
    if shutil.which("squeue") is None:
        return None
    try:
        out = subprocess.run(["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i|%T"], capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    queue = {}
    for line in out.stdout.splitlines():
        job_id, _, state = line.strip().partition("|")
        if job_id:
            queue[job_id] = state.strip()
    return queue


def _pid_alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def _active(rec: Mapping[str, Any], queue: Mapping[str, str] | None) -> bool | None:
    """Is the recorded job still queued or running? None when that cannot be told (no squeue)."""
    if rec.get("executor") == "slurm":
        if queue is None:
            return None if not Path(rec.get("result", "")).exists() else False
        return queue.get(str(rec.get("job_id")), "") in _ACTIVE_SLURM_STATES
    if Path(rec.get("result", "")).exists():
        return False
    return _pid_alive(str(rec.get("job_id", "")))


def _read_result(rec: Mapping[str, Any], key: str) -> tuple[str, Any] | None:
    """Job ``key``'s ``("success", JobOutcome)`` or ``("error", traceback)``; None when its process
    wrote none (for a local batch: the entry of ``key`` in the batch's result)."""
    try:
        with open(rec.get("result", ""), "rb") as f:
            value = pickle.load(f)
    except Exception:  # noqa: BLE001 - missing, truncated or unreadable: no result
        return None
    if not (isinstance(value, tuple) and len(value) == 2):
        return None
    if value[0] == "success" and isinstance(value[1], dict):  # a batch: one entry per job key
        entry = value[1].get(key)
        return entry if isinstance(entry, tuple) and len(entry) == 2 else None
    return value


def _tail(path: str | Path, lines: int = 5) -> list[str]:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return []
    return [line.rstrip() for line in text.splitlines() if line.strip()][-lines:]


# --------------------------------------------------------------------------------------------
# submitting


@dataclass
class SweepResult:
    """What :func:`submit` did: per job ``(key, state, action)`` in ``planned`` (action ``submit``,
    or why not), the submissions, and for a waited-for sweep the outcomes and failures."""

    scale: str
    executor: str
    root: Path
    planned: list[tuple[str, str, str]]
    submitted: list[Submission]
    dry_run: bool = False
    #: submitit's log folders are ``<logs>/<job id>/``
    logs: Path | None = None
    outcomes: dict[str, JobOutcome] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No job failed (so far)."""
        return not self.failures

    def wait(self, timeout_s: float | None = None, poll_s: float = 2.0) -> bool:
        """Wait until every submitted job has ended (for SLURM: left ``squeue``), then read their
        outcomes; False when ``timeout_s`` passed first."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            queue = _slurm_queue() if self.executor == "slurm" else None
            if not any(_active(s.record(), queue) for s in self.submitted):
                break
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(poll_s)
        for sub in self.submitted:
            self._collect(sub)
        return True

    def _collect(self, sub: Submission) -> None:
        result = _read_result(sub.record(), sub.key)
        if result is not None and result[0] == "success":
            self.outcomes[sub.key] = result[1]
            self.failures.pop(sub.key, None)
        elif result is not None:
            last = _tail_text(str(result[1]))
            self.failures[sub.key] = f"job {sub.job_id} failed: {last} (log {sub.stderr})"
        else:
            self.failures[sub.key] = f"job {sub.job_id} ended without a result (killed?) (log {sub.stderr})"

    def format(self) -> str:
        """The plan (dry run), or the submissions and outcomes, as aligned text."""
        to_submit = [p for p in self.planned if p[2] == "submit"]
        lines = []
        if self.dry_run:
            lines.append(f"dry run: would submit {len(to_submit)} of {len(self.planned)} job(s) of scale "
                         f"'{self.scale}' to the {self.executor} executor")
            lines.append(_table(("job", "state", "action"), self.planned))
            return "\n".join(lines)
        skipped = len(self.planned) - len(to_submit)
        lines.append(f"{len(self.submitted)} job(s) submitted to the {self.executor} executor, {skipped} skipped "
                     f"(done, running or queued); logs under {self.logs}")
        rows = []
        for sub in self.submitted:
            out = self.outcomes.get(sub.key)
            result = (str(out).split(": ", 1)[1] if out is not None else
                      "FAILED: " + self.failures[sub.key] if sub.key in self.failures else "submitted")
            rows.append((sub.key, sub.job_id, result))
        if rows:
            lines.append(_table(("job", "job id", "result"), rows))
        if self.executor == "slurm" and not self.outcomes and not self.failures and self.submitted:
            lines.append(f"follow it with: python -m reproduce status --scale {self.scale}")
        return "\n".join(lines)


def _tail_text(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no message)"


def submit(scale: Scale | str, notebooks: Sequence[str] | None = None, *, executor: str = "local", seed: int = 0,
           root: str | Path | None = None, jobs: int | None = None, slurm: SlurmConfig | None = None,
           device: str = "auto", threads: int | None = None, dry_run: bool = False,
           echo: Callable[[str], None] | None = None) -> SweepResult:
    """Submit every missing, partial or failed job of ``notebooks`` at ``scale`` as its own job.

    Jobs whose run is done (:data:`DONE_STATES`), being trained (its lock is held) or already
    queued (a recorded job still alive) are skipped. ``executor="local"`` runs them on this
    machine, ``jobs`` at a time (default: one per GPU, else 1; CPU jobs get
    ``cpu_count // jobs`` threads unless ``threads`` says otherwise), and returns when all have
    ended; ``"slurm"`` submits one job array with ``slurm`` (:class:`SlurmConfig`) and returns
    at once. ``dry_run`` only plans. ``echo`` receives progress lines (local). Raises
    :class:`SweepError` when submitit is missing or the cluster refuses the submission.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; valid executors: {', '.join(EXECUTORS)}")
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise ValueError(f"jobs must be an int >= 1, got {jobs!r}")
    scale = _as_scale(scale)
    with _pinned_root(root) as root_path:
        by_notebook = notebook_jobs(scale, notebooks, seed=seed)
        records = load_records(scale)
        queue = _slurm_queue() if any(r.get("executor") == "slurm" for r in records.values()) else None
        planned, todo = [], []
        for job, stems in unique_jobs(by_notebook):
            state = job_state(job)
            rec = records.get(job.key)
            if state in DONE_STATES:
                action = f"skip: done ({state})"
            elif state == "running":
                action = f"skip: {RUNNING_ELSEWHERE}"
            elif rec is not None and _active(rec, queue):
                action = f"skip: queued as {rec.get('executor')} job {rec.get('job_id')}"
            else:
                action = "submit"
                todo.append((job, stems))
            planned.append((job.key, state, action))
        result = SweepResult(scale.name, executor, root_path, planned, [], dry_run, sweep_dir(scale) / "logs")
        if dry_run or not todo:
            return result
        try:
            import submitit
        except ImportError:
            raise SweepError("the sweep needs submitit: pip install -e '.[cluster]' (or pip install submitit)") from None
        folder = sweep_dir(scale) / "logs" / "%j"
        if executor == "local":
            _run_local(result, todo, submitit, folder, jobs=jobs, device=device, threads=threads, echo=echo)
        else:
            _run_slurm(result, todo, submitit, folder, slurm or SlurmConfig(), device=device, threads=threads)
        return result


def _run_slurm(result: SweepResult, todo: list[tuple[Job, tuple[str, ...]]], submitit: Any, folder: Path,
               cfg: SlurmConfig, *, device: str, threads: int | None) -> None:
    """One job array of ``todo`` (array parallelism ``cfg.array_parallelism``)."""
    executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=cfg.max_timeouts)
    executor.update_parameters(**cfg.executor_parameters(f"reproduce-{result.scale}"))
    call = SweepJob(result.root, device=device, threads=threads or cfg.cpus_per_job)
    try:
        submitted = executor.map_array(call, [job for job, _ in todo])
    except Exception as exc:  # noqa: BLE001 - sbatch's refusal, whatever its type
        raise SweepError(f"SLURM refused the submission: {_tail_text(str(exc))}") from exc
    subs = [Submission.of(job.key, sjob, "slurm", stems) for (job, stems), sjob in zip(todo, submitted)]
    _record(result.scale, {s.key: s.record() for s in subs})
    result.submitted.extend(subs)


def job_cost(job: Job) -> float:
    """A rough relative cost of a job, to start the longest first: epochs x passes x weight layers x
    width² for a conv net (an FNN counts its hidden layers at a twentieth, they are tiny); a search
    counts as training its starting net (it trains at least its first attempt and the found net)."""
    if isinstance(job, SearchSpec):
        s = job.scale
        return 2.0 * s.autotune_epochs * s.passes * sum(s.autotune_blocks) * 2 * max(s.width, 1 / 16) ** 2
    model, train = job.model, job.train
    if model.kind == "fnn":
        return train.epochs * train.passes * model.fnn_depth * 0.05
    return train.epochs * train.passes * model.depth * max(model.width, 1 / 16) ** 2


def next_batch(pending: list[tuple[Job, tuple[str, ...]]], slots: int) -> list[tuple[Job, tuple[str, ...]]]:
    """Take the next local process's jobs from the front of ``pending`` (sorted longest first):
    its first job, then the following ones while the batch's :func:`job_cost` stays within half
    of the remaining cost per slot. A job costlier than that runs alone; the many short jobs at
    the end share processes (a process start with its imports costs about as much as a small FNN
    run), and the batches shrink as the remaining work does, so the slots end together."""
    if not pending:
        return []
    share = sum(job_cost(job) for job, _ in pending) / (2 * max(1, slots))
    batch = [pending.pop(0)]
    cost = job_cost(batch[0][0])
    while pending and cost + job_cost(pending[0][0]) <= share:
        cost += job_cost(pending[0][0])
        batch.append(pending.pop(0))
    return batch


def _run_local(result: SweepResult, todo: list[tuple[Job, tuple[str, ...]]], submitit: Any, folder: Path, *,
               jobs: int | None, device: str, threads: int | None, echo: Callable[[str], None] | None) -> None:
    """At most ``jobs`` local processes at a time (one GPU each, round robin, where there are GPUs),
    each training a batch of jobs (:func:`next_batch`) one after another."""
    import torch

    say = echo or (lambda line: None)
    # longest first: a long job started last would run alone at the end while the other slots idle
    todo = sorted(todo, key=lambda item: -job_cost(item[0]))
    gpus = torch.cuda.device_count()
    slots = jobs or max(1, gpus)
    if threads is None and not gpus:
        threads = numerics.side_by_side_threads(slots)
    executor = submitit.LocalExecutor(folder=folder)
    executor.update_parameters(timeout_min=LOCAL_TIMEOUT_MIN, signal_delay_s=120)
    call = SweepJob(result.root, device=device, threads=threads)
    pending = list(todo)
    running: dict[int, list[Submission]] = {}
    n = len(todo)
    finished = 0
    try:
        while pending or running:
            for slot in range(slots):
                if slot in running or not pending:
                    continue
                batch = next_batch(pending, slots)
                if gpus:
                    executor.update_parameters(gpus_per_node=1, visible_gpus=(slot % gpus,))
                else:
                    executor.update_parameters(gpus_per_node=0, visible_gpus=())
                submitted = executor.submit(call, [job for job, _ in batch])
                subs = [Submission.of(job.key, submitted, "local", stems) for job, stems in batch]
                _record(result.scale, {sub.key: sub.record() for sub in subs})
                result.submitted.extend(subs)
                running[slot] = subs
                where = f" on GPU {slot % gpus}" if gpus else ""
                for sub in subs:
                    say(f"started {sub.key} as local job {sub.job_id}{where}"
                        + (f" (batch of {len(subs)})" if len(subs) > 1 else ""))
            for slot, subs in list(running.items()):
                if not subs[0].job.done():
                    continue
                del running[slot]
                for sub in subs:
                    finished += 1
                    result._collect(sub)
                    text = str(result.outcomes[sub.key]) if sub.key in result.outcomes else \
                        f"{sub.key}: FAILED, {result.failures[sub.key]}"
                    say(f"[{finished}/{n}] {text}")
            time.sleep(0.2)
    except KeyboardInterrupt:
        for subs in running.values():
            subs[0].job.cancel(check=False)
        raise


# --------------------------------------------------------------------------------------------
# status


@dataclass
class JobStatus:
    """The status of one job: ``category`` (one of :data:`CATEGORIES`), the run ``state``, its last
    submission (``record``, from ``jobs.json``) and, for a failed job, ``detail``, ``log`` and the
    log's last lines (``tail``)."""

    key: str
    notebooks: tuple[str, ...]
    category: str
    state: str
    record: dict[str, Any] | None = None
    detail: str = ""
    log: str | None = None
    tail: list[str] = field(default_factory=list)


def _classify(job: Job, stems: tuple[str, ...], rec: dict[str, Any] | None, queue: Mapping[str, str] | None
              ) -> JobStatus:
    state = job_state(job)
    status = JobStatus(job.key, stems, "missing" if state == "missing" else "partial", state, rec)
    if state in DONE_STATES:
        status.category = "done"
    elif state == "running":
        status.category = "running"
    elif rec is not None:
        active = _active(rec, queue)
        if active or active is None:
            status.category = "queued"
            status.detail = f"{rec.get('executor')} job {rec.get('job_id')}" + ("" if active else " (state unknown)")
            return status
        result = _read_result(rec, job.key)
        if result is None:
            status.detail = (f"{rec.get('executor')} job {rec.get('job_id')} ended without a result: it was killed "
                             f"(scancel, time limit, node failure or out of memory)")
        elif result[0] == "error":
            status.detail = f"{rec.get('executor')} job {rec.get('job_id')} raised: {_tail_text(str(result[1]))}"
        elif getattr(result[1], "outcome", None) == RUNNING_ELSEWHERE or getattr(result[1], "done", False):
            # its trainer was elsewhere (and ended since), or the run was done and has gone since:
            # partial or missing, not a failure of this job
            return status
        else:
            status.detail = (f"{rec.get('executor')} job {rec.get('job_id')} ended with the run "
                             f"{getattr(result[1], 'outcome', '?')}")
        status.category = "failed"
        status.log = rec.get("stderr")
        status.tail = _tail(status.log or "")
    return status


@dataclass
class StatusReport:
    """:func:`status`: a :class:`JobStatus` per job (``jobs``, each once) and per notebook."""

    scale: str
    root: Path
    notebooks: dict[str, list[JobStatus]]
    jobs: list[JobStatus]

    def counts(self, stem: str | None = None) -> dict[str, int]:
        """Jobs per category of notebook ``stem`` (None: of all notebooks, each job once)."""
        entries = self.jobs if stem is None else self.notebooks[stem]
        return {c: sum(e.category == c for e in entries) for c in CATEGORIES}

    @property
    def failed(self) -> list[JobStatus]:
        return [e for e in self.jobs if e.category == "failed"]

    def format(self) -> str:
        """An aligned table (one row per notebook, then all notebooks) and every failure with its log."""
        header = ("notebook", "runs", *CATEGORIES)
        rows = []
        for stem, entries in self.notebooks.items():
            if stem in _INLINE_ONLY:
                rows.append((stem, "0", *("-" for _ in CATEGORIES), _INLINE_ONLY[stem]))
                continue
            rows.append((stem, str(len(entries)), *(str(v) for v in self.counts(stem).values())))
        rows.append(("all (each run once)", str(len(self.jobs)), *(str(v) for v in self.counts().values())))
        states = {s: sum(e.state == s for e in self.jobs) for s in DONE_STATES}
        lines = [f"status of scale '{self.scale}' (results under {self.root / 'results' / self.scale})",
                 _table((*header, ""), rows, right=range(1, len(header))),
                 "done = " + ", ".join(f"{s} {n}" for s, n in states.items())
                 + "; running = a live process holds the run's lock; queued = its job waits or starts"]
        for e in self.failed:
            lines += ["", f"FAILED {e.key} ({', '.join(e.notebooks)}): {e.detail}", f"  log: {e.log}"]
            lines += [f"  | {line}" for line in e.tail] or ["  | (the log is empty or missing)"]
        return "\n".join(lines)


def status(scale: Scale | str, notebooks: Sequence[str] | None = None, *, seed: int = 0,
           root: str | Path | None = None) -> StatusReport:
    """Per notebook, which of its jobs are done, running, queued, failed, partial or missing.

    ``failed``: the last recorded submission of the job ended (it wrote an error, or left the
    queue without a result) and the run is neither done nor being trained; its ``log`` is the
    job's stderr log. A job that found its run ``running elsewhere`` is not a failure."""
    scale = _as_scale(scale)
    with _pinned_root(root) as root_path:
        by_notebook = notebook_jobs(scale, notebooks, seed=seed)
        records = load_records(scale)
        queue = _slurm_queue() if any(r.get("executor") == "slurm" for r in records.values()) else None
        entries = {job.key: _classify(job, stems, records.get(job.key), queue)
                   for job, stems in unique_jobs(by_notebook)}
        per_notebook = {stem: [entries[j.key] for j in specs] for stem, specs in by_notebook.items()}
        return StatusReport(scale.name, root_path, per_notebook, list(entries.values()))


# --------------------------------------------------------------------------------------------
# plan


@dataclass(frozen=True)
class _Step:
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
    if dataset == "digits":
        from reproduce.data.datasets import load_dataset

        return len(load_dataset("digits", seed=seed).train)
    try:
        return DATASET_TRAIN_SIZES[dataset]
    except KeyError:
        raise ValueError(f"unknown dataset {dataset!r}; known training-set sizes: digits, "
                         f"{', '.join(DATASET_TRAIN_SIZES)}") from None


def _describe(job: Job) -> tuple[str, str, int, int, _Step, int | None, str, TrainConfig]:
    """``(model, dataset, epochs, seed, step, train_limit, note, train config)`` of a job."""
    if isinstance(job, RunSpec):
        return (job.model.label, job.data.name, job.train.epochs, job.train.seed,
                _Step(job.model, job.train.batch_size), job.data.train_limit, "", job.train)
    cfg = autotune.AutotuneConfig.from_scale(job.scale, job.kind)
    data = DataSpec(job.dataset, job.seed, cfg.train_limit)
    mcfg = conv_config(job.kind, cfg.start_blocks, data, width=cfg.width)
    tcfg = cfg.train_config(job.scale, job.seed)
    return (f"auto-tune {job.kind} from {mcfg.label}", job.dataset, cfg.epochs, job.seed,
            _Step(mcfg, cfg.batch_size), cfg.train_limit, "(search)", tcfg)


def _input_shape(model: ModelConfig, batch: int) -> tuple[int, ...]:
    if model.kind == "fnn":
        return (batch, model.in_channels * model.input_size ** 2)
    return (batch, model.in_channels, model.input_size, model.input_size)


def _step_flops(step: _Step) -> float:
    """FLOPs of one optimiser step (3 x 2 x the multiply-adds of a forward pass), counted on the meta
    device (nothing is computed)."""
    import torch
    from torch import nn

    from reproduce.models.nets import build_model

    with torch.device("meta"):
        model = build_model(step.model)
    macs = 0

    def count(module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            macs += output.numel() * (module.in_channels // module.groups) * k
        elif isinstance(module, nn.Linear):
            macs += output.numel() * module.in_features

    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            model(torch.zeros(_input_shape(step.model, step.batch_size), device="meta"))
    except Exception:  # noqa: BLE001 - a model the meta device cannot run: count its parameters instead
        macs = step.batch_size * sum(p.numel() for p in model.parameters())
    finally:
        for h in handles:
            h.remove()
    return 6.0 * max(macs, 1)


def _time_step(step: _Step, device: Any, cap_s: float, warmup: int = 2, timed: int = 5) -> float:
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


def _seconds_per_step(steps: Sequence[_Step], device: Any, budget_s: float, cap_s: float
                      ) -> tuple[dict[_Step, tuple[float, str]], int, int]:
    """Seconds per step of every step shape: timed within ``budget_s`` (the cheapest FNN and the
    cheapest conv net first, then the others spread over the range of FLOPs, skipping those whose
    three steps would not fit in the budget left, as predicted from the nearest timed one of their
    family) or extrapolated by FLOPs from the nearest timed one of their family (FNN or conv net)."""
    import torch

    flops = {s: _step_flops(s) for s in steps}
    ordered = sorted(steps, key=lambda s: flops[s])
    timed: dict[_Step, float] = {}

    def predicted(s: _Step) -> tuple[float, _Step]:
        family = [t for t in timed if (t.model.kind == "fnn") == (s.model.kind == "fnn")] or list(timed)
        ref = min(family, key=lambda t: abs(math.log(flops[t]) - math.log(flops[s])))
        return timed[ref] * flops[s] / flops[ref], ref

    def family_timed(s: _Step) -> bool:
        return any((t.model.kind == "fnn") == (s.model.kind == "fnn") for t in timed)

    start = time.perf_counter()
    cheapest = list(dict.fromkeys(next(i for i, s in enumerate(ordered) if (s.model.kind == "fnn") == fnn)
                                  for fnn in (True, False) if any((s.model.kind == "fnn") == fnn for s in ordered)))
    for i in [*cheapest, *(j for j in _spread(len(ordered)) if j not in cheapest)]:
        left = budget_s - (time.perf_counter() - start)
        if left <= 0 and timed:
            break
        if family_timed(ordered[i]) and 3 * predicted(ordered[i])[0] > left:
            continue
        try:
            timed[ordered[i]] = _time_step(ordered[i], device, cap_s=min(cap_s, max(left, 0.5)))
        except Exception:  # noqa: BLE001 - e.g. out of memory: extrapolate it instead
            pass
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
    if not timed:
        raise RuntimeError("no model config could be timed on this device")
    out: dict[_Step, tuple[float, str]] = {s: (t, "measured") for s, t in timed.items()}
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
    full batches, times the scale's passes; sizes from ``train_limit``, the embedded digits or :data:`DATASET_TRAIN_SIZES`)
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
        timing: dict[_Step, tuple[float, str]] = {}
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


# --------------------------------------------------------------------------------------------
# text tables


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right: Any = ()) -> str:
    """An aligned plain-text table with a rule under the header; columns in ``right`` right-aligned."""
    right = set(right)
    width = len(header)
    cells = [list(header), *[list(r) + [""] * (width - len(r)) for r in rows]]
    widths = [max(len(str(row[i])) for row in cells) for i in range(width)]

    def line(row: Sequence[str]) -> str:
        return "  ".join(str(c).rjust(w) if i in right else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(row, widths))).rstrip()

    return "\n".join([line(cells[0]), "  ".join("-" * w for w in widths).rstrip(), *(line(r) for r in cells[1:])])
