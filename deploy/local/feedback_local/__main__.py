"""`python -m feedback_local` is `feedback-local`."""

import sys

from feedback_local.cli import main

sys.exit(main())
