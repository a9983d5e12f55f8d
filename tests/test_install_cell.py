"""The notebooks' first cell: installs the package where it is missing (Colab), and nothing else.

Run for real in a fresh virtual environment that lacks the package but sees this environment's
libraries (torch and friends, and pip, through a path entry), so the test installs only `reproduce`.
"""

import json
import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import sync_urls  # noqa: E402


def install_cell() -> str:
    nb = json.loads((ROOT / "notebooks" / "00_quickstart.ipynb").read_text())
    return next("".join(c["source"]) for c in nb["cells"]
                if c["cell_type"] == "code" and "".join(c["source"]).startswith(sync_urls.INSTALL_MARK))


def test_every_notebook_and_badge_carries_the_address_of_pyproject():
    assert sync_urls.sync(check=True) == []
    url = sync_urls.repository_url()
    assert f'REPO_URL = "{url}"' in install_cell()
    slug = url.removeprefix("https://github.com/")
    readme = (ROOT / "README.md").read_text()
    assert f"mybinder.org/v2/gh/{slug}/HEAD" in readme and f"colab.research.google.com/github/{slug}/blob" in readme


@pytest.fixture
def fresh_python(tmp_path):
    """A new venv without `reproduce`, whose path also holds this environment's site-packages.

    Made without pip of its own (ensurepip: about 7 CPU-seconds a venv): the cell's
    ``python -m pip`` is this environment's pip, found through the same path entry, and installs
    into the new venv (the interpreter's prefix), which the tests check."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    py = env_dir / "bin" / "python"
    site = subprocess.check_output([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   text=True).strip()
    (Path(site) / "host_libraries.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    missing = subprocess.run([str(py), "-c", "import importlib.util as u; "
                              "print(u.find_spec('reproduce') is None, u.find_spec('torch') is not None)"],
                             capture_output=True, text=True, check=True, cwd=tmp_path).stdout.split()
    assert missing == ["True", "True"]
    return py


def run_cell(py: Path, cwd: Path, **env) -> subprocess.CompletedProcess:
    return subprocess.run([str(py), "-c", install_cell()], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", **env})


def installed_from(py: Path) -> str:
    # run outside the checkout, so that the working directory cannot supply the package
    return subprocess.check_output([str(py), "-c", "import reproduce; print(reproduce.__file__)"], text=True,
                                   cwd=py.parent).strip()


@pytest.mark.integration
def test_inside_the_repository_the_cell_installs_the_checkout(fresh_python):
    out = run_cell(fresh_python, ROOT / "notebooks")
    assert out.returncode == 0, out.stderr
    assert installed_from(fresh_python).startswith(str(fresh_python.parent.parent))
    # run again: a no-op now
    again = run_cell(fresh_python, ROOT / "notebooks")
    assert again.returncode == 0 and again.stdout == ""


@pytest.mark.integration
def test_outside_the_repository_the_cell_installs_from_the_repository_address(fresh_python, tmp_path):
    # the address of pyproject, pointed at this checkout's git history (no network here)
    out = run_cell(fresh_python, tmp_path, REPRODUCE_GIT_URL=f"git+file://{ROOT}")
    assert out.returncode == 0, out.stderr
    assert "site-packages" in installed_from(fresh_python)
    # only `reproduce` went in: the host's libraries were found, nothing else was installed
    listed = subprocess.check_output([str(fresh_python), "-m", "pip", "list", "--path",
                                      str(Path(installed_from(fresh_python)).parent.parent)], text=True)
    names = {line.split()[0].lower() for line in listed.splitlines()[2:]}
    assert "reproduce" in names and not names & {"torch", "jupyterlab", "ipywidgets", "numpy"}
