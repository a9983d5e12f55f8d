"""Bookkeeping: ``results/<scale>/sweep/jobs.json`` (job key -> submitit job id, executor, logs) and the liveness of recorded jobs."""

from __future__ import annotations

import getpass
import json
import os
import pickle
import shutil
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

from reproduce.files.paths import project_root
from reproduce.config.scales import Scale
from reproduce.files.storage import atomic_write_text, exclusive_lock
from reproduce.sweep.jobs import _ACTIVE_SLURM_STATES

__all__ = ["Submission", "sweep_dir", "jobs_path", "load_records"]


def sweep_dir(scale: Scale | str) -> Path:
    """``results/<scale>/sweep`` (not created: only a submission writes there, a query never does)."""
    return project_root() / "results" / (scale if isinstance(scale, str) else scale.name) / "sweep"


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
