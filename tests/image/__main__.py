"""`python -m tests.image` (make image-test)."""

import sys

from tests.image.run import main

sys.exit(main())
