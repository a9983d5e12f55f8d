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

import operator
import os
import shutil
import subprocess
import time

import pytest

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
