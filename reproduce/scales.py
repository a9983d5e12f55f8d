"""Scale presets: one place that says how big every experiment is.

Every notebook takes a single parameter ``scale`` (``smoke``, ``cpu`` or ``paper``) and resolves it
with :func:`resolve_scale`, which lets the environment variable ``REPRODUCE_SCALE`` override it
(that is how ``make test`` runs the notebooks at ``smoke`` under nbval).

* ``smoke`` -- seconds per notebook, for tests; tiny widths, 2 epochs, a few hundred samples.
* ``cpu``   -- the default; the whole main job on a 2-core laptop on scikit-learn's digits.
* ``paper`` -- the paper's datasets, widths, depths and 120 epochs; meant for a GPU.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

__all__ = ["Scale", "SCALES", "SCALE_NAMES", "get_scale", "resolve_scale", "SCALE_ENV", "ROOT_ENV"]

SCALE_ENV = "REPRODUCE_SCALE"
#: the repository root holding results/ and figures/ (see reporting.project_root)
ROOT_ENV = "REPRODUCE_ROOT"


@dataclass(frozen=True)
class Scale:
    """A preset of plain values; every experiment reads its sizes from here."""

    name: str
    #: dataset(s) the claim notebooks run on (first one is the default)
    datasets: tuple[str, ...]
    #: width multiplier of the conv nets (1.0 = the paper's 64..512 filters)
    width: float
    #: depths of the conv nets compared in the depth study (the depth table of docs/method.md#models)
    depths: tuple[int, ...]
    #: training epochs of the conv-net runs
    epochs: int
    #: training batch size (also the ``bs`` of the bundle metric)
    batch_size: int
    #: learning rate (also the ``lr`` of the bundle metric)
    lr: float
    #: size N of the measurement sample set
    sample_size: int
    #: independent repetitions (seeds) per configuration
    repeats: int
    #: test accuracy of a run = mean over this many last epochs
    last_epochs: int
    #: keep only this many training samples (None = all)
    train_limit: int | None
    #: fully connected width x depth grid (claim 6)
    fnn_widths: tuple[int, ...]
    fnn_depths: tuple[int, ...]
    fnn_epochs: int
    #: depth of the deep plain / residual nets of the early-detection study (claim 3)
    early_depth: int
    #: lesion study (claim 4): depth, epochs and random draws per k
    lesion_depth: int
    lesion_epochs: int
    lesion_draws: int
    #: auto-tune (claim 5): starting blocks, epochs checked for conflicts, epochs, searches
    autotune_blocks: tuple[int, int, int, int]
    autotune_check_epochs: int
    autotune_epochs: int
    autotune_seeds: int
    #: fixed-depth baselines of the auto-tune table
    autotune_baseline_depths: tuple[int, ...]

    @property
    def dataset(self) -> str:
        """The default dataset of this scale."""
        return self.datasets[0]

    def describe(self) -> str:
        """A readable listing of every value, printed at the top of every notebook."""
        lines = [f"scale = {self.name!r}"]
        for f in dataclasses.fields(self):
            if f.name != "name":
                lines.append(f"  {f.name:<26} {getattr(self, f.name)!r}")
        return "\n".join(lines)

    def replace(self, **changes) -> "Scale":
        """A copy with some values changed (e.g. a dataset override from a notebook parameter)."""
        valid = [f.name for f in dataclasses.fields(self) if f.name != "name"]
        unknown = sorted(set(changes) - set(valid))
        if unknown:
            raise ValueError(f"unknown preset field(s) {', '.join(map(repr, unknown))}; valid fields are {', '.join(valid)}")
        return dataclasses.replace(self, **changes)


_SMOKE = Scale(
    name="smoke",
    datasets=("digits",),
    width=1 / 16,
    depths=(4, 10),
    epochs=2,
    batch_size=64,
    lr=1e-3,
    sample_size=64,
    repeats=1,
    last_epochs=1,
    train_limit=256,
    fnn_widths=(4, 32),
    fnn_depths=(1, 3),
    fnn_epochs=2,
    early_depth=10,
    lesion_depth=10,
    lesion_epochs=2,
    lesion_draws=2,
    autotune_blocks=(1, 2, 2, 1),
    autotune_check_epochs=1,
    autotune_epochs=2,
    autotune_seeds=1,
    autotune_baseline_depths=(4, 10),
)

_CPU = Scale(
    name="cpu",
    datasets=("digits",),
    width=1 / 4,
    depths=(4, 10, 20, 30, 50, 76, 120),
    epochs=30,
    batch_size=64,
    lr=1e-3,
    sample_size=64,
    repeats=1,
    last_epochs=5,
    train_limit=None,
    fnn_widths=(2, 4, 8, 16, 32, 64, 128),
    fnn_depths=(1, 2, 4, 8, 16, 32, 48),
    fnn_epochs=30,
    early_depth=120,
    lesion_depth=50,
    lesion_epochs=40,
    lesion_draws=15,
    autotune_blocks=(3, 12, 41, 3),
    autotune_check_epochs=5,
    autotune_epochs=30,
    autotune_seeds=3,
    autotune_baseline_depths=(10, 20, 50, 120),
)

_PAPER = Scale(
    name="paper",
    datasets=("mnist", "cifar10", "svhn", "imagenette"),
    width=1.0,
    depths=(4, 10, 20, 30, 50, 76, 100, 120),
    epochs=120,
    batch_size=64,
    lr=1e-3,
    sample_size=64,
    repeats=3,
    last_epochs=5,
    train_limit=None,
    # 11 widths x 16 depths = 176 networks, as in the paper's MNIST map
    fnn_widths=(1, 2, 3, 4, 5, 6, 8, 10, 25, 50, 100),
    fnn_depths=(1, 2, 3, 4, 5, 6, 8, 10, 12, 15, 18, 20, 25, 30, 40, 50),
    fnn_epochs=120,
    early_depth=120,
    lesion_depth=120,
    lesion_epochs=120,
    lesion_draws=15,
    autotune_blocks=(3, 12, 41, 3),
    autotune_check_epochs=10,
    autotune_epochs=120,
    autotune_seeds=3,
    autotune_baseline_depths=(20, 50, 76, 120),
)

SCALES: dict[str, Scale] = {s.name: s for s in (_SMOKE, _CPU, _PAPER)}
SCALE_NAMES: tuple[str, ...] = tuple(SCALES)


def get_scale(name: str) -> Scale:
    """The preset called ``name``; ValueError naming the valid choices otherwise."""
    try:
        return SCALES[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown scale {name!r}; valid scales are {', '.join(SCALE_NAMES)}"
        ) from None


def resolve_scale(scale: str = "cpu") -> Scale:
    """The preset a notebook runs at: ``$REPRODUCE_SCALE`` if set, else ``scale``.

    When both are given and differ, a note says which one wins (papermill's ``-p scale`` loses to
    the environment variable).
    """
    override = os.environ.get(SCALE_ENV, "").strip()
    if override and override != scale:
        print(f"note: ${SCALE_ENV}={override!r} overrides the notebook parameter scale={scale!r}")
    return get_scale(override or scale)
