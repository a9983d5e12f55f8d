"""Reproduction of *Auto-tuning of Deep Neural Networks by Conflicting Layer Removal*
(Peer, Stabinger, Rodríguez-Sánchez, 2021) in PyTorch.

Modules, one concern each: :mod:`reproduce.bundles` (the conflicting-bundle metric),
:mod:`reproduce.models`, :mod:`reproduce.data`, :mod:`reproduce.training`,
:mod:`reproduce.scales` (presets), :mod:`reproduce.reporting` (figures, claims tables),
the experiments :mod:`reproduce.theory`, :mod:`reproduce.fnn_map`, :mod:`reproduce.depth_study`,
:mod:`reproduce.lesion`, :mod:`reproduce.autotune`, :mod:`reproduce.efficiency`, and the
notebook runner :mod:`reproduce.runner` (``python -m reproduce``).

Importing the package first pins the numeric environment (:mod:`reproduce.numerics`): one
intra-op thread, torch's AVX2 kernels, oneDNN and MKL at AVX2, deterministic algorithms, so that
every x86-64 machine computes the same numbers. ``REPRODUCE_NUMERICS=native`` opts out. It runs
before anything imports torch, so import ``reproduce`` before computing with torch.
"""

from . import numerics as _numerics

_numerics.pin()

__version__ = "0.1.0"
__all__ = ["__version__"]
