"""Sweeps (reproduce.sweep, ``python -m reproduce plan / sweep / status``) with submitit's local executor.

The expectations are independent of the sweep: which runs a notebook needs is checked against the
run folders the notebook itself creates. The sweeps that start local job processes are in
test_sweep_local.py (a module of its own, so that pytest-xdist can run it beside this one).
"""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import pytest

from reproduce.experiments import fnn_map
from reproduce.runner import notebooks as runner
import reproduce.sweep as sweep
from reproduce.experiments import notebooks as nbs
from reproduce.sweep import execute, planning
from reproduce.data.datasets import load_dataset
from reproduce.config.scales import ROOT_ENV
from reproduce.training.runs import train_spec
from reproduce.config.scales import get_scale

submitit = pytest.importorskip("submitit")

NB04 = "04_early_detection"


#: this checkout (its notebooks), whatever $REPRODUCE_ROOT a test sets
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "root"
    folder.mkdir()
    monkeypatch.setenv(ROOT_ENV, str(folder))
    return folder


def tiny():
    """Notebook 04 at this scale: a plain and a residual net of depth 4, 2 epochs on 128 digits."""
    return get_scale("smoke").replace(epochs=2, train_limit=128, depths=(4,), early_depth=4)


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


@pytest.mark.integration
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
