"""What every claim notebook calls: the preset printed, figures and tables written, claims saved.

A notebook needs only this module (``from reproduce import reporting`` names it too):
:func:`setup_notebook` resolves the scale (``$REPRODUCE_SCALE`` wins), prints the preset and
numerics and sets a quiet plotting style; :func:`discussion_note` is the line above a
Discussion. The file helpers (:func:`save_figure`, :func:`write_table`, :func:`run_dir`) and the
claims helpers (:func:`write_claims`, :func:`over_seeds`, ...) are re-exported from their homes,
:mod:`reproduce.files.paths` and :mod:`reproduce.experiments.claims`.
"""

from __future__ import annotations

from typing import Any

from reproduce.config.scales import ROOT_ENV, Scale, resolve_scale
from reproduce.experiments.claims import VERDICTS, Claim, over_seeds, seed_outcomes, seed_values, write_claims
from reproduce.files.paths import figures_dir, project_root, results_dir, run_dir, save_figure, write_table

__all__ = ["setup_notebook", "discussion_note", "VERDICTS", "Claim", "write_claims", "over_seeds",
           "seed_outcomes", "seed_values", "project_root", "results_dir", "run_dir", "figures_dir",
           "save_figure", "write_table", "ROOT_ENV"]


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
    from reproduce.config import numerics

    print(numerics.describe())
    return preset


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython

        shell = get_ipython()
        return shell is not None and shell.__class__.__name__ == "ZMQInteractiveShell"
    except ImportError:
        return False
