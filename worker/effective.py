"""What the worker runs with, as an operator sees it: each setting's value with the secret
hidden (the start-up log line, check-config --show), and no FEEDBACK_* variable that is no
setting, which a typo would otherwise leave silently ignored."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from worker.config import FROM_DEFAULT, SETTINGS, Setting, Settings
from worker.errors import ConfigError

ENV_PREFIX = "FEEDBACK_"
HIDDEN_SET = "(set)"
HIDDEN_RANDOM = "(random per process)"


def check_variable_names(environ: Mapping[str, str]) -> None:
    """Refuse a FEEDBACK_* variable that is no setting, naming the closest real one."""
    known = sorted(setting.env.removeprefix(ENV_PREFIX) for setting in SETTINGS)
    for name in sorted(environ):
        if name.startswith(ENV_PREFIX) and name.removeprefix(ENV_PREFIX) not in known:
            # Compared without the prefix they all share, which would make anything look close.
            close = difflib.get_close_matches(name.removeprefix(ENV_PREFIX), known, n=1)
            hint = f"; did you mean {ENV_PREFIX}{close[0]}?" if close else ""
            raise ConfigError(name, f"is not a setting of this program{hint}")


def shown_value(settings: Settings, setting: Setting) -> Any:
    """A setting's value fit for logs and terminals: secrets are never shown."""
    if setting.secret:
        given = settings.sources.get(setting.field, FROM_DEFAULT) != FROM_DEFAULT
        return HIDDEN_SET if given else HIDDEN_RANDOM
    return getattr(settings, setting.field)


def effective_settings(settings: Settings) -> dict[str, Any]:
    """Every setting's value as the worker uses it, secrets hidden."""
    return {setting.field: shown_value(settings, setting) for setting in SETTINGS}
