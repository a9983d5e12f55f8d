"""`python -m reproduce compare`: fresh figures/<scale>/*.csv against committed ones.

Every expectation below is worked out by hand from the tiny CSV files written in each test.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from reproduce.runner import notebooks as runner
from reproduce.runner.compare import (
    CellChange,
    CompareError,
    MeasuredChange,
    RowChange,
    VerdictChange,
    compare_figures,
    is_timing_column,
    key_columns,
    numbers_in,
)
from reproduce.config.scales import SCALE_NAMES

CLAIMS_HEADER = "claim,paper,measured,verdict,seeds\n"


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(root, fresh figures/cpu folder, reference folder)."""
    root = tmp_path / "repo"
    fresh = root / "figures" / "cpu"
    fresh.mkdir(parents=True)
    ref = tmp_path / "ref"
    ref.mkdir()
    return root, fresh, ref


def _both(fresh: Path, ref: Path, name: str, committed: str, new: str) -> None:
    _write(ref, name, committed)
    _write(fresh, name, new)


# --------------------------------------------------------------------------- claims tables


def test_verdict_flip_is_reported(tree) -> None:
    root, fresh, ref = tree
    _both(fresh, ref, "x-claims.csv",
          CLAIMS_HEADER + "c1,paper says,acc 0.9,holds,3\nc2,other,acc 0.5,holds,3\n",
          CLAIMS_HEADER + "c1,paper says,acc 0.9,does not hold,3\nc2,other,acc 0.5,holds,3\n")
    report = compare_figures("cpu", ref, root=root)
    assert report.verdicts == [VerdictChange("x-claims.csv", "c1", "holds", "does not hold")]
    assert report.measured == [] and report.cells == [] and report.rows == []
    assert report.exit_status == 1
    text = report.format()
    assert "verdict: c1: holds -> does not hold" in text
    assert text.splitlines()[-1] == "1 verdicts changed, 0 numbers moved in 1 files; 0 files identical"


def test_measured_text_lists_the_numbers_that_moved(tree) -> None:
    root, fresh, ref = tree
    old = "fnn-16x4: mean 0.812 over 3 seeds; p = 2.4e-09"
    new = "fnn-16x4: mean 0.798 over 3 seeds; p = 3.1e-08"
    _both(fresh, ref, "x-claims.csv",
          CLAIMS_HEADER + f"c1,p,{old},holds,3\n",
          CLAIMS_HEADER + f"c1,p,{new},holds,3\n")
    report = compare_figures("cpu", ref, root=root)
    # 16, 4 and 3 did not move; the mean and the p-value did
    assert report.measured == [
        MeasuredChange("x-claims.csv", "c1", old, new, (("0.812", "0.798"), ("2.4e-09", "3.1e-08")))
    ]
    assert report.verdicts == []
    assert report.numbers_moved == 2
    text = report.format()
    assert f"committed: {old}" in text and f"fresh:     {new}" in text
    assert "numbers moved: 0.812 -> 0.798, 2.4e-09 -> 3.1e-08" in text


def test_claims_added_removed_and_old_files_without_seeds(tree) -> None:
    root, fresh, ref = tree
    _both(fresh, ref, "x-claims.csv",
          "claim,paper,measured,verdict\nkept,p,1,holds\ngone,p,2,holds\n",
          CLAIMS_HEADER + "kept,p,1,holds,1\nnew one,p,3,holds,1\n")
    report = compare_figures("cpu", ref, root=root)
    assert report.rows == [RowChange("x-claims.csv", "gone", "committed"),
                           RowChange("x-claims.csv", "new one", "fresh")]
    assert [(c.column, c.side) for c in report.columns] == [("seeds", "fresh")]
    assert report.verdicts == [] and report.measured == []
    assert report.exit_status == 1


# --------------------------------------------------------------------------- other tables


