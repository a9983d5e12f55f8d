"""Scale presets: one place that says how big every experiment is.

Every notebook takes a single parameter ``scale`` (``smoke``, ``cpu``, ``long``, ``gpu`` or ``paper``) and resolves it
with :func:`resolve_scale`, which lets the environment variable ``REPRODUCE_SCALE`` override it
(that is how ``make test`` runs the notebooks at ``smoke`` under nbval).

* ``smoke`` -- seconds per notebook, for tests; tiny widths, 2 epochs, a few hundred samples.
* ``cpu``   -- the default; the whole main job on a 2-core laptop on scikit-learn's digits, with
  3 seeds behind every verdict; the FNNs (claims 1 and 6) train the released FNN scripts' length
  (:data:`RELEASED_FNN_STEPS`; on digits :data:`CPU_RELEASED_FNN_LENGTH`, 10 epochs of 43 passes),
  on a 4 x 3 grid (widths 4..32, depths 1, 4, 16) that fits the job's budget at that length.
* ``long``  -- the ``cpu`` models and data trained for the paper's number of optimiser steps
  (~94,000): 120 epochs of 36 passes over digits (36 x 22 = 792 steps, the paper's 781 steps of a
  CIFAR-10 epoch), for the lesion study and auto-tune (claims 4 and 5); one seed, within 2 h 30 min
  on 2 CPU cores for notebooks 05 and 06 together, resumable.
* ``gpu``   -- CIFAR-10 at full width for the claims that need trained deep nets (the depth study,
  claims 4 and 5); one GPU overnight.
* ``paper`` -- the paper's datasets, widths, depths and 120 epochs; meant for a GPU.
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
import os
from dataclasses import dataclass

__all__ = ["Scale", "SCALES", "SCALE_NAMES", "get_scale", "resolve_scale", "SCALE_ENV", "ROOT_ENV",
           "RELEASED_FNN_STEPS", "CPU_RELEASED_FNN_LENGTH"]

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
    #: also run the residual auto-tune search (this project's addition; notebook 06's ``residual=None``)
    autotune_residual: bool = True
    #: how the training steps run (reproduce.training.TrainConfig): datasets held on the device
    #: with batched augmentation, launch-overhead removal, arithmetic precision
    device_data: bool = False
    compile: str | None = None
    precision: str = "float32"
    #: passes over the training set per epoch (``TrainConfig.passes``; ``long`` makes an epoch of
    #: digits as many optimiser steps as a CIFAR-10 epoch)
    passes: int = 1
    #: passes per epoch of the FNN runs (claims 1 and 6): ``cpu`` makes an FNN epoch of digits
    #: about one of the released scripts' MNIST epochs (43 x 22 = 946 steps against 938)
    fnn_passes: int = 1
    #: measurement samples (``bundles.bundle_callback``): "fresh" (a new seeded training batch at
    #: every measurement, as released) or "fixed" (one set per run)
    measurement: str = "fresh"

    @property
    def dataset(self) -> str:
        """The default dataset of this scale."""
        return self.datasets[0]

    def train_options(self, *, fnn: bool = False) -> dict:
        """The ``TrainConfig`` fields every run of this scale gets from it (how steps run); ``fnn``:
        those of the FNN runs (``fnn_passes`` passes an epoch)."""
        return {"device_data": self.device_data, "compile": self.compile, "precision": self.precision,
                "passes": self.fnn_passes if fnn else self.passes}

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

# The released FNN scripts train 10 epochs of MNIST at batch 64: 60,000 / 64 = 937.5 batches,
# counted as 938 steps an epoch, so 10 x 938 = 9,380 optimiser steps in all.
_MNIST_TRAIN, _FNN_BATCH, _RELEASED_FNN_EPOCHS = 60_000, 64, 10
RELEASED_FNN_STEPS = _RELEASED_FNN_EPOCHS * -(-_MNIST_TRAIN // _FNN_BATCH)  # 10 x ceil(937.5) = 9,380
# The released length on digits, measured as often as released: 10 epochs (one record each, as the
# released scripts measure after each of their 10 epochs), each of 43 passes over digits' 1,437
# training images = 43 x 22 = 946 steps (1,437 // 64 = 22 full batches; the partial batch of 29 is
# dropped, TrainConfig.drop_last): 10 x 946 = 9,460 steps, the fewest whole passes that are not
# fewer than 9,380 (42 passes: 9,240). The cpu preset trains it, on the grid that fits its budget at
# that length (the timings and the choice of cells: docs/method.md#small-scales).
_DIGITS_TRAIN = 1_437
CPU_RELEASED_FNN_LENGTH = MappingProxyType({
    "fnn_epochs": _RELEASED_FNN_EPOCHS,  # 10
    "fnn_passes": -(-RELEASED_FNN_STEPS // (_RELEASED_FNN_EPOCHS * (_DIGITS_TRAIN // _FNN_BATCH))),  # 43
})

_CPU = Scale(
    name="cpu",
    datasets=("digits",),
    width=1 / 4,
    depths=(4, 10, 20, 30, 50, 76, 120),
    epochs=30,
    batch_size=64,
    lr=1e-3,
    sample_size=64,
    repeats=3,
    last_epochs=4,
    train_limit=None,
    # the released FNN length (9,460 steps) on the cells that fit the budget: conflicts live at
    # width 8 or less, so two narrow widths, and two wider ones to compare them with
    fnn_widths=(4, 8, 16, 32),
    fnn_depths=(1, 4, 16),
    **CPU_RELEASED_FNN_LENGTH,  # fnn_epochs=10, fnn_passes=43
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

# The paper's optimiser steps on the cpu models: digits has 1,437 training images, 22 full batches
# of 64 (the last partial batch is dropped), so 36 passes = 792 steps make one epoch of about the
# paper's CIFAR-10 epoch (781 steps), and 120 such epochs 95,040 steps (the paper: 93,720). Records,
# checkpoints, the last-4 test accuracy and auto-tune's first-10-epochs window then mean what they
# mean in the paper, measured in steps. One seed: the budget is one lesion net and one search.
_LONG = dataclasses.replace(
    _CPU,
    name="long",
    depths=(10, 50),
    epochs=120,
    repeats=1,
    fnn_widths=(8, 32),
    fnn_depths=(2, 8),
    fnn_epochs=120,
    lesion_epochs=120,
    autotune_check_epochs=10,
    autotune_epochs=120,
    autotune_seeds=1,
    # residual-10 was the best fixed net at cpu; a depth-20 pair would cost ~2 h more at 1 thread
    autotune_baseline_depths=(10,),
    # without conflicts a residual search trains residual-120 for all 95,040 steps (~5 h on a CPU)
    autotune_residual=False,
    passes=36,
    fnn_passes=36,  # long's FNNs as before: 120 epochs of 36 passes
)

# One GPU overnight: <= 10 GPU-hours by `python -m reproduce plan --scale gpu` (the arithmetic
# of the budget, from the H200's measured steps: docs/method.md#gpu-budget).
_GPU = Scale(
    name="gpu",
    datasets=("cifar10",),
    width=1.0,
    depths=(4, 10, 20, 30, 50, 76, 120),
    epochs=30,
    batch_size=64,
    lr=1e-3,
    sample_size=64,
    repeats=2,
    last_epochs=4,
    train_limit=None,
    fnn_widths=(4, 16, 64, 256),
    fnn_depths=(1, 4, 16, 32),
    fnn_epochs=30,
    early_depth=120,
    lesion_depth=120,
    lesion_epochs=60,
    lesion_draws=15,
    autotune_blocks=(3, 12, 41, 3),
    autotune_check_epochs=5,
    autotune_epochs=30,
    autotune_seeds=2,
    autotune_baseline_depths=(20, 50, 76, 120),
    # batched augmentation on the GPU (tested on the CPU: same distribution; bit-identical weights on
    # digits); the CUDA-graph step (compile="cuda-graph") stays opt-in until it has run on a GPU
    device_data=True,
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
    last_epochs=4,
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

SCALES: dict[str, Scale] = {s.name: s for s in (_SMOKE, _CPU, _LONG, _PAPER, _GPU)}
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
    if not override:
        return get_scale(scale)
    try:
        return get_scale(override)
    except ValueError as error:
        raise ValueError(str(error).replace(f"{override!r};", f"{override!r} (from ${SCALE_ENV});", 1)) from None
