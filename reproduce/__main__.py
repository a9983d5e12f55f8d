"""``python -m reproduce``: list or run the notebooks (see :mod:`reproduce.runner`)."""

import sys

from .runner import main

if __name__ == "__main__":
    sys.exit(main())