def test_moved_number_shows_the_committed_spread_over_seeds(tree) -> None:
    root, fresh, ref = tree
    header = "kind,depth,seed,test_acc,seconds\n"
    committed = header + (
        "plain,4,0,0.81,1.5\n"
        "plain,4,1,0.85,1.6\n"
        "plain,4,2,0.83,1.7\n"
        "plain,8,0,0.90,2.0\n"
        "plain,8,1,0.70,2.1\n"
    )
    # one accuracy moves; every timing moves too, and must not be reported
    new = header + (
        "plain,4,0,0.81,9.5\n"
        "plain,4,1,0.86,9.6\n"
        "plain,4,2,0.83,9.7\n"
        "plain,8,0,0.90,9.0\n"
        "plain,8,1,0.70,9.1\n"
    )
    _both(fresh, ref, "runs.csv", committed, new)
    report = compare_figures("cpu", ref, root=root)
    # the three committed depth-4 seeds hold 0.81, 0.85, 0.83: spread 0.81..0.85
    assert report.cells == [
        CellChange("runs.csv", "kind=plain, depth=4, seed=1", "test_acc", "0.85", "0.86", True, (0.81, 0.85, 3))
    ]
    line = next(line for line in report.format().splitlines() if "test_acc" in line)
    assert "runs.csv: kind=plain, depth=4, seed=1: test_acc: 0.85 -> 0.86" in line
    assert "committed seeds 0.81..0.85, 3 seeds" in line
    assert report.summary() == "0 verdicts changed, 1 numbers moved in 1 files; 0 files identical"


def test_timing_columns_are_ignored(tree) -> None:
    root, fresh, ref = tree
    _both(fresh, ref, "pruned.csv",
          "net,test_acc,inference_ms,latency_ms,seconds,time,ms,wall_time\nfull,0.5,7.79,1.0,2.0,3.0,4.0,5.0\n",
          "net,test_acc,inference_ms,latency_ms,seconds,time,ms,wall_time\nfull,0.5,8.11,1.1,2.2,3.3,4.4,5.5\n")
    report = compare_figures("cpu", ref, root=root)
    assert report.cells == [] and report.columns == []
    assert report.identical == ["pruned.csv"]
    assert report.exit_status == 0
    assert "pruned.csv: identical (differs only in timing columns" in report.format()


def test_timing_rule() -> None:
    for name in ("seconds", "inference_ms", "latency_ms", "ms", "epoch_time", "Time"):
        assert is_timing_column(name), name
    for name in ("test_acc", "memory_mb", "msb", "seed", "k"):
        assert not is_timing_column(name), name


def test_rows_and_files_on_one_side_only(tree) -> None:
    root, fresh, ref = tree
    _both(fresh, ref, "summary.csv",
          "set,k,mean\nall,1,0.5\nall,2,0.4\n",
          "set,k,mean\nall,1,0.5\nall,3,0.3\n")
    _write(ref, "old.csv", "a\n1\n")
    _write(fresh, "new.csv", "a\n1\n")
    report = compare_figures("cpu", ref, root=root)
    assert report.rows == [RowChange("summary.csv", "set=all, k=2", "committed"),
                           RowChange("summary.csv", "set=all, k=3", "fresh")]
    assert report.only_committed == ["old.csv"] and report.only_fresh == ["new.csv"]
    assert report.changed_files == ["new.csv", "old.csv", "summary.csv"]
    text = report.format()
    assert "old.csv: only in the committed figures" in text
    assert "new.csv: only in the fresh figures" in text
    assert "row removed: only in the committed file: set=all, k=2" in text


def test_text_cell_and_int_measurements_are_compared_not_used_as_keys(tree) -> None:
    root, fresh, ref = tree
    # width repeats, width and depth make the rows unique; parameters (int) and status (text)
    # come after that point and are compared as values
    _both(fresh, ref, "table.csv",
          "width,depth,parameters,status,test_acc\n2,1,160,finished,0.14\n2,2,310,finished,0.2\n",
          "width,depth,parameters,status,test_acc\n2,1,161,finished,0.14\n2,2,310,diverged,0.2\n")
    report = compare_figures("cpu", ref, root=root)
    assert report.cells == [
        CellChange("table.csv", "width=2, depth=1", "parameters", "160", "161", True, None),
        CellChange("table.csv", "width=2, depth=2", "status", "finished", "diverged", False, None),
    ]
    assert report.numbers_moved == 1


