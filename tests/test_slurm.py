"""Integration test against a real SLURM cluster, through submitit.

Run by ``make test-slurm``, which starts a one-node cluster on this machine
(``tools/slurm-local start --install``), exports its ``SLURM_CONF``, runs
``pytest -m slurm tests/test_slurm.py`` and stops the cluster again. By hand:

    tools/slurm-local start && eval "$(tools/slurm-local env)"
    .venv/bin/python -m pytest -m slurm tests/test_slurm.py -v
    tools/slurm-local stop

The test runs only when asked for by a marker expression naming ``slurm`` (``-m slurm``), so
the default ``make test`` skips it even where a cluster answers. It is skipped when ``sbatch``
is missing or no cluster answers ``sinfo``; with ``REPRODUCE_REQUIRE_SLURM=1`` (set by
``make test-slurm``) those cases fail instead, so a green ``make test-slurm`` means a job ran.
"""

from __future__ import annotations

import json
import operator
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import torch

# Without accounting (slurmdbd) `sacct` fails, submitit then reports a job as UNKNOWN and
# `job.result()` waits for ever on a job that died without writing its result: bound the wait.
JOB_TIMEOUT_S = 180


def _unavailable(reason: str) -> None:
    if os.environ.get("REPRODUCE_REQUIRE_SLURM") == "1":
        pytest.fail(f"{reason} (REPRODUCE_REQUIRE_SLURM=1)")
    pytest.skip(reason)


