"""The layering of ARCHITECTURE.md, as import-linter checks it in ``make test``: the contract holds
on the package, and it is not vacuous: an import planted upwards in a copy breaks it."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT), "--config", str(root / "pyproject.toml"), "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def copy(tmp_path):
    shutil.copytree(REPO / "reproduce", tmp_path / "reproduce", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_package_keeps_its_layers(copy):
    proc = _lint(copy)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 kept, 0 broken" in proc.stdout


@pytest.mark.parametrize("module, upward", [
    ("config/scales.py", "from reproduce.experiments import claims"),  # bottom layer -> experiments
    ("metric/bundles.py", "from reproduce.training.loop import TrainConfig"),  # metric -> training
    ("data/datasets.py", "import reproduce.models.nets"),  # data -> models
])
def test_an_upward_import_breaks_the_contract(copy, module, upward):
    path = copy / "reproduce" / module
    path.write_text(path.read_text() + f"\n{upward}  # planted\n")
    proc = _lint(copy)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    importer = "reproduce." + module.removesuffix(".py").replace("/", ".")
    assert "BROKEN" in proc.stdout and importer in proc.stdout
