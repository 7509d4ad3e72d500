"""``python -m render ...`` is ``psgvlm render ...``."""

import sys

from render.build import main

sys.exit(main())
