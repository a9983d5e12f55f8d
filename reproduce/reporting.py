"""Where results and figures go, and the small helpers every claim notebook shares.

* :func:`project_root` -- the repository root (``$REPRODUCE_ROOT``, else the first folder at or
  above the working directory that holds both ``notebooks/`` and ``reproduce/``, else the working
  directory, e.g. in Colab).
* :func:`results_dir` -- ``<root>/results/<scale>/<experiment>/...`` (git-ignored; reused runs).
* :func:`run_dir` -- the folder of one training run, named by a label and a hash of its configs,
  so that a changed preset never silently reuses a stale run.
* :func:`save_figure` -- ``figures/<scale>/<stem>[-<what>].png`` and ``.pdf``.
* :func:`write_claims` -- ``figures/<scale>/<stem>-claims.csv`` with columns
  ``claim,paper,measured,verdict,seeds`` (a verdict is one of :data:`VERDICTS`; ``seeds`` is the
  number of independent seeds behind it).
* :func:`over_seeds` / :func:`seed_values` -- the verdict rule over seeds and the per-seed text of
  a ``measured`` cell (``docs/method.md#seeds``).
* :func:`setup_notebook` -- resolve the scale (``$REPRODUCE_SCALE`` wins), print the preset,
  set a quiet plotting style.
"""

from __future__ import annotations

import io
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from .scales import ROOT_ENV, Scale, resolve_scale
from .storage import atomic_write_bytes, atomic_write_text, config_hash

__all__ = [
    "VERDICTS",
    "Claim",
    "project_root",
    "results_dir",
    "run_dir",
    "figures_dir",
    "save_figure",
    "write_claims",
    "write_table",
    "setup_notebook",
    "discussion_note",
    "over_seeds",
    "seed_values",
    "seed_outcomes",
    "ROOT_ENV",
]



def project_root() -> Path:
    """The repository root (see module docstring)."""
    env = os.environ.get(ROOT_ENV, "").strip()
    if env:
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "notebooks").is_dir() and (folder / "reproduce").is_dir():
            return folder
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


#: the verdict of a claim: its rule held, did not hold, or could not be applied at this scale
VERDICTS = ("holds", "does not hold", "not testable")


@dataclass(frozen=True)
class Claim:
    """One row of a notebook's claims table, decided by a rule stated before the run.

    ``holds`` is True or False when the rule could be applied, None when it could not (e.g. no
    conflicting block to remove): the verdict is then "not testable".
    """

    claim: str
    paper: str
    measured: str
    holds: bool | None
    #: how many independent seeds (training runs of the same configuration) the verdict rests on
    seeds: int = 1

    def __post_init__(self) -> None:
        if self.holds is not None:
            object.__setattr__(self, "holds", bool(self.holds))
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 1:
            raise ValueError(f"seeds must be an int >= 1, got {self.seeds!r}")

    @property
    def verdict(self) -> str:
        """One of :data:`VERDICTS`."""
        return VERDICTS[2] if self.holds is None else VERDICTS[0] if self.holds else VERDICTS[1]


def write_claims(claims: Iterable[Claim], scale: Scale | str, stem: str) -> pd.DataFrame:
    """Write ``figures/<scale>/<stem>-claims.csv`` (columns claim,paper,measured,verdict,seeds); return it."""
    rows = [{"claim": c.claim, "paper": c.paper, "measured": c.measured, "verdict": c.verdict, "seeds": c.seeds}
            for c in claims]
    frame = pd.DataFrame(rows, columns=["claim", "paper", "measured", "verdict", "seeds"])
    if frame.empty:
        raise ValueError("a claims table needs at least one claim")
    atomic_write_text(figures_dir(scale) / f"{stem}-claims.csv", frame.to_csv(index=False))
    return frame


def over_seeds(per_seed: Sequence[bool | None], pooled: bool | None = None) -> bool | None:
    """The verdict rule over seeds (``docs/method.md#seeds``), fixed before any number is seen.

    A claim *holds* when its per-seed rule holds in every seed and, where the claim also has a
    pooled form (the rule applied to the seed mean, or to all seeds' points together), in that
    too. It *does not hold* when the rule fails in any seed or in the pooled form. Otherwise (some
    seed could not apply the rule and none failed) it is *not testable* (None).
    """
    values = [None if v is None else bool(v) for v in per_seed]
    if not values:
        raise ValueError("over_seeds needs the outcome of at least one seed")
    if any(v is False for v in values) or pooled is False:
        return False
    if all(v is True for v in values):  # and the pooled form (if any) held
        return True
    return None


def seed_outcomes(per_seed: Sequence[bool | None], seeds: Sequence[int] | None = None) -> str:
    """Text of the per-seed outcomes, e.g. ``"holds in 2 of 3 seeds (0 yes, 1 no, 2 yes)"``."""
    values = list(per_seed)
    seeds = list(range(len(values))) if seeds is None else list(seeds)
    if len(seeds) != len(values):
        raise ValueError(f"{len(values)} outcomes but {len(seeds)} seeds")
    word = {True: "yes", False: "no", None: "n/a"}
    held = sum(v is True for v in values)
    parts = ", ".join(f"{s} {word[None if v is None else bool(v)]}" for s, v in zip(seeds, values))
    return f"holds in {held} of {len(values)} seeds ({parts})"


def seed_values(values: Sequence[float], fmt: str = "{:.3f}", seeds: Sequence[int] | None = None) -> str:
    """Text of a per-seed number: ``"mean 0.833, range 0.812..0.845 (seeds 0: 0.812, 1: 0.845, 2: 0.842)"``;
    NaN values (e.g. a diverged seed) are shown and left out of the mean and range."""
    import math

    values = [float(v) for v in values]
    seeds = list(range(len(values))) if seeds is None else list(seeds)
    if not values or len(seeds) != len(values):
        raise ValueError(f"{len(values)} values but {len(seeds)} seeds (need at least one)")
    finite = [v for v in values if math.isfinite(v)]
    each = ", ".join(f"{s}: {fmt.format(v)}" for s, v in zip(seeds, values))
    if len(values) == 1:
        return fmt.format(values[0])
    if not finite:
        return f"no finite value (seeds {each})"
    mean = sum(finite) / len(finite)
    return f"mean {fmt.format(mean)}, range {fmt.format(min(finite))}..{fmt.format(max(finite))} (seeds {each})"


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


def discussion_note(scale: Scale) -> str:
    """The line printed above a notebook's Discussion, which quotes the committed ``cpu`` run."""
    if scale.name == "cpu":
        return ("The discussion below quotes the committed cpu run (figures/cpu/). The claims table above is "
                "this run's: where the two differ, the table is what this machine measured.")
    return (f"The discussion below describes the committed cpu run (figures/cpu/), not this {scale.name!r} "
            f"run: its numbers do not apply here. The claims table above is this run's.")


def setup_notebook(scale: str = "cpu", **overrides: Any) -> Scale:
    """Resolve the preset a notebook runs at, apply overrides (e.g. ``datasets=("mnist",)``), print it.

    ``$REPRODUCE_SCALE`` overrides ``scale`` (that is how nbval runs notebooks at ``smoke``).
    Overrides whose value is None are ignored, so notebook parameters can default to None.
    """
    import matplotlib

    if not _in_notebook():
        matplotlib.use("agg")
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid")
    preset = resolve_scale(scale)
    changes = {k: v for k, v in overrides.items() if v is not None}
    if changes:
        preset = preset.replace(**changes)
    print(preset.describe())
    from . import numerics

    print(numerics.describe())
    return preset


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython

        shell = get_ipython()
        return shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell"
    except ImportError:
        return False
