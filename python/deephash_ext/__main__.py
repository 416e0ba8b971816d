"""``python -m deephash_ext``: the deephash command line."""

import sys

from .cli import main

sys.exit(main())
