"""Configuration: the scale presets, derived seeds and the pinned numeric environment (the bottom layer; imports no other layer).

The public names of the modules :mod:`reproduce.config.scales`, :mod:`reproduce.config.numerics`, :mod:`reproduce.config.seeds` are re-exported here."""

from reproduce.config import scales as _scales
from reproduce.config.scales import *  # noqa: F401,F403
from reproduce.config import numerics as _numerics
from reproduce.config import environ as _environ
from reproduce.config.environ import *  # noqa: F401,F403
from reproduce.config import seeds as _seeds
from reproduce.config.seeds import *  # noqa: F401,F403
from reproduce.config.numerics import *  # noqa: F401,F403

__all__ = [*_scales.__all__, *_numerics.__all__, *_seeds.__all__, *_environ.__all__]
