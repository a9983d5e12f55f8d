"""Models: ``ModelConfig``, the FNN and the plain/residual ``ConvNet``, their taps and block removal
(:mod:`reproduce.models.nets`), and torchvision's ResNets as configs that build them
(:mod:`reproduce.models.torchvision`). The public names of both are re-exported here."""

from reproduce.models import nets as _nets
from reproduce.models.nets import *  # noqa: F401,F403
from reproduce.models import torchvision as _torchvision
from reproduce.models.torchvision import *  # noqa: F401,F403

__all__ = [*_nets.__all__, *_torchvision.__all__]
