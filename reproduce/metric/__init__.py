"""The metric: bundles, bundle entropy, the accuracy bound, which layers conflict, the distance to bundling.

The public names of the modules :mod:`reproduce.metric.bundles` are re-exported here."""

from reproduce.metric import bundles as _bundles
from reproduce.metric.bundles import *  # noqa: F401,F403

__all__ = [*_bundles.__all__]
