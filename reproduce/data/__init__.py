"""Data: datasets as ``DataBundle`` s, the paper's augmentation, the measurement sample set, data on the
device, text that ships offline as a language-modelling dataset (:mod:`reproduce.data.datasets`,
:mod:`reproduce.data.device_data`, :mod:`reproduce.data.text`, whose public names are re-exported
here), and downloading the paper's datasets (:mod:`reproduce.data.fetch`, not
re-exported: its function ``fetch`` would hide the module)."""

from reproduce.data import datasets as _datasets
from reproduce.data.datasets import *  # noqa: F401,F403
from reproduce.data import device_data as _device_data
from reproduce.data.device_data import *  # noqa: F401,F403
from reproduce.data import text as _text
from reproduce.data.text import *  # noqa: F401,F403

__all__ = [*_datasets.__all__, *_device_data.__all__, *_text.__all__]
