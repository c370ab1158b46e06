"""`python -m sam3_core.cli`: the `sam3` command."""

import sys

from sam3_core.cli import main

sys.exit(main())
