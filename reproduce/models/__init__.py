"""Models: ``ModelConfig``, the FNN and the plain/residual ``ConvNet``, their taps and block removal
(:mod:`reproduce.models.nets`), torchvision's ResNets as configs that build them
(:mod:`reproduce.models.torchvision`), and the residual blocks of torchvision, timm and Hugging Face
models -- where they are, their tap, their removal (:mod:`reproduce.models.adapters`). The public
names of all three are re-exported here."""

from reproduce.models import nets as _nets
from reproduce.models.nets import *  # noqa: F401,F403
from reproduce.models import torchvision as _torchvision
from reproduce.models.torchvision import *  # noqa: F401,F403
from reproduce.models import adapters as _adapters
from reproduce.models.adapters import *  # noqa: F401,F403

__all__ = [*_nets.__all__, *_torchvision.__all__, *_adapters.__all__]
