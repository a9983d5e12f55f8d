"""Status: per notebook, which runs are done, running, queued, failed, partial or missing (:func:`status`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from reproduce.config.scales import Scale
from reproduce.sweep.jobs import CATEGORIES, DONE_STATES, Job, RUNNING_ELSEWHERE, _INLINE_ONLY, _as_scale, _pinned_root, read_job_state, notebook_jobs, unique_jobs
from reproduce.sweep.records import _active, _read_result, _slurm_queue, _tail, load_records
from reproduce.sweep.submission import _tail_text
from reproduce.files.tables import text_table as _table

__all__ = ["JobStatus", "StatusReport", "status"]


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
    state, problem = read_job_state(job)
    status = JobStatus(job.key, stems, "missing" if state == "missing" else "partial", state, rec)
    if problem:
        status.category, status.detail = "unreadable", problem
    elif state in DONE_STATES:
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
        """The jobs that failed, and the runs whose folder cannot be read."""
        return [e for e in self.jobs if e.category in ("failed", "unreadable")]

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
            if e.category == "unreadable":
                lines += ["", f"UNREADABLE {e.key} ({', '.join(e.notebooks)}): {e.detail}; move the folder "
                          "away (or delete it) and the run is trained again"]
                continue
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
