"""The claim notebooks and the study each belongs to: how a sweep learns the runs a notebook needs.

Each study module that trains runs for a notebook declares them itself: a function
``notebook_jobs(stem, scale, seed)`` returning the run specs (or auto-tune searches) the notebook
``stem`` trains with its default parameters, and ``NOTEBOOK_DEFAULTS`` (the defaults of that
notebook's ``parameters`` cell that decide its runs; a test checks them against the notebook).
A new study adds its module's name here, not code to the sweep. The module is imported only when
its jobs are asked for (auto-tune brings in ``torch._dynamo``).
"""

from __future__ import annotations

import importlib
from types import MappingProxyType
from typing import Any, Mapping, Sequence

from reproduce.config.scales import Scale

__all__ = ["NOTEBOOKS", "STUDIES", "INLINE_ONLY", "notebook_defaults", "jobs_of", "match_stem"]

#: notebook stem -> the study module (in :mod:`reproduce.experiments`) that declares its jobs;
#: None for a notebook that trains inline only (:data:`INLINE_ONLY` says why)
STUDIES: Mapping[str, str | None] = MappingProxyType({
    "00_quickstart": None,
    "01_bundles_theory": "theory",
    "02_fnn_width_depth": "fnn_map",
    "03_depth_vgg_vs_resnet": "depth_study",
    "04_early_detection": "depth_study",
    "05_lesion": "lesion",
    "06_auto_tune": "autotune",
    "07_any_resnet": None,
    "08_beyond_resnets": None,
})
#: the claim notebooks, by stem (``notebooks/<stem>.ipynb``), in order
NOTEBOOKS = tuple(STUDIES)
#: why a notebook has no sweep jobs
INLINE_ONLY: Mapping[str, str] = MappingProxyType({
    "00_quickstart": "trains one tiny run inline (no sweep jobs)",
    "07_any_resnet": "trains its torchvision ResNets inline (no sweep jobs)",
    "08_beyond_resnets": "trains its timm ViT and Hugging Face GPT-2 inline (no sweep jobs)",
})


def _study(stem: str) -> Any:
    if stem not in STUDIES:
        raise ValueError(f"unknown notebook {stem!r}; valid notebooks: {', '.join(NOTEBOOKS)}")
    name = STUDIES[stem]
    return None if name is None else importlib.import_module(f"reproduce.experiments.{name}")


def notebook_defaults(stem: str) -> Mapping[str, Any]:
    """The defaults of notebook ``stem``'s ``parameters`` cell that decide its runs (besides
    ``scale`` and ``seed``); empty for an inline-only notebook."""
    study = _study(stem)
    return {} if study is None else study.NOTEBOOK_DEFAULTS[stem]


def jobs_of(stem: str, scale: Scale, seed: int) -> list:
    """The runs (and searches) notebook ``stem`` trains at ``scale`` with its default parameters
    and ``seed``, in its order, as its study declares them; [] for an inline-only notebook."""
    study = _study(stem)
    return [] if study is None else list(study.notebook_jobs(stem, scale, int(seed)))


def match_stem(name: str, stems: Sequence[str]) -> str:
    """The one of ``stems`` that ``name`` names: the stem itself, else the single stem that starts
    with it (``"03"``). ValueError naming ``name`` and the valid stems otherwise (unknown, or
    ambiguous with the stems it matches)."""
    if name in stems:
        return name
    matches = [stem for stem in stems if stem.startswith(name)]
    if len(matches) == 1:
        return matches[0]
    valid = ", ".join(stems) or "(none)"
    if not matches:
        raise ValueError(f"unknown notebook {name!r}; valid notebooks: {valid}")
    raise ValueError(f"ambiguous notebook name {name!r} (matches {', '.join(matches)}); valid notebooks: {valid}")
