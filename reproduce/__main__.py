"""``python -m reproduce``: list or run the notebooks (see :mod:`reproduce.runner`)."""

import sys

from reproduce.runner.notebooks import main

if __name__ == "__main__":
    sys.exit(main())
