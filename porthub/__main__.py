"""``python -m porthub``: the same command line as ``porthub``."""

import sys

from .cli import main

sys.exit(main())
