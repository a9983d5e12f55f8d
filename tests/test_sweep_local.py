"""Sweeps with submitit's local executor: jobs in processes of their own (reproduce.sweep).

Split from test_sweep.py (whose helpers it uses) so that pytest-xdist's --dist loadscope can run
these slow tests, each of which starts local job processes, beside the rest of that module on the
other worker. The expectations are independent of the sweep: a swept run against the same run
trained inline, a locked run against a lock this test holds, a failure against a dataset that is
not there.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import reproduce.sweep as sweep
from reproduce.config.scales import ROOT_ENV, get_scale
from reproduce.runner import notebooks as runner
from reproduce.sweep import execute, submission
from reproduce.training.loop import load_run, run_lock, train
from reproduce.training.runs import train_spec
from test_sweep import NB04, root, tiny  # noqa: F401 (root: the fixture)

submitit = pytest.importorskip("submitit")

JOB_TIMEOUT_S = 300


@pytest.fixture
def one_thread():
    """Jobs train with one thread; so does the inline reference (bit-identical results need the same count)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def other_root(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    path.mkdir(exist_ok=True)
    monkeypatch.setenv(ROOT_ENV, str(path))


def without_seconds(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


def interrupt_after_one_epoch(spec) -> None:
    """Train ``spec`` for one of its epochs only (an interrupted run: ``partial``)."""
    data = spec.data.load()
    callbacks = [hook(data, spec) for hook in spec.callbacks]
    train(spec.model, data, spec.train, spec.run_dir, callbacks=callbacks, progress=False, stop_after=1)


# --------------------------------------------------------------------------------------------
# sweeping with the local executor


def test_local_sweep_submits_only_unfinished_runs_and_matches_inline_training(root, monkeypatch, one_thread, same_weights):
    scale = tiny()
    done, partial = sweep.notebook_jobs(scale, ["04"])[NB04]
    train_spec(done, progress=False)
    interrupt_after_one_epoch(partial)
    assert (sweep.job_state(done), sweep.job_state(partial)) == ("finished", "partial")

    dry = sweep.submit(scale, ["04"], dry_run=True)
    assert dry.planned == [(done.key, "finished", "skip: done (finished)"), (partial.key, "partial", "submit")]
    assert dry.submitted == [] and "would submit 1 of 2" in dry.format()

    lines: list[str] = []
    result = sweep.submit(scale, ["04"], jobs=2, threads=1, echo=lines.append)
    assert result.ok, result.failures
    assert [s.key for s in result.submitted] == [partial.key]
    outcome = result.outcomes[partial.key]
    assert (outcome.outcome, outcome.before, outcome.epochs_before, outcome.epochs_after, outcome.resumed_from) == (
        "finished", "partial", 1, 2, 1)
    assert any(line.startswith("[1/1] " + partial.key) for line in lines)
    record = sweep.load_records(scale)[partial.key]
    assert record["job_id"] == result.submitted[0].job_id and record["notebooks"] == [NB04]
    assert "epoch 2/2" in Path(record["stdout"]).read_text()  # the job's own log

    swept = load_run(partial.run_dir)
    assert [r["epoch"] for r in swept.history] == [0, 1, 2]  # epoch 0: the untrained net
    # the same run trained inline, uninterrupted, in another root
    other_root(monkeypatch, root.parent / "inline")
    inline = train_spec(partial, progress=False)
    assert inline.run_dir != swept.run_dir and same_weights(inline.model, swept.model)
    assert without_seconds(inline.history) == without_seconds(swept.history)
    monkeypatch.setenv(ROOT_ENV, str(root))

    again = sweep.submit(scale, ["04"], jobs=2)
    assert again.submitted == [] and {a for _, _, a in again.planned} == {"skip: done (finished)"}
    report = sweep.status(scale, ["04"])
    assert report.counts(NB04) == {"done": 2, "running": 0, "queued": 0, "failed": 0, "partial": 0, "missing": 0, "unreadable": 0}


def fnn_jobs_scale():
    """Notebook 02 at this scale: four one-layer FNNs (widths 4, 8, 16, 32), one epoch each, of equal cost."""
    return get_scale("smoke").replace(train_limit=128, fnn_epochs=1, fnn_depths=(1,), fnn_widths=(4, 8, 16, 32))


def test_next_batch_runs_long_jobs_alone_and_short_ones_together(monkeypatch):
    costs = {"long": 8.0, **{f"s{i}": 1.0 for i in range(8)}}

    class Fake:
        def __init__(self, key):
            self.key = key

    monkeypatch.setattr(submission, "job_cost", lambda job: costs[job.key])

    def batches(keys, slots):
        pending = [(Fake(k), ()) for k in keys]
        sizes = []
        while pending:
            sizes.append([job.key for job, _ in sweep.next_batch(pending, slots)])
        return sizes

    # by hand, one slot, eight jobs of cost 1: half of 8 -> 4 jobs, half of 4 -> 2, then 1 and 1
    assert [len(b) for b in batches([f"s{i}" for i in range(8)], 1)] == [4, 2, 1, 1]
    # two slots: the long job (8 > 16 / 4) alone; then 8 / 4 = 2 -> two jobs; then 6/4, 5/4, 4/4, ... -> one each
    got = batches(["long"] + [f"s{i}" for i in range(8)], 2)
    assert got[0] == ["long"] and got[1] == ["s0", "s1"] and [len(b) for b in got[2:]] == [1] * 6
    assert sweep.next_batch([], 2) == []


def test_a_batch_trains_its_jobs_in_turn_and_reports_each_one(root, monkeypatch, tmp_path, one_thread, capsys, same_weights):
    """In one process: a job that raises (its data are missing) is reported with its traceback and
    the next job of the batch still trains, to the same weights as the same run trained alone."""
    good = sweep.notebook_jobs(fnn_jobs_scale(), ["02"])["02_fnn_width_depth"][0]
    empty = tmp_path / "no-data"
    empty.mkdir()
    monkeypatch.setenv("REPRODUCE_DATA", str(empty))
    bad = sweep.notebook_jobs(fnn_jobs_scale().replace(datasets=("mnist",)), ["02"])["02_fnn_width_depth"][0]
    results = sweep.SweepJob(root, threads=1)([bad, good])
    assert list(results) == [bad.key, good.key]
    assert results[bad.key][0] == "error" and "mnist" in results[bad.key][1].lower()
    assert f"{bad.key} raised" in capsys.readouterr().err
    state, outcome = results[good.key]
    assert state == "success" and outcome.outcome == "finished" and outcome.epochs_after == 1
    batched = load_run(good.run_dir)
    other_root(monkeypatch, root.parent / "alone")
    alone = train_spec(good, progress=False)
    assert same_weights(alone.model, batched.model) and without_seconds(alone.history) == without_seconds(batched.history)


def test_local_sweep_batches_short_jobs_and_records_each(root, monkeypatch, one_thread):
    scale = fnn_jobs_scale()
    lines: list[str] = []
    result = sweep.submit(scale, ["02"], jobs=1, echo=lines.append)
    assert result.ok, result.failures
    keys = [s.key for s in result.submitted]
    # four equal jobs on one slot: 2 in the first process, then 1 and 1 (next_batch, by hand)
    ids = [s.job_id for s in result.submitted]
    assert len(keys) == 4 and ids[0] == ids[1] and len({ids[1], ids[2], ids[3]}) == 3
    assert all(result.outcomes[k].outcome == "finished" for k in keys)
    assert sum(line.startswith("[") for line in lines) == 4 and "(batch of 2)" in lines[0]
    records = sweep.load_records(scale)
    assert records[keys[0]]["job_id"] == records[keys[1]]["job_id"] == ids[0]
    report = sweep.status(scale, ["02"])
    assert report.counts("02_fnn_width_depth")["done"] == 4 and not report.failed


def wait_done(job) -> None:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while not job.done():
        assert time.monotonic() < deadline, f"local job {job.job_id} did not end within {JOB_TIMEOUT_S} s"
        time.sleep(0.2)


def test_a_job_on_a_locked_run_ends_running_elsewhere_and_trains_nothing(root, monkeypatch, tmp_path):
    scale = tiny()
    spec = sweep.notebook_jobs(scale, ["04"])[NB04][0]
    with run_lock(spec.run_dir):  # a live trainer (this process) holds the run folder
        assert sweep.job_state(spec) == "running"
        plan = sweep.submit(scale, ["04"], dry_run=True).planned
        assert plan[0] == (spec.key, "running", f"skip: {sweep.RUNNING_ELSEWHERE}")
        # a job submitted anyway, in another process
        executor = submitit.LocalExecutor(folder=tmp_path / "logs" / "%j")
        executor.update_parameters(timeout_min=30)
        job = executor.submit(sweep.SweepJob(root, threads=1), spec)
        wait_done(job)
        outcome = job.result()
        assert outcome.outcome == sweep.RUNNING_ELSEWHERE and outcome.before == "running"
        # the lock taken between the job's look and its training: train() refuses, no failure either
        monkeypatch.setattr(execute, "job_state", lambda job: "missing")
        raced = sweep.SweepJob(root, threads=1)(spec)
        assert raced.outcome == sweep.RUNNING_ELSEWHERE and "another process" in raced.message
    assert not (spec.run_dir / "checkpoint.pt").exists()


def test_jobs_that_fail_are_reported_failed_with_their_log(root, monkeypatch, tmp_path, capsys):
    empty = tmp_path / "no-data"
    empty.mkdir()
    monkeypatch.setenv("REPRODUCE_DATA", str(empty))  # the jobs inherit it: MNIST is missing there
    scale = tiny().replace(datasets=("mnist",))
    result = sweep.submit(scale, ["04"], jobs=2, threads=1)
    assert not result.ok and set(result.failures) == {s.key for s in result.submitted} and len(result.submitted) == 2
    report = sweep.status(scale, ["04"])
    assert report.counts(NB04) == {"done": 0, "running": 0, "queued": 0, "failed": 2, "partial": 0, "missing": 0, "unreadable": 0}
    for entry in report.failed:
        assert Path(entry.log).is_file() and entry.log == sweep.load_records(scale)[entry.key]["stderr"]
        assert any("DatasetNotFoundError" in line or "mnist data not found" in line for line in entry.tail)
        assert "raised" in entry.detail
    text = report.format()
    assert text.count("FAILED ") == 2 and report.failed[0].log in text


def test_status_command_shows_killed_and_raising_jobs_and_exits_1(root, capsys):
    """Two submissions recorded in jobs.json as a sweep writes them: a local job whose process is
    gone without a result (killed), and one whose result is submitit's ("error", traceback)."""
    killed, raising = sweep.notebook_jobs("smoke", ["04"])[NB04]
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    records = {}
    for spec, job_id in ((killed, gone.stdout.strip()), (raising, "999999999")):
        logs = root / "logs" / job_id
        logs.mkdir(parents=True)
        records[spec.key] = {"job_id": job_id, "executor": "local", "notebooks": [NB04], "submitted": "2024-01-01",
                             "stdout": str(logs / f"{job_id}_0_log.out"), "stderr": str(logs / f"{job_id}_0_log.err"),
                             "result": str(logs / f"{job_id}_0_result.pkl")}
    Path(records[killed.key]["stderr"]).write_text("epoch 1\nKilled: out of memory\n")
    Path(records[raising.key]["stderr"]).write_text("Traceback (most recent call last):\nValueError: boom\n")
    with open(records[raising.key]["result"], "wb") as f:
        pickle.dump(("error", "Traceback (most recent call last):\n  ...\nValueError: boom\n"), f)
    sweep.jobs_path("smoke").parent.mkdir(parents=True)  # as a sweep's first submission makes it
    sweep.jobs_path("smoke").write_text(json.dumps({"version": 1, "jobs": records}))

    assert runner.main(["status", "--scale", "smoke", "--root", str(root), "04"]) == 1
    out = capsys.readouterr().out
    assert f"FAILED {killed.key} (04_early_detection): local job {gone.stdout.strip()} ended without a result" in out
    assert f"FAILED {raising.key} (04_early_detection): local job 999999999 raised: ValueError: boom" in out
    assert records[killed.key]["stderr"] in out and "| Killed: out of memory" in out and "| ValueError: boom" in out
