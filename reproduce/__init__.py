"""Reproduction of *Auto-tuning of Deep Neural Networks by Conflicting Layer Removal*
(Peer, Stabinger, Rodríguez-Sánchez, 2021) in PyTorch.

The package is layered; each subpackage is one layer and imports only the layers below it
(ARCHITECTURE.md; ``lint-imports`` checks it): :mod:`reproduce.config` (presets, numerics),
:mod:`reproduce.files`, :mod:`reproduce.data`, :mod:`reproduce.models`, :mod:`reproduce.metric`
(the conflicting-bundle metric), :mod:`reproduce.training`, :mod:`reproduce.experiments` (one
module per study, the claims tables, the notebook helpers), :mod:`reproduce.sweep` and
:mod:`reproduce.runner` (``python -m reproduce``).

The short names that notebooks and users import stay valid: ``from reproduce import lesion``
(likewise ``bundles``, ``autotune``, ``reporting`` ... : :data:`MODULES`) imports the module
where that concept now lives, when it is first asked for.

Importing the package first pins the numeric environment (:mod:`reproduce.config.numerics`): one
intra-op thread, torch's AVX2 kernels, oneDNN and MKL at AVX2, deterministic algorithms, so that
every x86-64 machine computes the same numbers. ``REPRODUCE_NUMERICS=native`` opts out. It runs
before anything imports torch, so import ``reproduce`` before computing with torch.
"""

import importlib as _importlib

from reproduce.config import numerics as _numerics

_numerics.pin()

__version__ = "0.1.0"

#: the short name of each module (``from reproduce import <name>``) -> where it lives
MODULES = {
    "scales": "reproduce.config.scales", "numerics": "reproduce.config.numerics",
    "storage": "reproduce.files.storage", "checkpoints": "reproduce.files.checkpoints",
    "progress": "reproduce.files.progress", "paths": "reproduce.files.paths",
    "fetch": "reproduce.data.fetch", "device_data": "reproduce.data.device_data",
    "bundles": "reproduce.metric.bundles", "runs": "reproduce.training.runs",
    "theory": "reproduce.experiments.theory", "fnn_map": "reproduce.experiments.fnn_map",
    "depth_study": "reproduce.experiments.depth_study", "lesion": "reproduce.experiments.lesion",
    "autotune": "reproduce.experiments.autotune", "efficiency": "reproduce.experiments.efficiency",
    "prune": "reproduce.experiments.prune", "claims": "reproduce.experiments.claims",
    "reporting": "reproduce.experiments.notebook", "compare": "reproduce.runner.compare",
    "layer_removal": "reproduce.experiments.layer_removal", "beyond": "reproduce.experiments.beyond",
    "adapters": "reproduce.models.adapters",
    # these four are layer packages of the same name, which re-export their modules' public names
    "data": "reproduce.data", "models": "reproduce.models", "training": "reproduce.training",
    "sweep": "reproduce.sweep",
}

__all__ = ["__version__", "MODULES", *MODULES]


def __getattr__(name: str):
    if name in MODULES:
        module = _importlib.import_module(MODULES[name])
        globals()[name] = module
        return module
    raise AttributeError(f"module 'reproduce' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *MODULES})
