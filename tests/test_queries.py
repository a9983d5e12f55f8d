"""``status``, ``plan`` and ``sweep --dry-run`` are queries: they never write, and one bad run folder
does not stop them (issue 23; each test failed before its fix).

The read-only tree is planted two ways, because the tests may run as root (for whom permission bits
do not stop a write): the whole tree is compared file by file before and after, and every write
under the tree is made to fail as a read-only file system does (EROFS).
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

import reproduce.sweep as sweep
from reproduce.runner import notebooks as runner

NB04 = "04_early_detection"
QUERIES = [["status"], ["plan", "--assume-steps-per-second", "10"], ["sweep", "--dry-run"]]


@pytest.fixture
def root(results_root: Path) -> Path:
    return results_root


def _plant_runs(root: Path) -> list:
    """Notebook 04's two smoke runs: one folder holding only a lock file (a trainer was there and
    ended) and its log folder; the other run absent."""
    jobs = sweep.notebook_jobs("smoke", ["04"])[NB04]
    jobs[0].run_dir.mkdir(parents=True)
    (jobs[0].run_dir / ".lock").write_text("12345\n")
    return jobs


def _snapshot(root: Path) -> dict[str, tuple[bool, bytes | None]]:
    return {str(p.relative_to(root)): (p.is_dir(), None if p.is_dir() else p.read_bytes())
            for p in sorted(root.rglob("*"))}


@pytest.mark.parametrize("argv", QUERIES, ids=lambda a: a[0])
def test_a_query_leaves_the_results_tree_as_it_was(root, argv, capsys):
    _plant_runs(root)
    before = _snapshot(root)
    assert runner.main([*argv[:1], "--scale", "smoke", "--root", str(root), *argv[1:], "04"]) == 0
    assert _snapshot(root) == before
    capsys.readouterr()


@pytest.mark.parametrize("argv", QUERIES, ids=lambda a: a[0])
def test_a_query_on_a_read_only_tree_answers(root, argv, monkeypatch, capsys):
    _plant_runs(root)
    prefix = str(root)
    real_open, real_mkdir = os.open, os.mkdir
    writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def read_only_open(path, flags, *args, **kwargs):
        if str(path).startswith(prefix) and flags & writes:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args, **kwargs)

    def read_only_mkdir(path, *args, **kwargs):
        if str(path).startswith(prefix):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only_open)
    monkeypatch.setattr(os, "mkdir", read_only_mkdir)
    assert runner.main([*argv[:1], "--scale", "smoke", "--root", str(root), *argv[1:], "04"]) == 0
    out = capsys.readouterr().out
    assert "depth/digits-plain-" in out or "Hours left" in out or "status of scale 'smoke'" in out


@pytest.mark.parametrize("damage", ["run.json holds a list", "checkpoint.pt is a folder"])
def test_one_unreadable_run_is_reported_with_its_reason_and_the_others_counted(root, damage, capsys):
    bad, other = sweep.notebook_jobs("smoke", ["04"])[NB04]
    bad.run_dir.mkdir(parents=True)
    if damage == "run.json holds a list":
        (bad.run_dir / "checkpoint.pt").write_bytes(b"not a checkpoint")
        (bad.run_dir / "run.json").write_text(json.dumps([1, 2]))
        reason = "run.json"
    else:
        (bad.run_dir / "checkpoint.pt").mkdir()
        reason = "checkpoint.pt is not a file"

    assert runner.main(["status", "--scale", "smoke", "--root", str(root), "04"]) == 1
    out = capsys.readouterr().out
    assert f"UNREADABLE {bad.key}" in out and reason in out
    report = sweep.status("smoke", ["04"], root=root)
    assert report.counts(NB04) == {"done": 0, "running": 0, "queued": 0, "failed": 0, "partial": 0,
                                   "missing": 1, "unreadable": 1}

    assert runner.main(["sweep", "--scale", "smoke", "--root", str(root), "--dry-run", "04"]) == 0
    out = capsys.readouterr().out
    assert "would submit 1 of 2" in out and other.key in out
    line = next(line for line in out.splitlines() if bad.key in line)
    assert "skip: unreadable: " in line and reason in line
