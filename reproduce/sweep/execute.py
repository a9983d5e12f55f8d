"""A job as it runs: :class:`SweepJob` (a submitit ``Checkpointable``: requeued on preemption, resumed from its last epoch), its lock and its outcome."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from reproduce.config import numerics
from reproduce.experiments.autotune import SearchSpec
from reproduce.training.runs import RunSpec
from reproduce.config.environ import positive_int_variable
from reproduce.config.scales import ROOT_ENV
from reproduce.files.storage import LockHeld, exclusive_lock
from reproduce.training.loop import RunLockedError


try:  # submitit is an optional dependency (extras `cluster` and `test`); it only duck-types `checkpoint`
    from submitit.helpers import Checkpointable as _Checkpointable
except ImportError:  # pragma: no cover - plan and status work without submitit
    class _Checkpointable:  # type: ignore[no-redef]
        """Stand-in for :class:`submitit.helpers.Checkpointable` where submitit is not installed."""

from reproduce.sweep.jobs import DONE_STATES, Job, RUNNING_ELSEWHERE, _epochs_done, _search_lock_path, job_state

__all__ = ["JobOutcome", "SweepJob"]


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


def _slurm_cpus() -> int | None:
    """``$SLURM_CPUS_PER_TASK`` as a positive int (None when unset or empty); ValueError naming it."""
    return positive_int_variable("SLURM_CPUS_PER_TASK", "a CPU count")


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
        threads = self.threads or _slurm_cpus()
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
