"""`python -m wharf.worker module:worker` runs a `wharf.Worker` until SIGTERM/SIGINT."""

import sys

from . import main

sys.exit(main())