def test_key_columns_rule() -> None:
    rows = [{"kind": "plain", "depth": "4", "seed": "0", "acc": "0.5", "n": "64"},
            {"kind": "plain", "depth": "8", "seed": "0", "acc": "0.6", "n": "64"}]
    header = ["kind", "depth", "seed", "acc", "n"]
    # kind alone repeats, kind+depth is unique; seed is kept all the same; acc holds floats
    assert key_columns(header, rows, rows) == ["kind", "depth", "seed"]
    # a column holding a float on either side is never a key
    fresh = [dict(rows[0], n="64.5"), rows[1]]
    assert "n" not in key_columns(header, rows, fresh)


def test_tolerance_is_relative(tree) -> None:
    root, fresh, ref = tree
    _both(fresh, ref, "t.csv", "label,x\na,1.0\nb,200.0\n", "label,x\na,1.0000000000001\nb,200.1\n")
    exact = compare_figures("cpu", ref, root=root)
    assert [c.key for c in exact.cells] == ["label=a", "label=b"]
    loose = compare_figures("cpu", ref, 1e-9, root=root)
    # |1.0000000000001 - 1| = 1e-13 <= 1e-9 * 1; |200.1 - 200| = 0.1 > 1e-9 * 200.1
    assert [c.key for c in loose.cells] == ["label=b"]
    with pytest.raises(CompareError, match="-1"):
        compare_figures("cpu", ref, -1.0, root=root)


def test_table_without_keys_is_matched_by_position(tree) -> None:
    root, fresh, ref = tree
    _both(fresh, ref, "c.csv", "r,p\n0.5,0.01\n-0.2,0.3\n", "r,p\n0.5,0.01\n-0.25,0.3\n")
    report = compare_figures("cpu", ref, root=root)
    assert report.cells == [CellChange("c.csv", "row 2", "r", "-0.2", "-0.25", True, None)]


def test_numbers_in_text() -> None:
    assert numbers_in("fnn-16x4: 1468/1470, p = 2.4e-09, r = -0.5 [50, 76]") == [
        "16", "4", "1468", "1470", "2.4e-09", "-0.5", "50", "76"]


# --------------------------------------------------------------------------- the command line


def test_identical_files_exit_zero(tree, capsys: pytest.CaptureFixture) -> None:
    root, fresh, ref = tree
    text = CLAIMS_HEADER + "c1,p,0.5,holds,3\n"
    _both(fresh, ref, "x-claims.csv", text, text)
    _both(fresh, ref, "t.csv", "k,v\na,1.5\n", "k,v\na,1.5\n")
    status = runner.main(["compare", "--root", str(root), "--against", str(ref)])
    assert status == 0
    out = capsys.readouterr().out
    assert "x-claims.csv: identical" in out and "t.csv: identical" in out
    assert out.splitlines()[-1] == "0 verdicts changed, 0 numbers moved in 0 files; 2 files identical"


def test_cli_reports_a_change_with_status_one(tree, capsys: pytest.CaptureFixture) -> None:
    root, fresh, ref = tree
    _both(fresh, ref, "x-claims.csv", CLAIMS_HEADER + "c1,p,0.5,holds,3\n",
          CLAIMS_HEADER + "c1,p,0.5,does not hold,3\n")
    assert runner.main(["compare", "--root", str(root), "--against", str(ref), "--tolerance", "1e-9"]) == 1
    out = capsys.readouterr().out
    assert "tolerance: relative 1e-09" in out
    assert "verdict: c1: holds -> does not hold" in out


def test_unknown_scale_exits_two_naming_the_valid_scales(tree, capsys: pytest.CaptureFixture) -> None:
    root, _, ref = tree
    assert runner.main(["compare", "--root", str(root), "--scale", "huge", "--against", str(ref)]) == 2
    err = capsys.readouterr().err
    assert "'huge'" in err
    for name in SCALE_NAMES:
        assert name in err


