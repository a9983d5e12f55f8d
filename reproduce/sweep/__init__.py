"""Sweeps: the runs the notebooks need, as jobs on this machine or a SLURM cluster."""

from reproduce.sweep import core as _core
from reproduce.sweep.core import *  # noqa: F401,F403

__all__ = [*_core.__all__]
