"""``python -m avvp ...``: the ``avvp`` command line, where the console script is not on PATH."""

import sys

from avvp.cli import main

if __name__ == "__main__":
    sys.exit(main())
