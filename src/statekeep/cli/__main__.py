"""`python -m statekeep.cli`: the `statekeep` command."""

import sys

from . import main

sys.exit(main())
