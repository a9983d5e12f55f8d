"""Which runs the notebooks need (each study declares its notebook's jobs, :mod:`reproduce.experiments.notebooks`), and the state of a job."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence, Union

from reproduce.experiments import notebooks as _notebooks
from reproduce.experiments.autotune import SearchSpec
from reproduce.files.paths import project_root
from reproduce.training.runs import RunSpec, UnreadableRun
from reproduce.config.scales import ROOT_ENV, Scale, get_scale
from reproduce.config.environ import environment
from reproduce.files.storage import lock_is_held


__all__ = ["NOTEBOOKS", "EXECUTORS", "DONE_STATES", "CATEGORIES", "RUNNING_ELSEWHERE", "DEFAULT_STEPS_PER_SECOND", "Job", "SweepError", "resolve_notebooks", "notebook_jobs", "unique_jobs", "job_state", "read_job_state", "UNREADABLE"]


#: the claim notebooks (their studies declare their jobs: :mod:`reproduce.experiments.notebooks`)
NOTEBOOKS = _notebooks.NOTEBOOKS
_INLINE_ONLY = _notebooks.INLINE_ONLY
EXECUTORS = ("local", "slurm")
#: run states that count as done: ``finished``; ``stopped`` (a callback ended it, e.g. an auto-tune
#: attempt that found a conflict, or a search that gave up); ``diverged`` (a result of the paper)
DONE_STATES = ("finished", "stopped", "diverged")
#: what :func:`status` counts, per notebook
CATEGORIES = ("done", "running", "queued", "failed", "partial", "missing", "unreadable")
#: the outcome of a job whose run another live process is training
UNREADABLE = "unreadable"
RUNNING_ELSEWHERE = "running elsewhere"
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


def resolve_notebooks(names: Sequence[str] | None = None) -> list[str]:
    """The stems of the named notebooks (all of :data:`NOTEBOOKS` when ``names`` is empty).

    A name is a stem, a unique prefix of one (``03``) or a path to a ``.ipynb`` file whose stem is
    one; ValueError naming the bad name and the valid notebooks otherwise."""
    if not names:
        return list(NOTEBOOKS)
    out: list[str] = []
    for name in names:
        stem = Path(name).stem if str(name).endswith(".ipynb") or "/" in str(name) else str(name)
        match = _notebooks.match_stem(stem, NOTEBOOKS)
        if match not in out:
            out.append(match)
    return out


def _as_scale(scale: Scale | str) -> Scale:
    return scale if isinstance(scale, Scale) else get_scale(scale)


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
            for job in _notebooks.jobs_of(stem, scale, int(seed)):
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
    with environment({ROOT_ENV: str(Path(root).resolve())}):
        yield Path(root).resolve()


def _search_lock_path(spec: SearchSpec) -> Path:
    return spec.log_path.with_suffix(".lock")


def job_state(job: Job) -> str:
    """``job.state()`` (one of :data:`reproduce.training.runs.RUN_STATES`), ``running`` when a live process
    holds the lock of its run folder or, for a search, of the search, or ``unreadable`` (see
    :func:`read_job_state` for the reason)."""
    return read_job_state(job)[0]


def read_job_state(job: Job) -> tuple[str, str]:
    """(:func:`job_state`, why the run folder is unreadable or ``""``): one bad folder is reported,
    it does not stop a query over the others."""
    if isinstance(job, SearchSpec) and lock_is_held(_search_lock_path(job)):
        return "running", ""
    try:
        return job.state(), ""
    except UnreadableRun as error:
        return UNREADABLE, str(error)


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
