"""Sweeps (reproduce.sweep, ``python -m reproduce plan / sweep / status``) with submitit's local executor.

The expectations are independent of the sweep: which runs a notebook needs is checked against the
run folders the notebook itself creates; a swept run against the same run trained inline; a
locked run against a lock this test holds; a failure against a dataset that is not there.
"""

from __future__ import annotations

import json
import math
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from reproduce.experiments import fnn_map
from reproduce.runner import notebooks as runner
import reproduce.sweep as sweep
from reproduce.experiments import notebooks as nbs
from reproduce.sweep import execute, planning, submission
from reproduce.data.datasets import load_dataset
from reproduce.config.scales import ROOT_ENV
from reproduce.training.runs import train_spec
from reproduce.config.scales import get_scale
from reproduce.training.loop import load_run, run_lock, train

submitit = pytest.importorskip("submitit")

NB04 = "04_early_detection"
JOB_TIMEOUT_S = 300


#: this checkout (its notebooks), whatever $REPRODUCE_ROOT a test sets
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "root"
    folder.mkdir()
    monkeypatch.setenv(ROOT_ENV, str(folder))
    return folder


@pytest.fixture
def one_thread():
    """Jobs train with one thread; so does the inline reference (bit-identical results need the same count)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def tiny():
    """Notebook 04 at this scale: a plain and a residual net of depth 4, 2 epochs on 128 digits."""
    return get_scale("smoke").replace(epochs=2, train_limit=128, depths=(4,), early_depth=4)


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
# which runs the notebooks need


def parameters_cell(stem: str) -> dict:
    nb = json.loads((REPO / "notebooks" / f"{stem}.ipynb").read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    values: dict = {}
    exec("".join(cell["source"]), {}, values)  # literals only (the notebooks' convention)
    return values


def test_the_notebooks_and_their_defaults_are_the_ones_the_sweep_assumes():
    stems = [p.stem for p in runner.find_notebooks(REPO)]
    assert tuple(stems) == sweep.NOTEBOOKS
    for stem in nbs.NOTEBOOKS:
        defaults = nbs.notebook_defaults(stem)
        params = parameters_cell(stem)
        assert {k: params[k] for k in defaults} == dict(defaults), stem
        assert params["seed"] == 0


def test_notebook_jobs_per_notebook_and_deduplicated(root):
    scale = get_scale("smoke")
    jobs = sweep.notebook_jobs(scale)
    assert list(jobs) == list(sweep.NOTEBOOKS) and jobs["00_quickstart"] == [] and jobs["07_any_resnet"] == []
    # 01 and 02 train the grid on the data they load (flat); the same specs without loading it
    data = load_dataset("digits", seed=0, flat=True, train_limit=scale.train_limit)
    grid = [s.key for s in fnn_map.run_specs(scale, seed=0, data=data)]
    assert [j.key for j in jobs["02_fnn_width_depth"]] == grid
    assert [j.key for j in jobs["01_bundles_theory"]][: len(grid)] == grid
    assert [j.key.split("/")[0] for j in jobs["01_bundles_theory"][len(grid):]] == ["theory", "theory"]
    assert len(jobs["04_early_detection"]) == 2 and {j.key for j in jobs[NB04]} <= {j.key for j in jobs["03_depth_vgg_vs_resnet"]}
    unique = sweep.unique_jobs(jobs)
    keys = [job.key for job, _ in unique]
    assert len(keys) == len(set(keys)) == len({j.key for specs in jobs.values() for j in specs})
    shared = dict((job.key, stems) for job, stems in unique)[jobs[NB04][0].key]
    assert NB04 in shared and "03_depth_vgg_vs_resnet" in shared
    assert sweep.notebook_jobs(scale, ["04"], seed=1)[NB04][0].train.seed == 1
    with pytest.raises(ValueError, match="unknown notebook 'nope'; valid notebooks: 00_quickstart"):
        sweep.resolve_notebooks(["nope"])
    with pytest.raises(ValueError, match="ambiguous"):
        sweep.resolve_notebooks(["0"])
    assert sweep.resolve_notebooks(["notebooks/03_depth_vgg_vs_resnet.ipynb", "03", "04"]) == [
        "03_depth_vgg_vs_resnet", NB04]


def test_jobs_of_notebooks_03_and_04_are_exactly_the_runs_the_notebooks_train(tmp_path):
    """Run the notebooks at smoke in a fresh root: the run folders they create are the jobs' keys,
    and every job then reports its run done."""
    root = tmp_path / "nbroot"
    root.mkdir()
    depth = root / "results" / "smoke" / "depth"
    paths = runner.resolve_notebooks(["04", "03"], runner.find_notebooks(REPO))
    created = {}
    for path in paths:  # 04 first: its runs are a subset of 03's, which 03 then reuses
        [record] = runner.run_notebooks([path], "smoke", 0, root / "executed", progress_bar=False, root=root)
        assert record.ok, record.reason
        created[path.stem] = {f"depth/{p.name}" for p in depth.iterdir() if (p / "checkpoint.pt").exists()}
    # keys are computed only now (computing a key creates the run's folder)
    jobs = sweep.notebook_jobs("smoke", ["03", "04"], root=root)
    assert {j.key for j in jobs[NB04]} == created[NB04]
    assert {j.key for j in jobs["03_depth_vgg_vs_resnet"]} == created["03_depth_vgg_vs_resnet"]
    report = sweep.status("smoke", ["03", "04"], root=root)
    assert all(e.category == "done" and e.state == "finished" for e in report.jobs)
    assert report.counts(NB04)["done"] == 2 and report.counts("03_depth_vgg_vs_resnet")["done"] == 4


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


# --------------------------------------------------------------------------------------------
# plan


def test_plan_counts_the_remaining_steps(root):
    scale = tiny()
    done, left = sweep.notebook_jobs(scale, ["04"])[NB04]
    train_spec(done, progress=False)
    assumed = sweep.plan(scale, ["04"], steps_per_second=4.0)
    rows = {r.key: r for r in assumed.rows}
    steps = math.ceil(128 / scale.batch_size)
    assert rows[done.key].hours_left == 0 and rows[done.key].state == "finished"
    assert rows[left.key].steps_per_epoch == steps
    assert rows[left.key].hours_left == pytest.approx(scale.epochs * steps / 4.0 / 3600)
    assert (rows[left.key].model, rows[left.key].dataset, rows[left.key].epochs, rows[left.key].seed) == (
        left.model.label, "digits", 2, 0)
    assert "assumed: 4 optimiser steps per second" in assumed.format()
    measured = sweep.plan(scale, ["04"], measure_budget_s=5)
    row = {r.key: r for r in measured.rows}[left.key]
    assert row.timing == "measured" and row.seconds_per_step > 0 and measured.measured == 1
    # timed on the CPU: the hours are CPU-hours, not GPU-hours
    assert "CPU-hours left" in measured.format() and "GPU-h" not in measured.format() and "cpu" in measured.device
    # paper datasets are sized without their files
    assert planning._train_size("cifar10", None, 0) == 50_000 and planning._train_size("digits", None, 0) == 1437


def test_plan_shows_what_it_is_timing(root, monkeypatch, capsys):
    """Before: `plan --scale paper` printed nothing for minutes while it timed 111 model configs."""
    monkeypatch.setenv("REPRODUCE_PROGRESS", "text")
    shown = planning.progress_bar  # make test sets TQDM_DISABLE=1, which tqdm reads when imported
    monkeypatch.setattr(planning, "progress_bar", lambda *a, **k: shown(*a, **{**k, "disable": False}))
    scale = tiny()
    measured = sweep.plan(scale, ["04"], measure_budget_s=5)
    err = capsys.readouterr().err
    timed = [line for line in err.replace("\r", "\n").splitlines() if "timing model configs" in line]
    assert timed and f"/{len(measured.rows)}" in timed[-1] and "plain" in err


def test_plan_names_the_hours_after_the_device_that_timed_them():
    def plan(device, assumption=None):
        return sweep.Plan("smoke", [], {}, device, assumption, 0, 0)

    assert plan("cpu (2 threads)").hours_name == "CPU-h"
    assert plan("NVIDIA H200 (cuda)").hours_name == "GPU-h"
    assert plan("NVIDIA H200 (cuda)", assumption="3 optimiser steps per second").hours_name == "hours"
    assert "GPU-hours left: 0" in plan("NVIDIA H200 (cuda)").format()
    assert "CPU-hours left: 0" in plan("cpu (2 threads)").format()


def test_plan_describes_a_search_with_the_train_config_the_search_trains_with(root, monkeypatch):
    """The plan sizes a search from the TrainConfig its attempts really get (here with a learning
    rate other than TrainConfig's default, which the plan once left out)."""
    from reproduce.experiments import autotune

    scale = get_scale("smoke").replace(lr=5e-4, train_limit=128)
    seen = []

    class Stop(Exception):
        pass

    def fake_train(mcfg, data, tcfg, folder, **kw):
        seen.append(tcfg)
        raise Stop

    monkeypatch.setattr(autotune, "train", fake_train)
    with pytest.raises(Stop):
        autotune.search(scale, "plain", seed=0, progress=False)
    described = planning._describe(autotune.SearchSpec(scale, "plain", scale.dataset, 0))[-1]
    assert seen[0].lr == 5e-4 and described == seen[0]


def test_plan_counts_the_steps_training_takes_full_batches_times_passes(root):
    """By hand: 150 digits at batch 64 -> 2 full batches (the partial one is dropped), x 3 passes = 6
    steps per epoch (``ceil(150 / 64)`` = 3, what the plan counted, misses the passes and the dropped batch)."""
    scale = tiny().replace(train_limit=150, passes=3)
    rows = sweep.plan(scale, ["04"], steps_per_second=1.0).rows
    assert {r.steps_per_epoch for r in rows} == {6}
    assert [r.hours_left for r in rows] == pytest.approx([2 * 6 / 3600] * len(rows))


# --------------------------------------------------------------------------------------------
# the job callable, SLURM settings and the command line


def test_sweep_job_is_picklable_and_checkpointable(root):
    spec = sweep.notebook_jobs(tiny(), ["04"])[NB04][0]
    call = sweep.SweepJob(root, threads=1)
    assert isinstance(call, submitit.helpers.Checkpointable)
    clone = pickle.loads(pickle.dumps(call))
    assert clone.root == str(root.resolve()) and clone.threads == 1
    delayed = call.checkpoint(spec)
    assert delayed.function is call and delayed.args == (spec,)


@pytest.mark.parametrize("value", ["abc", "0", "-2", "1.5"])
def test_a_bad_slurm_cpus_per_task_is_named_before_anything_trains(root, monkeypatch, value):
    """Before: ``int("abc")`` raised "invalid literal for int()", naming no variable."""
    job = sweep.notebook_jobs("smoke", ["04"])[NB04][0]
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", value)
    with pytest.raises(ValueError, match=rf"SLURM_CPUS_PER_TASK={value!r} is not a CPU count; valid: a positive integer"):
        execute.SweepJob(str(root))._one(job)
    assert not job.run_dir.exists()


def test_slurm_settings_from_file_and_flags(tmp_path):
    toml = tmp_path / "cluster.toml"
    toml.write_text('[slurm]\npartition = "gpu"\ntime = 720\ngpus_per_job = 1\nsbatch = { account = "abc", qos = "low" }\n')
    cfg = sweep.slurm_config(toml, time=90, sbatch=["qos=high"], cpus_per_job=None)
    assert (cfg.partition, cfg.time, cfg.gpus_per_job, cfg.cpus_per_job) == ("gpu", 90, 1, 1)
    assert dict(cfg.sbatch) == {"account": "abc", "qos": "high"}
    params = cfg.executor_parameters("reproduce-paper")
    assert params["gpus_per_node"] == 1 and params["additional_parameters"] == {"account": "abc", "qos": "high"}
    (tmp_path / "bad.json").write_text('{"partiton": "gpu"}')
    with pytest.raises(ValueError, match="unknown setting.*partiton.*valid settings: partition"):
        sweep.slurm_config(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="KEY=VALUE"):
        sweep.slurm_config(sbatch=["account"])
    with pytest.raises(ValueError, match="cannot read config file"):
        sweep.slurm_config(tmp_path / "missing.toml")


def test_slurm_settings_that_are_the_wrong_kind_or_not_text_name_the_file_and_the_forms(tmp_path):
    """Before: ``sbatch = "account=abc"`` said "got 'a'" (the string was read letter by letter), and a
    file that is not UTF-8 raised a bare UnicodeDecodeError naming no file."""
    toml = tmp_path / "cluster.toml"
    toml.write_text('sbatch = "account=abc"\n')
    with pytest.raises(ValueError) as error:
        sweep.slurm_config(toml)
    message = str(error.value)
    assert str(toml) in message and "'account=abc'" in message and "a table" in message and "got 'a'" not in message
    latin = tmp_path / "latin.toml"
    latin.write_bytes('partition = "gr\u00fcn"\n'.encode("latin-1"))
    with pytest.raises(ValueError, match=rf"config file {latin} is not UTF-8 text"):
        sweep.slurm_config(latin)


@pytest.mark.parametrize("argv, message", [
    (["sweep", "--scale", "smoke", "nope"], "unknown notebook 'nope'; valid notebooks"),
    (["sweep", "--scale", "smoke", "--partition", "gpu"], "--partition belong(s) to --executor slurm"),
    (["sweep", "--scale", "smoke", "--executor", "slurm", "--jobs", "2"], "--jobs belongs to --executor local"),
    (["sweep", "--scale", "smoke", "--executor", "slurm", "--sbatch", "account"], "KEY=VALUE"),
    (["status", "--scale", "smoke", "0"], "ambiguous"),
    (["plan", "--scale", "smoke", "9"], "unknown notebook '9'"),
])
def test_command_line_errors_name_the_value_and_the_choices(argv, message, root, capsys):
    assert runner.main([*argv, "--root", str(root)]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    ["sweep", "--executor", "pbs"], ["sweep", "--jobs", "0"], ["sweep", "--scale", "huge"],
    ["plan", "--assume-steps-per-second", "-1"], ["sweep", "--executor", "slurm", "--time", "ten"],
    # a seed the data split cannot take: before, plan accepted it and every sweep job failed
    ["plan", "--seed", str(2**32)], ["sweep", "--seed", "-1"], ["run", "--seed", str(2**40)],
])
def test_command_line_rejects_bad_values_as_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        runner.main(argv)
    assert exc.value.code == 2 and "error: argument" in capsys.readouterr().err


