"""The notebook runner: listing, name resolution, the command line and a real papermill run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from reproduce.runner import notebooks as runner
from reproduce.runner.notebooks import (
    RunRecord,
    find_notebooks,
    format_summary,
    notebook_title,
    resolve_notebooks,
    run_notebooks,
)


def _write_notebook(path: Path, cells: list) -> Path:
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A fake repository root with three notebooks (written out of order) and a checkpoint."""
    nbs = tmp_path / "notebooks"
    _write_notebook(nbs / "10_tenth.ipynb", [new_markdown_cell("Intro text\n\n## Tenth claim")])
    _write_notebook(
        nbs / "01_bundles.ipynb",
        [new_code_cell("x = 1"), new_markdown_cell("# Claim 1: conflicting bundles\nmore")],
    )
    _write_notebook(nbs / "02_no_title.ipynb", [new_code_cell("# not a heading, code")])
    _write_notebook(nbs / ".ipynb_checkpoints" / "01_bundles-checkpoint.ipynb", [])
    (nbs / "README.md").write_text("not a notebook")
    return tmp_path


def test_find_notebooks_sorted_and_only_top_level(repo: Path) -> None:
    stems = [p.stem for p in find_notebooks(repo)]
    assert stems == ["01_bundles", "02_no_title", "10_tenth"]


def test_find_notebooks_without_folder_is_empty(tmp_path: Path) -> None:
    assert find_notebooks(tmp_path) == []


def test_titles_come_from_first_markdown_heading(repo: Path) -> None:
    nbs = repo / "notebooks"
    assert notebook_title(nbs / "01_bundles.ipynb") == "Claim 1: conflicting bundles"
    assert notebook_title(nbs / "10_tenth.ipynb") == "Tenth claim"
    assert notebook_title(nbs / "02_no_title.ipynb") == ""