@pytest.fixture
def slurm_cluster(request: pytest.FixtureRequest) -> None:
    """Skip unless the run asked for SLURM tests and a cluster answers."""
    if "slurm" not in (request.config.getoption("markexpr", "") or ""):
        pytest.skip("SLURM tests run only when selected: `make test-slurm` or `pytest -m slurm`")
    if shutil.which("sbatch") is None:
        _unavailable("no `sbatch` on PATH: `tools/slurm-local start --install` sets up a cluster")
    try:
        sinfo = subprocess.run(["sinfo", "-h", "-o", "%P %a %D"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        _unavailable("`sinfo` did not answer within 20 s")
    if sinfo.returncode != 0 or not sinfo.stdout.strip():
        _unavailable(
            f"no SLURM cluster answers `sinfo` (SLURM_CONF={os.environ.get('SLURM_CONF')!r}): "
            f"{sinfo.stderr.strip() or 'no partitions'}"
        )


@pytest.mark.slurm
def test_submitit_job_runs_on_the_cluster(slurm_cluster: None, tmp_path) -> None:
    submitit = pytest.importorskip("submitit")
    executor = submitit.AutoExecutor(folder=tmp_path / "%j", cluster="slurm")
    executor.update_parameters(timeout_min=5, cpus_per_task=1)
    # operator.add pickles by reference and imports anywhere; the job runs it with this
    # interpreter (submitit launches sys.executable on the node).
    job = executor.submit(operator.add, 2, 2)

    deadline = time.monotonic() + JOB_TIMEOUT_S
    while not job.done():
        if time.monotonic() > deadline:
            job.cancel(check=False)
            logs = "\n".join(
                f"--- {path}\n{path.read_text()[-2000:]}"
                for path in (job.paths.stdout, job.paths.stderr)
                if path.exists()
            )
            pytest.fail(f"SLURM job {job.job_id} gave no result within {JOB_TIMEOUT_S} s\n{logs}")
        time.sleep(0.5)

    assert job.result() == 4


# --------------------------------------------------------------------------------------------
# a sweep of notebook 03's runs: one job cancelled mid-run, one preempted mid-run


#: epochs of the swept runs: long enough that a job is caught mid-run. On a quiet machine an epoch
#: takes ~0.3 s (30 epochs with a margin of 12 lost the race once: the cancelled job finished
#: inside SLURM's KillWait), so the margin is kept far above KillWait = 5 s at that pace
SWEEP_EPOCHS = 60
#: interrupt a run once it has finished two epochs, but no later than this many epochs before its end
#: (a cancelled job lives ~5 s more: KillWait; the test must not lose the race)
SWEEP_MARGIN = 45
SWEEP_TIMEOUT_S = 900


def _epochs_done(spec) -> int:
    try:
        return int(json.loads((spec.run_dir / "run.json").read_text()).get("epochs_done") or 0)
    except (OSError, ValueError):
        return 0


@pytest.mark.slurm
def test_sweep_of_notebook_03_survives_scancel_and_preemption(slurm_cluster: None, tmp_path, monkeypatch) -> None:
    """Notebook 03's runs (plain/residual x depth 4/10 on the 1437 training digits, 30 epochs) as a
    SLURM job array of one CPU per job; once the two depth-10 runs are mid-run, one job is cancelled
    (``scancel``) and the other preempted (``USR2``, submitit's preemption signal: it requeues
    itself). A second sweep then submits only the cancelled run. Every run must end finished with
    each epoch in its history exactly once, the interrupted ones resumed from their checkpoints,
    and every run's weights bit-identical to the same spec trained inline (one thread, like the jobs)."""
    pytest.importorskip("submitit")
    import reproduce.sweep as sweep
    from reproduce.config.scales import ROOT_ENV
    from reproduce.training.runs import train_spec
    from reproduce.config.scales import get_scale
    from reproduce.training.loop import load_run

    started = time.monotonic()
    root = tmp_path / "root"
    root.mkdir()
    monkeypatch.setenv(ROOT_ENV, str(root))
    scale = get_scale("smoke").replace(epochs=SWEEP_EPOCHS, train_limit=None)
    nb03 = "03_depth_vgg_vs_resnet"
    specs = sweep.notebook_jobs(scale, ["03"])[nb03]
    deep = {spec.model.kind: spec for spec in specs if spec.model.depth == 10}
    cancelled, preempted = deep["plain"], deep["residual"]
    config = sweep.SlurmConfig(time=60, cpus_per_job=1, array_parallelism=2)

    first = sweep.submit(scale, ["03"], executor="slurm", slurm=config)
    assert sorted(s.key for s in first.submitted) == sorted(s.key for s in specs)
    job_of = {s.key: s.job_id for s in first.submitted}
    interrupted: dict[str, int] = {}
    deadline = time.monotonic() + SWEEP_TIMEOUT_S
    while len(interrupted) < 2:
        for spec, signal_args in ((cancelled, []), (preempted, ["--signal=USR2"])):
            done = _epochs_done(spec)
            if spec.key in interrupted or done < 2:
                continue
            assert done <= SWEEP_EPOCHS - SWEEP_MARGIN, f"{spec.key} got to epoch {done} before it could be interrupted"
            subprocess.run(["scancel", *signal_args, job_of[spec.key]], check=True, timeout=30)
            interrupted[spec.key] = done
        assert time.monotonic() < deadline, f"runs not started in time: {interrupted}"
        time.sleep(0.2)
    assert first.wait(timeout_s=deadline - time.monotonic()), "the first sweep's jobs did not end"
    first_done = time.monotonic()

    # the cancelled job left no result: status calls it failed and shows its log
    report = sweep.status(scale, ["03"])
    by_key = {e.key: e for e in report.jobs}
    assert by_key[cancelled.key].category == "failed", by_key[cancelled.key]
    assert "without a result" in by_key[cancelled.key].detail and Path(by_key[cancelled.key].log).is_file()
    assert {e.category for k, e in by_key.items() if k != cancelled.key} == {"done"}
    # the preempted job requeued itself (same job id) and resumed from its last checkpoint
    outcome = first.outcomes[preempted.key]
    assert outcome.outcome == "finished" and outcome.resumed_from >= interrupted[preempted.key] >= 2
    log = Path(sweep.load_records(scale)[preempted.key]["stdout"]).read_text()
    assert "requeued, it resumes from its last epoch checkpoint" in log

    # the second sweep submits only the cancelled run, which resumes
    second = sweep.submit(scale, ["03"], executor="slurm", slurm=config)
    assert [s.key for s in second.submitted] == [cancelled.key]
    assert second.wait(timeout_s=deadline - time.monotonic()), "the second sweep's job did not end"
    resumed = second.outcomes[cancelled.key]
    assert resumed.outcome == "finished" and resumed.resumed_from >= interrupted[cancelled.key] >= 2
    assert sweep.load_records(scale)[cancelled.key]["previous"] == [job_of[cancelled.key]]
    report = sweep.status(scale, ["03"])
    assert report.counts(nb03)["done"] == 4 and not report.failed
    swept_s = time.monotonic() - started

    # every run finished exactly once, with the weights of an uninterrupted inline run
    swept = {spec.key: load_run(spec.run_dir) for spec in specs}
    monkeypatch.setenv(ROOT_ENV, str(tmp_path / "inline"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for spec in specs:
            run = swept[spec.key]
            assert run.status == "finished" and [r["epoch"] for r in run.history] == list(range(0, SWEEP_EPOCHS + 1))  # epoch 0: untrained
            inline = train_spec(spec, progress=False)
            state, ref = run.model.state_dict(), inline.model.state_dict()
            assert all(torch.equal(state[k], ref[k]) for k in ref), f"{spec.key}: weights differ from the inline run"
            strip = lambda history: [{k: v for k, v in r.items() if k != "seconds"} for r in history]  # noqa: E731
            assert strip(run.history) == strip(inline.history)
    finally:
        torch.set_num_threads(threads)
    print(f"\nSLURM sweep: 4 runs x {SWEEP_EPOCHS} epochs; {cancelled.key} cancelled at epoch "
          f"{interrupted[cancelled.key]}, {preempted.key} preempted at epoch {interrupted[preempted.key]} "
          f"(resumed from {outcome.resumed_from}); first sweep {first_done - started:.0f} s, both sweeps "
          f"{swept_s:.0f} s, with the inline references {time.monotonic() - started:.0f} s")
