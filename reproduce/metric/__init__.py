"""The metric: bundles, bundle entropy, the accuracy bound, which layers conflict, the distance to
bundling (:mod:`reproduce.metric.bundles`); the published label-free layer scores, Block Influence
and the angular distance (:mod:`reproduce.metric.similarity`).

The public names of both modules are re-exported here."""

from reproduce.metric import bundles as _bundles
from reproduce.metric.bundles import *  # noqa: F401,F403
from reproduce.metric import similarity as _similarity
from reproduce.metric.similarity import *  # noqa: F401,F403

__all__ = [*_bundles.__all__, *_similarity.__all__]
