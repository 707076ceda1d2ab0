"""`python -m worker` is `feedback-worker`."""

import sys

from worker.cli import main

sys.exit(main())