def test_list_command_prints_stem_and_title(repo: Path, capsys: pytest.CaptureFixture) -> None:
    assert runner.main(["list", "--root", str(repo)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "01_bundles   Claim 1: conflicting bundles",
        "02_no_title",
        "10_tenth     Tenth claim",
    ]


def test_resolve_by_stem_prefix_and_path(repo: Path) -> None:
    available = find_notebooks(repo)
    nbs = repo / "notebooks"
    assert resolve_notebooks([], available) == available
    assert resolve_notebooks(["10_tenth"], available) == [nbs / "10_tenth.ipynb"]
    assert resolve_notebooks(["02"], available) == [nbs / "02_no_title.ipynb"]
    assert resolve_notebooks(["01_bundles.ipynb"], available) == [nbs / "01_bundles.ipynb"]
    assert resolve_notebooks([str(nbs / "10_tenth.ipynb")], available) == [nbs / "10_tenth.ipynb"]
    # order as named, repeats run once
    assert resolve_notebooks(["10", "01", "10_tenth"], available) == [
        nbs / "10_tenth.ipynb",
        nbs / "01_bundles.ipynb",
    ]


def test_resolve_accepts_a_notebook_outside_the_folder(tmp_path: Path, repo: Path) -> None:
    extra = _write_notebook(tmp_path / "elsewhere" / "mine.ipynb", [])
    assert resolve_notebooks([str(extra)], find_notebooks(repo)) == [extra.resolve()]


def test_resolve_unknown_name_lists_choices(repo: Path) -> None:
    available = find_notebooks(repo)
    with pytest.raises(ValueError) as info:
        resolve_notebooks(["01", "99_missing"], available)
    message = str(info.value)
    assert "'99_missing'" in message
    for stem in ("01_bundles", "02_no_title", "10_tenth"):
        assert stem in message


def test_resolve_ambiguous_prefix_is_an_error(repo: Path) -> None:
    with pytest.raises(ValueError, match="ambiguous.*01_bundles.*02_no_title"):
        resolve_notebooks(["0"], find_notebooks(repo))


def test_resolve_missing_path_is_an_error(repo: Path) -> None:
    with pytest.raises(ValueError, match="not found"):
        resolve_notebooks([str(repo / "nowhere" / "x.ipynb")], find_notebooks(repo))


def test_run_command_rejects_bad_names_before_running_anything(
    repo: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def must_not_run(*args, **kwargs):
        raise AssertionError("run_notebooks called despite a bad name")

    monkeypatch.setattr(runner, "run_notebooks", must_not_run)
    assert runner.main(["run", "--root", str(repo), "01", "nope"]) == 2
    err = capsys.readouterr().err
    assert "'nope'" in err and "10_tenth" in err
    assert not (repo / "results").exists()


def test_run_command_rejects_unknown_scale(repo: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        runner.main(["run", "--root", str(repo), "--scale", "huge"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "'huge'" in err
    for name in ("smoke", "cpu", "paper"):
        assert name in err


def test_run_notebooks_rejects_unknown_scale(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'tiny'.*smoke, cpu, long, paper, gpu"):
        run_notebooks([], "tiny", 0, tmp_path)


def test_format_summary_table() -> None:
    records = [
        RunRecord("01_a", ok=True, seconds=1.25, output=Path("out/01_a.ipynb")),
        RunRecord("02_b", ok=False, seconds=3.0, output=Path("out/02_b.ipynb"), reason="boom"),
    ]
    lines = format_summary(records).splitlines()
    assert lines[0].split() == ["notebook", "status", "seconds", "output"]
    assert lines[2].split() == ["01_a", "ok", "1.2", "out/01_a.ipynb"]
    assert lines[3].split() == ["02_b", "failed:", "boom", "3.0", "out/02_b.ipynb"]
    assert lines[-1] == "2 notebook(s): 1 ok, 1 failed"


# --- a real papermill run through a python3 kernel (a few seconds) ---------------------------


def _parameters_cell(source: str):
    cell = new_code_cell(source)
    cell.metadata["tags"] = ["parameters"]
    return cell


@pytest.fixture
def tiny_repo(tmp_path: Path) -> Path:
    nbs = tmp_path / "notebooks"
    _write_notebook(
        nbs / "01_writes.ipynb",
        [
            _parameters_cell('scale = "cpu"\nseed = 0'),
            # relative path: the kernel must run in the notebook's folder
            new_code_cell(
                "import os, pathlib\n"
                "pathlib.Path('written.txt').write_text(\n"
                "    f\"{scale} {seed} {os.environ['MPLBACKEND']} {os.environ['REPRODUCE_SCALE']}\")"
            ),
        ],
    )
    _write_notebook(
        nbs / "02_raises.ipynb",
        [_parameters_cell('scale = "cpu"'), new_code_cell("raise RuntimeError('planted failure')")],
    )
    return tmp_path


def test_run_executes_injects_parameters_and_continues_past_failure(
    tiny_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REPRODUCE_SCALE", "paper")  # a stray value must not win over --scale
    monkeypatch.delenv("MPLBACKEND", raising=False)
    nbs = tiny_repo / "notebooks"
    out = tiny_repo / "results" / "smoke" / "executed"
    # failing notebook first: the second one must still run
    records = run_notebooks(
        [nbs / "02_raises.ipynb", nbs / "01_writes.ipynb"], "smoke", 7, out, progress_bar=False
    )

    assert [(r.notebook, r.ok) for r in records] == [("02_raises", False), ("01_writes", True)]
    assert "RuntimeError" in records[0].reason and "planted failure" in records[0].reason
    assert (nbs / "written.txt").read_text() == "smoke 7 module://matplotlib_inline.backend_inline smoke"
    for record in records:
        assert record.output == out / f"{record.notebook}.ipynb"
        assert record.output.is_file()
    executed = nbformat.read(str(out / "01_writes.ipynb"), as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "smoke" in injected[0].source

    summary = format_summary(records)
    assert "failed: RuntimeError: planted failure" in summary
    assert summary.splitlines()[-1] == "2 notebook(s): 1 ok, 1 failed"
    # the caller's environment is restored afterwards
    import os

    assert os.environ["REPRODUCE_SCALE"] == "paper" and "MPLBACKEND" not in os.environ


def test_notebooks_side_by_side_keep_order_environment_and_failures(
    tiny_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """jobs=2: both notebooks execute (in two kernels at once), the records keep the given order, a
    failure is recorded, every kernel sees the environment, and it is restored afterwards."""
    monkeypatch.setenv("REPRODUCE_SCALE", "paper")
    nbs = tiny_repo / "notebooks"
    out = tiny_repo / "out"
    records = run_notebooks([nbs / "02_raises.ipynb", nbs / "01_writes.ipynb"], "smoke", 3, out,
                            progress_bar=False, jobs=2)
    assert [(r.notebook, r.ok) for r in records] == [("02_raises", False), ("01_writes", True)]
    assert (nbs / "written.txt").read_text() == "smoke 3 module://matplotlib_inline.backend_inline smoke"
    import os

    assert os.environ["REPRODUCE_SCALE"] == "paper"
    with pytest.raises(ValueError, match="jobs must be an int >= 1, got 0"):
        run_notebooks([], "smoke", 0, out, jobs=0)


def test_kernels_side_by_side_start_in_their_folders_without_changing_ours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each kernel starts in its notebook's folder, told so directly: the runner's process never
    moves to another working directory, which its threads share (papermill's ``cwd=`` does, so two
    notebooks side by side could start a kernel in the other's folder, or leave the process there)."""
    paths = []
    for name in ("a", "b"):
        paths.append(_write_notebook(tmp_path / name / f"0{len(paths) + 1}_{name}.ipynb", [
            _parameters_cell('scale = "cpu"'),
            new_code_cell("import os, pathlib\npathlib.Path('cwd.txt').write_text(os.getcwd())")]))
    changed = []
    real_chdir = os.chdir
    monkeypatch.setattr(os, "chdir", lambda path: (changed.append(os.path.abspath(path)), real_chdir(path)))
    start = os.getcwd()
    records = run_notebooks(paths, "smoke", 0, tmp_path / "out", progress_bar=False, jobs=2)
    assert all(r.ok for r in records), [r.reason for r in records]
    # papermill's file reads and writes chdir to the directory the process is in: harmless
    assert set(changed) <= {start} and os.getcwd() == start
    for path in paths:
        assert (path.parent / "cwd.txt").read_text() == str(path.parent.resolve())


@pytest.mark.parametrize("policy, expected", [("native", str(max(1, (os.cpu_count() or 1) // 2))), ("pinned", "")])
def test_kernels_side_by_side_share_the_cores_under_native_numerics(
    tiny_repo: Path, monkeypatch: pytest.MonkeyPatch, policy: str, expected: str
) -> None:
    """Under ``native`` each of 2 kernels side by side computes with cpu_count // 2 threads (as the
    sweep's processes do), not with every core; under ``pinned`` the pinned thread count stays."""
    monkeypatch.setenv("REPRODUCE_NUMERICS", policy)
    monkeypatch.delenv("REPRODUCE_THREADS", raising=False)
    nbs = tiny_repo / "notebooks"
    _write_notebook(nbs / "03_threads.ipynb", [_parameters_cell('scale = "cpu"'), new_code_cell(
        "import os, pathlib\npathlib.Path('threads.txt').write_text(os.environ.get('REPRODUCE_THREADS', ''))")])
    records = run_notebooks([nbs / "01_writes.ipynb", nbs / "03_threads.ipynb"], "smoke", 0, tiny_repo / "out",
                            progress_bar=False, jobs=2)
    assert all(r.ok for r in records)
    assert (nbs / "threads.txt").read_text() == expected
    assert "REPRODUCE_THREADS" not in os.environ  # restored


def test_inline_trainers_run_beside_the_sweep_and_the_rest_after_it(
    tiny_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``train`` given (run --jobs): a notebook that trains inline starts before the sweep
    (``train``) returns and runs beside it; the notebooks that collect swept runs start only after it."""
    import time

    from reproduce.experiments.notebooks import INLINE_ONLY as _INLINE_ONLY

    nbs = tiny_repo / "notebooks"
    inline = next(iter(_INLINE_ONLY))
    _write_notebook(nbs / f"{inline}.ipynb", [_parameters_cell('scale = "cpu"'),
                                              new_code_cell("import pathlib\npathlib.Path('inline.txt').write_text('x')")])
    seen = {}

    def train() -> None:  # the sweep: it ends only once the inline notebook has run beside it
        deadline = time.monotonic() + 120
        while not (nbs / "inline.txt").exists():
            assert time.monotonic() < deadline, "the inline notebook did not run beside the sweep"
            time.sleep(0.2)
        seen["collector ran before the sweep ended"] = (nbs / "written.txt").exists()

    records = run_notebooks([nbs / "01_writes.ipynb", nbs / f"{inline}.ipynb"], "smoke", 1, tiny_repo / "out",
                            progress_bar=False, jobs=2, train=train)
    assert [(r.notebook, r.ok) for r in records] == [("01_writes", True), (inline, True)]
    assert seen == {"collector ran before the sweep ended": False}
    assert (nbs / "written.txt").is_file()


def test_run_command_end_to_end_exit_status(
    tiny_repo: Path, capsys: pytest.CaptureFixture
) -> None:
    status = runner.main(["run", "--root", str(tiny_repo), "--scale", "smoke", "01"])
    assert status == 0
    assert (tiny_repo / "notebooks" / "written.txt").read_text().startswith("smoke 0 ")
    assert (tiny_repo / "results" / "smoke" / "executed" / "01_writes.ipynb").is_file()
    out = capsys.readouterr().out
    assert "01_writes" in out and "1 notebook(s): 1 ok, 0 failed" in out

    assert runner.main(["run", "--root", str(tiny_repo), "--scale", "smoke"]) == 1


def test_run_pins_the_results_root_for_the_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPRODUCE_ROOT", "/somewhere/else")  # a stray value must not win over --root
    nb = tmp_path / "notebooks" / "01_root.ipynb"
    _write_notebook(nb, [_parameters_cell('scale = "cpu"'), new_code_cell(
        "import os, pathlib\npathlib.Path('root.txt').write_text(os.environ['REPRODUCE_ROOT'])")])
    assert runner.main(["run", "--root", str(tmp_path), "--scale", "smoke", "01"]) == 0
    assert (tmp_path / "notebooks" / "root.txt").read_text() == str(tmp_path.resolve())


def test_a_notebook_that_exits_early_is_reported_failed(tmp_path: Path) -> None:
    nb = tmp_path / "notebooks" / "01_exits.ipynb"
    _write_notebook(nb, [_parameters_cell('scale = "cpu"'),
                         new_code_cell("import sys\nsys.exit(0)"),
                         new_code_cell("import pathlib\npathlib.Path('after.txt').write_text('ran')")])
    records = run_notebooks([nb], "smoke", 0, tmp_path / "out", progress_bar=False)
    assert not (nb.parent / "after.txt").exists()
    assert [r.ok for r in records] == [False]
    assert "did not run" in records[0].reason


def test_executed_copies_hold_finished_text_bars_and_no_widget_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TQDM_DISABLE", raising=False)  # make test hides bars; this test needs one
    nb = tmp_path / "notebooks" / "01_bars.ipynb"
    _write_notebook(nb, [_parameters_cell('scale = "cpu"'), new_code_cell(
        "from reproduce.files.progress import progress_bar\n"
        "for _ in progress_bar(range(3), desc='work'):\n    pass\n"
        "import ipywidgets\nipywidgets.IntSlider()")])
    records = run_notebooks([nb], "smoke", 0, tmp_path / "out", progress_bar=False)
    assert [r.ok for r in records] == [True], records
    raw = json.loads((tmp_path / "out" / "01_bars.ipynb").read_text())
    assert "widgets" not in raw["metadata"]
    outputs = [o for c in raw["cells"] for o in c.get("outputs", [])]
    assert not [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    text = "".join("".join(o.get("text", "")) for o in outputs if o.get("output_type") == "stream")
    assert "work: 100%" in text and "3/3" in text


def test_run_prints_each_notebook_before_running_it(tiny_repo: Path, capsys: pytest.CaptureFixture) -> None:
    runner.main(["run", "--root", str(tiny_repo), "--scale", "smoke", "01"])
    out = capsys.readouterr().out
    assert out.index("running 01_writes at scale smoke") < out.index("1 notebook(s)")


def test_list_aligns_its_columns(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for stem in ("01_a", "02_longer_name"):
        _write_notebook(tmp_path / "notebooks" / f"{stem}.ipynb", [new_markdown_cell(f"# Title {stem}")])
    assert runner.main(["list", "--root", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.index("Title") for line in lines] == [len("02_longer_name") + 2] * 2


def test_the_commands_honour_reproduce_root(repo: Path, monkeypatch, capsys) -> None:
    """``$REPRODUCE_ROOT`` names the repository root for ``list`` (and every command), as it does for
    the library: one rule (:func:`reproduce.files.paths.project_root`); before, ``list`` used the
    folder above the package and listed this checkout's notebooks."""
    monkeypatch.setenv("REPRODUCE_ROOT", str(repo))
    assert runner.main(["list"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == ["01_bundles", "02_no_title", "10_tenth"]
    from reproduce.files.paths import project_root

    assert project_root() == repo.resolve()


@pytest.mark.parametrize("command", [["list"], ["status", "--scale", "smoke"], ["plan", "--scale", "smoke"],
                                     ["sweep", "--scale", "smoke", "--dry-run"]])
def test_a_reproduce_root_that_is_a_file_is_named_as_a_usage_error(tmp_path, monkeypatch, capsys, command) -> None:
    """Before: a traceback, ``NotADirectoryError: ... '<file>/results/smoke/depth/.../.lock'``."""
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    monkeypatch.setenv("REPRODUCE_ROOT", str(a_file))
    assert runner.main(command) == 2
    assert f"$REPRODUCE_ROOT={a_file} is a file, not a folder" in capsys.readouterr().err
    from reproduce.files.paths import project_root

    with pytest.raises(NotADirectoryError, match=r"\$REPRODUCE_ROOT=.* is a file, not a folder"):
        project_root()
    assert a_file.read_text() == "x"


def test_an_unknown_reproduce_scale_names_the_variable(monkeypatch) -> None:
    from reproduce.config.scales import resolve_scale

    monkeypatch.setenv("REPRODUCE_SCALE", "huge")
    with pytest.raises(ValueError, match=r"unknown scale 'huge' \(from \$REPRODUCE_SCALE\); valid scales are smoke"):
        resolve_scale("cpu")


def test_without_reproduce_root_the_root_is_the_checkout_around_the_working_directory_or_the_packages(
        tmp_path: Path, monkeypatch) -> None:
    from reproduce.files.paths import project_root

    monkeypatch.delenv("REPRODUCE_ROOT", raising=False)
    checkout = tmp_path / "checkout"
    (checkout / "notebooks").mkdir(parents=True)
    (checkout / "reproduce").mkdir()
    monkeypatch.chdir(checkout / "notebooks")
    assert project_root() == checkout.resolve()  # a checkout at or above the working directory
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert project_root() == Path(runner.__file__).resolve().parents[2]  # the checkout holding the package
