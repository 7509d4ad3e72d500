"""``python -m render ...`` is ``psgvlm render ...``."""

import sys

from .build import main

sys.exit(main())
