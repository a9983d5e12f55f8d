"""Files: atomic writes, folder locks, config hashes, checkpoints, progress bars, where results and figures go.

The public names of the modules :mod:`reproduce.files.storage`, :mod:`reproduce.files.checkpoints`, :mod:`reproduce.files.progress`, :mod:`reproduce.files.paths`, :mod:`reproduce.files.tables` are re-exported here."""

from reproduce.files import storage as _storage
from reproduce.files.storage import *  # noqa: F401,F403
from reproduce.files import checkpoints as _checkpoints
from reproduce.files.checkpoints import *  # noqa: F401,F403
from reproduce.files import progress as _progress
from reproduce.files.progress import *  # noqa: F401,F403
from reproduce.files import paths as _paths
from reproduce.files import tables as _tables
from reproduce.files.tables import *  # noqa: F401,F403
from reproduce.files.paths import *  # noqa: F401,F403

__all__ = [*_storage.__all__, *_checkpoints.__all__, *_progress.__all__, *_paths.__all__, *_tables.__all__]
