"""`python -m edgebus` runs the `edgebus` command."""

import sys

from .cli import main

sys.exit(main())
