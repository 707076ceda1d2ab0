"""``python -m tests.bench``: see tests.bench.run."""

import sys

from tests.bench.run import main

sys.exit(main())