def test_command_line_dry_run_plan_and_status(root, capsys):
    assert runner.main(["sweep", "--scale", "smoke", "--root", str(root), "--dry-run", "04"]) == 0
    out = capsys.readouterr().out
    assert "would submit 2 of 2" in out and "depth/digits-plain-10-s0-" in out
    assert runner.main(["status", "--scale", "smoke", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "00_quickstart" in out and "trains one tiny run inline" in out and "all (each run once)" in out
    assert runner.main(["plan", "--scale", "smoke", "--root", str(root), "--assume-steps-per-second", "10",
                        "04"]) == 0
    out = capsys.readouterr().out
    assert "Hours left" in out and "GPU-h" not in out and "assumed: 10 optimiser steps per second" in out


def test_job_cost_orders_searches_and_deep_nets_first():
    from reproduce.experiments import autotune
    from reproduce.experiments import depth_study
    from reproduce.experiments import fnn_map
    from reproduce.config.scales import get_scale
    from reproduce.sweep import job_cost

    cpu = get_scale("cpu")
    deep = depth_study.conv_spec(cpu, "plain", 120, seed=0)
    shallow = depth_study.conv_spec(cpu, "plain", 10, seed=0)
    fnn = fnn_map.run_specs(cpu, seed=0)[0]
    search = autotune.search_specs(cpu, ("plain",), seeds=[0])[0]
    # by hand: 30 epochs x 120 layers x (1/4)^2 = 225 > 30 x 10 / 16 = 18.75; an FNN at cpu's released
    # length (10 epochs of 43 passes) 10 x 43 x depth x 0.05, at 30 one-pass epochs 30 x depth x 0.05
    assert job_cost(deep) == pytest.approx(30 * 120 / 16) and job_cost(shallow) == pytest.approx(30 * 10 / 16)
    assert job_cost(fnn) == pytest.approx(10 * 43 * fnn.model.fnn_depth * 0.05)
    one_pass = fnn_map.run_specs(cpu.replace(fnn_epochs=30, fnn_passes=1), seed=0)[0]
    assert job_cost(one_pass) == pytest.approx(30 * one_pass.model.fnn_depth * 0.05)
    assert sorted([shallow, fnn, search, deep], key=lambda j: -job_cost(j))[:2] == [search, deep]


@pytest.mark.parametrize("command", ["status", "plan", "sweep"])
def test_a_root_that_is_not_a_folder_is_a_usage_error_and_nothing_is_created(command, tmp_path, capsys):
    """Before, `status --root <missing>` created the folder and reported 13 missing runs."""
    missing = tmp_path / "no-such-root"
    extra = ["--dry-run"] if command == "sweep" else []
    assert runner.main([command, "--scale", "smoke", "--root", str(missing), *extra]) == 2
    assert f"--root {missing} is not a folder" in capsys.readouterr().err
    assert not missing.exists()
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    assert runner.main([command, "--scale", "smoke", "--root", str(a_file), *extra]) == 2
    assert f"--root {a_file} is not a folder" in capsys.readouterr().err
