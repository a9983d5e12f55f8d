"""Reproduction of *Auto-tuning of Deep Neural Networks by Conflicting Layer Removal*
(Peer, Stabinger, Rodríguez-Sánchez, 2021) in PyTorch.

Modules, one concern each: :mod:`reproduce.bundles` (the conflicting-bundle metric),
:mod:`reproduce.models`, :mod:`reproduce.data`, :mod:`reproduce.training`,
:mod:`reproduce.scales` (presets), :mod:`reproduce.reporting` (figures, claims tables),
the experiments :mod:`reproduce.theory`, :mod:`reproduce.fnn_map`, :mod:`reproduce.depth_study`,
:mod:`reproduce.lesion`, :mod:`reproduce.autotune`, :mod:`reproduce.efficiency`, and the
notebook runner :mod:`reproduce.runner` (``python -m reproduce``).
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
