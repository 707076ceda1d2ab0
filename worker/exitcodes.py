"""Exit codes of the `feedback-worker` commands."""

from __future__ import annotations

OK = 0
# A command ran and found a problem (healthcheck unhealthy, check-config found errors,
# enqueue could not send everything).
FAILURE = 1
# A flag or environment variable is missing or invalid; nothing was started.
CONFIG_ERROR = 2
# A second SIGINT/SIGTERM during shutdown: exit at once (128 + SIGINT, as shells report it).
FORCED = 130
