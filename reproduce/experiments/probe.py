"""A one-command probe of claim 4 for a lent GPU: ``python -m reproduce probe``.

Claim 4 needs a trained deep residual net whose branches may bundle, which the CPU scales cannot
reach. The probe trains one residual-50 for about the paper's number of optimiser steps (93,720 =
120 CIFAR-10 epochs of 781 steps; on Fashion-MNIST's 60,000 images, 937 steps an epoch, that is
100 epochs = 93,700 steps), measures every branch at the released N = 64 after every epoch, and
at the end runs the lesion protocol of :mod:`reproduce.experiments.lesion` on it. It writes
``figures/gpu-probe/`` (the claims table, the per-epoch conflicts and the lesion curves) and
prints the claims rows.

Fashion-MNIST: harder than digits (a small residual net reaches about 90 %), and its four files
are about 30 MB, so they can travel with a checkout to a machine without internet (``make
probe-data`` copies Debian's ``dataset-fashion-mnist`` into ``data/``; Debian rewrote the gzip
headers, so the files do not have the published MD5s and the probe loads them unverified, with the
content fingerprint of :mod:`reproduce.data.checksums` in their identity).

The width is the knob that fits the run into the device's time: :data:`DEFAULT_WIDTH` is a guess
for an H200 with the CUDA-graph step in float32, not a measurement (no GPU has run it yet); the
probe prints its steps per second after the first epoch, and ``--steps`` / ``--width`` change it.
On the CPU it runs at a few hundred steps in the tests, on miniature files.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from reproduce.config.scales import Scale, get_scale
from reproduce.data.datasets import dataset_train_size, load_dataset
from reproduce.experiments.claims import Claim, write_claims
from reproduce.experiments.lesion import LesionConfig, LesionResult, lesion_claims, run_lesion_study
from reproduce.files.paths import figures_dir

__all__ = ["ProbeConfig", "PAPER_STEPS", "DEFAULT_WIDTH", "probe_scale", "run_probe", "probe_figure", "PROBE_SCALE"]

#: the paper's optimiser steps: 120 epochs of CIFAR-10 at batch 64 (781 steps an epoch)
PAPER_STEPS = 120 * 781
#: width multiplier of the probe's residual-50 (a guess for an H200 in 8 minutes; module docstring)
DEFAULT_WIDTH = 0.5
#: the name of the probe's results and figures folder (``results/gpu-probe``, ``figures/gpu-probe``)
PROBE_SCALE = "gpu-probe"


@dataclass(frozen=True)
class ProbeConfig:
    """One probe: ``steps`` optimiser steps of a residual-``depth`` at ``width`` on ``dataset``,
    then the lesion protocol with ``draws`` draws per k."""

    steps: int = PAPER_STEPS
    width: float = DEFAULT_WIDTH
    depth: int = 50
    dataset: str = "fashion-mnist"
    draws: int = 5
    batch_size: int = 64
    seed: int = 0
    #: keep only this many training images (None: all); the tests' miniature runs
    train_limit: int | None = None
    #: verify the files' published checksums (False for Debian's re-headered files)
    verify: bool = True

    def __post_init__(self) -> None:
        for name in ("steps", "draws", "batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if not self.width > 0:
            raise ValueError(f"width must be > 0, got {self.width!r}")

    def train_size(self) -> int:
        full = dataset_train_size(self.dataset)
        return full if self.train_limit is None else min(full, self.train_limit)

    def epochs(self) -> int:
        """Epochs of full batches (the last partial batch is dropped) that reach ``steps``."""
        per_epoch = self.train_size() // self.batch_size
        if per_epoch < 1:
            raise ValueError(f"{self.train_size()} training images make no batch of {self.batch_size}")
        return math.ceil(self.steps / per_epoch)


def probe_scale(cfg: ProbeConfig, device: str) -> Scale:
    """The preset the probe runs under: the ``gpu`` preset's settings with the probe's dataset,
    width, depth and length; the CUDA-graph step on CUDA, the plain step elsewhere."""
    on_cuda = str(device).startswith("cuda")
    return dataclasses.replace(
        get_scale("gpu"), name=PROBE_SCALE, datasets=(cfg.dataset,), width=cfg.width, repeats=1,
        lesion_depth=cfg.depth, lesion_epochs=cfg.epochs(), lesion_draws=cfg.draws, batch_size=cfg.batch_size,
        train_limit=cfg.train_limit, device_data=on_cuda, compile="cuda-graph" if on_cuda else None)


def run_probe(cfg: ProbeConfig, *, device: str = "auto", data_root: Any = None,
              progress: bool = True) -> tuple[LesionResult, list[Claim]]:
    """Train (or resume) the probe's net, run the lesion protocol, write ``figures/gpu-probe/``."""
    from reproduce.training.loop import resolve_device

    dev = str(resolve_device(device))
    scale = probe_scale(cfg, dev)
    data = load_dataset(cfg.dataset, root=data_root, seed=cfg.seed, train_limit=cfg.train_limit,
                        verify_checksums=cfg.verify)
    lcfg = LesionConfig.from_scale(scale, seed=cfg.seed, dataset=cfg.dataset,
                                   data_content=data.identity.get("content"))
    result = run_lesion_study(scale, seed=cfg.seed, data=data, config=lcfg, progress=progress, device=dev)
    claims = lesion_claims(result)
    write_claims(claims, scale, "probe")
    out = figures_dir(scale)
    result.history.to_csv(out / "probe-history.csv", index=False)
    result.summary.to_csv(out / "probe-lesion.csv", index=False)
    probe_figure(result, scale)
    return result, claims


def probe_figure(result: LesionResult, scale: Scale) -> None:
    """Two panels: conflicting branches per epoch (N = 64), and test accuracy against the number of
    removed blocks per set, with the full net's accuracy."""
    import matplotlib.pyplot as plt

    from reproduce.files.paths import save_figure

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    h = result.history
    left.plot(h["epoch"], h["conflicting_blocks"], marker=".")
    left.set(xlabel="epoch", ylabel="conflicting branches (N = 64)",
             title=f"{result.run.model_config.label}, width {result.config.width:g}")
    summary: pd.DataFrame = result.summary
    for name, part in summary.groupby("set", sort=False):
        right.errorbar(part["k"], part["mean"], yerr=part["std"], marker="o", capsize=2, label=name)
    right.axhline(result.full_accuracy, color="grey", linestyle="--", label="full net")
    right.set(xlabel="blocks removed (k)", ylabel="test accuracy", title=f"lesion on {result.config.dataset}")
    right.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, scale, "probe", formats=("png",))
    plt.close(fig)
