"""Training: the optimiser, the epoch loop and its run folder; runs declared as data (``RunSpec``).

The public names of the modules :mod:`reproduce.training.loop`, :mod:`reproduce.training.radam`, :mod:`reproduce.training.runs` are re-exported here."""

from reproduce.training import loop as _loop
from reproduce.training.loop import *  # noqa: F401,F403
from reproduce.training import radam as _radam
from reproduce.training.radam import *  # noqa: F401,F403
from reproduce.training import runs as _runs
from reproduce.training.runs import *  # noqa: F401,F403

__all__ = [*_loop.__all__, *_radam.__all__, *_runs.__all__]
