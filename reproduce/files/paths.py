"""Where results and figures go: the repository root, run folders, figure files.

* :func:`project_root` -- the repository root, for the library and every command alike
  (``$REPRODUCE_ROOT``, else the first folder at or above the working directory that holds both
  ``notebooks/`` and ``reproduce/``, else the checkout that holds this package, else the working
  directory, e.g. in Colab).
* :func:`results_dir` -- ``<root>/results/<scale>/<experiment>/...`` (git-ignored; reused runs).
* :func:`run_dir` -- the folder of one training run, named by a label and a hash of its configs,
  so that a changed preset never silently reuses a stale run.
* :func:`save_figure` -- ``figures/<scale>/<stem>[-<what>].png`` and ``.pdf``.
* :func:`write_table` -- ``figures/<scale>/<name>.csv`` and a markdown copy.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from reproduce.config.scales import ROOT_ENV, Scale
from reproduce.files.storage import atomic_write_bytes, atomic_write_text, config_hash

__all__ = ["project_root", "results_dir", "run_dir", "figures_dir", "save_figure", "write_table"]


def project_root() -> Path:
    """The repository root (see module docstring)."""
    env = os.environ.get(ROOT_ENV, "").strip()
    if env:
        root = Path(env).resolve()
        if root.exists() and not root.is_dir():
            raise NotADirectoryError(f"${ROOT_ENV}={env} is a file, not a folder; name the repository root that "
                                     "holds results/ (or where they should go), or unset it")
        return root
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "notebooks").is_dir() and (folder / "reproduce").is_dir():
            return folder
    checkout = Path(__file__).resolve().parents[2]  # reproduce/files/paths.py -> the folder above the package
    if (checkout / "notebooks").is_dir():
        return checkout
    return here


def _scale_name(scale: Scale | str) -> str:
    return scale.name if isinstance(scale, Scale) else str(scale)


def results_dir(scale: Scale | str, *parts: str) -> Path:
    """``<root>/results/<scale>/<parts...>`` (created)."""
    path = project_root() / "results" / _scale_name(scale)
    for p in parts:
        path = path / p
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_dir(scale: Scale | str, experiment: str, label: str, *configs: Any) -> Path:
    """Folder of one run: ``results/<scale>/<experiment>/<label>-<hash of configs>`` (not created:
    training creates it, so listing runs that do not exist yet leaves no empty folders)."""
    return project_root() / "results" / _scale_name(scale) / experiment / f"{label}-{config_hash(*configs)}"


def figures_dir(scale: Scale | str) -> Path:
    """``<root>/figures/<scale>`` (created)."""
    path = project_root() / "figures" / _scale_name(scale)
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_figure(fig: Any, scale: Scale | str, stem: str, what: str | None = None,
                formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Save a matplotlib figure as ``figures/<scale>/<stem>[-<what>].<fmt>`` (atomically)."""
    name = f"{stem}-{what}" if what else stem
    paths = []
    for fmt in formats:
        buf = io.BytesIO()
        # no creation date in PDFs, so an unchanged figure gives an unchanged file
        metadata = {"CreationDate": None} if fmt == "pdf" else None
        fig.savefig(buf, format=fmt, dpi=150, bbox_inches="tight", metadata=metadata)
        path = figures_dir(scale) / f"{name}.{fmt}"
        atomic_write_bytes(path, buf.getvalue())
        paths.append(path)
    return paths


def write_table(frame: pd.DataFrame, scale: Scale | str, name: str) -> Path:
    """Write a result table as ``figures/<scale>/<name>.csv`` and a markdown copy ``.md``."""
    path = figures_dir(scale) / f"{name}.csv"
    atomic_write_text(path, frame.to_csv(index=False))
    try:
        md = frame.to_markdown(index=False)
    except ImportError:  # tabulate is optional
        md = frame.to_string(index=False)
    atomic_write_text(figures_dir(scale) / f"{name}.md", md + "\n")
    return path
