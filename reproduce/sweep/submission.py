"""Submitting: every missing or unfinished job through submitit, to local processes or a SLURM job array (:func:`submit`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from reproduce.config import numerics
from reproduce.experiments.autotune import SearchSpec
from reproduce.config.scales import Scale
from reproduce.sweep.execute import JobOutcome, SweepJob
from reproduce.sweep.jobs import DONE_STATES, EXECUTORS, Job, LOCAL_TIMEOUT_MIN, RUNNING_ELSEWHERE, SweepError, _as_scale, _pinned_root, read_job_state, notebook_jobs, unique_jobs
from reproduce.sweep.records import Submission, _active, _read_result, _record, _slurm_queue, load_records, sweep_dir
from reproduce.sweep.slurm import SlurmConfig
from reproduce.files.tables import text_table as _table

__all__ = ["SweepResult", "job_cost", "next_batch", "submit"]


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
            state, problem = read_job_state(job)
            rec = records.get(job.key)
            if problem:
                action = f"skip: unreadable: {problem}"
            elif state in DONE_STATES:
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
