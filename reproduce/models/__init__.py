"""Models: ``ModelConfig``, the FNN and the plain/residual ``ConvNet``, their taps and block removal.

The public names of the modules :mod:`reproduce.models.nets` are re-exported here."""

from reproduce.models import nets as _nets
from reproduce.models.nets import *  # noqa: F401,F403

__all__ = [*_nets.__all__]