def test_missing_figures_folder_exits_two(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    ref = tmp_path / "ref"
    ref.mkdir()
    assert runner.main(["compare", "--root", str(tmp_path), "--scale", "smoke", "--against", str(ref)]) == 2
    assert str(tmp_path / "figures" / "smoke") in capsys.readouterr().err


def test_negative_tolerance_is_a_usage_error(tree, capsys: pytest.CaptureFixture) -> None:
    root, _, ref = tree
    with pytest.raises(SystemExit) as info:
        runner.main(["compare", "--root", str(root), "--against", str(ref), "--tolerance", "-1"])
    assert info.value.code == 2
    assert "'-1'" in capsys.readouterr().err


# --------------------------------------------------------------------------- against a git revision


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args],
                   cwd=repo, check=True, capture_output=True)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_against_a_git_revision(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture) -> None:
    repo = tmp_path / "repo"
    figures = repo / "figures" / "cpu"
    _write(figures, "x-claims.csv", CLAIMS_HEADER + "c1,p,acc 0.90,holds,3\n")
    _write(figures, "same.csv", "k,v\na,1\n")
    _git(repo, "init", "-q")
    _git(repo, "add", "figures")
    _git(repo, "commit", "-q", "-m", "figures")
    # a fresh run overwrites the committed file
    _write(figures, "x-claims.csv", CLAIMS_HEADER + "c1,p,acc 0.70,does not hold,3\n")
    monkeypatch.setenv("REPRODUCE_ROOT", str(repo))

    report = compare_figures("cpu")
    assert report.reference == "git HEAD:figures/cpu"
    assert report.verdicts == [VerdictChange("x-claims.csv", "c1", "holds", "does not hold")]
    assert report.measured[0].numbers == (("0.90", "0.70"),)
    assert report.identical == ["same.csv"]

    assert runner.main(["compare"]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == "1 verdicts changed, 1 numbers moved in 1 files; 1 files identical"

    assert runner.main(["compare", "--against", "no-such-rev"]) == 2
    err = capsys.readouterr().err
    assert "'no-such-rev'" in err and "git revision" in err


# --------------------------------------------------------------------------- never "identical" when different


def test_a_row_with_an_extra_cell_is_a_difference(tree) -> None:
    """Before, the extra cell was dropped by the parser and the file called identical."""
    root, fresh, ref = tree
    _both(fresh, ref, "t.csv", "k,v\na,1\nb,2\n", "k,v\na,1\nb,2,9\n")
    report = compare_figures("cpu", ref, root=root)
    assert "t.csv" not in report.identical and report.changed_files == ["t.csv"]
    assert report.exit_status == 1
    assert "line 3 holds 3 cells, the header 2" in report.format()


def test_a_claims_file_that_is_not_utf8_is_a_difference(tree) -> None:
    """Before, the undecodable bytes were replaced and the table ended in '0 verdicts changed'."""
    root, fresh, ref = tree
    _write(ref, "x-claims.csv", CLAIMS_HEADER + "c1,paper,acc 0.9,holds,3\n")
    (fresh / "x-claims.csv").write_bytes((CLAIMS_HEADER + "c1,paper,acc 0.9,holds,3\n").encode() + b"\xff\xfe\n")
    report = compare_figures("cpu", ref, root=root)
    assert report.changed_files == ["x-claims.csv"] and report.exit_status == 1
    text = report.format()
    assert "x-claims.csv: unreadable in the fresh file: not UTF-8 (byte 0xff at offset" in text
    assert text.splitlines()[-1].startswith("0 verdicts changed") and "1 files unreadable" in text


def test_a_renamed_column_counts_its_numbers_as_moved(tree) -> None:
    """Column 'acc' renamed 'accuracy' with its values zeroed: before, '0 numbers moved'. The two
    numbers of 'acc' are gone and the two of 'accuracy' are new: 4 numbers moved."""
    root, fresh, ref = tree
    _both(fresh, ref, "t.csv", "k,acc\na,0.9\nb,0.8\n", "k,accuracy\na,0\nb,0\n")
    report = compare_figures("cpu", ref, root=root)
    assert report.numbers_moved == 4 and report.changed_files == ["t.csv"]
    assert report.format().splitlines()[-1] == "0 verdicts changed, 4 numbers moved in 1 files; 0 files identical"


def test_against_a_missing_folder_outside_git_names_the_folder(tree) -> None:
    """Before: "... is not inside a git repository", which hides that the folder named is missing."""
    root, fresh, ref = tree
    _write(fresh, "t.csv", "k,v\na,1\n")
    missing = ref.parent / "no-such-folder"
    with pytest.raises(CompareError, match=rf"'{missing}' is not an existing folder, and .* is not inside a git "
                                           rf"repository, so it cannot be a git revision either"):
        compare_figures("cpu", str(missing), root=root)
