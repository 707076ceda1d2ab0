"""The worker's settings: one typed, frozen object built once from CLI flags and env vars.

Every setting is both a flag and an environment variable; a flag wins over the variable, the
variable over the default. Nothing else in the project reads ``os.environ`` for its own settings
(AWS settings come from botocore's standard chain). A bad value raises ConfigError naming the
setting, which the CLI turns into exit code 2.
"""

from __future__ import annotations

import argparse
import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from worker.endpoints import endpoint_for, parse_endpoints, refuse_one_endpoint_for_every_region
from worker.errors import ConfigError
from worker.setting_values import (
    bind_address,
    choice,
    hash_key,
    port,
    positive_int,
    queue_url,
    rate,
    seconds,
)

LogFormat = Literal["json", "console", "auto"]
LOG_LEVELS = ("debug", "info", "warning", "error")
# Where a setting's value came from (check-config --show, the start-up log line).
FROM_FLAG = "flag"
FROM_ENVIRONMENT = "environment"
FROM_DEFAULT = "default"
# --until-empty gives up when the worker cannot work (unready) for this long.
DEFAULT_GIVE_UP_AFTER_S = 60.0

# SQS limits (FACTS.md): visibility 0 s to 12 h, long poll at most 20 s.
MAX_VISIBILITY_TIMEOUT_S = 12 * 60 * 60
MAX_WAIT_TIME_S = 20
# A poll is never cut off (worker.receiver): its wait is how long an idle worker takes to stop.
# 1 s costs about one empty receive a second while idle (some $1 a month); 20 s, a twentieth.
DEFAULT_WAIT_TIME_S = 1.0
# Cognito's user-write quota is 25/s per account per region, shared with the application's own
# user writes. The rate control (worker.rate_control) finds the share that is left; the
# ceiling is only a hard cap on it, so it defaults to the whole quota.
DEFAULT_RATE_LIMIT = 25.0
# Cognito allows about 10 writes per second to a single user.
DEFAULT_USER_RATE_LIMIT = 10.0


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything `feedback-worker run` needs, validated."""

    queue_url: str
    dlq_url: str
    concurrency: int = 16
    rate_limit: float = DEFAULT_RATE_LIMIT
    user_rate_limit: float = DEFAULT_USER_RATE_LIMIT
    visibility_timeout_s: float = 60.0
    shutdown_timeout_s: float = 20.0
    max_attempts: int = 8
    wait_time_s: float = DEFAULT_WAIT_TIME_S
    metrics_port: int = 9464
    metrics_bind: str = "127.0.0.1"
    log_format: LogFormat = "auto"
    log_level: str = "info"
    username_hash_key: bytes = b""
    cognito_endpoints: tuple[tuple[str, str], ...] = ()
    until_empty: bool = False
    give_up_after_s: float = DEFAULT_GIVE_UP_AFTER_S
    # field -> FROM_FLAG, FROM_ENVIRONMENT or FROM_DEFAULT, for the settings load_settings read.
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def max_held(self) -> int:
        """How many messages may be held at once: received and not yet settled with SQS.

        Four times the call slots plus one receive batch: messages waiting for their region's
        slot, in a call, and waiting for their batched delete all count, so a slow delete
        cannot grow memory; pools in several regions each need work ready. The bulkheads
        (worker.bulkheads) share it out by scope.
        """
        return self.concurrency * 4 + 10

    def cognito_endpoint(self, region: str) -> str | None:
        """The endpoint configured for `region`'s Cognito calls (None: AWS's own)."""
        return endpoint_for(self.cognito_endpoints, region)

    @property
    def is_fifo(self) -> bool:
        return self.queue_url.endswith(".fifo")


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting: its Settings field, flag, environment variable, parser and help text."""

    field: str
    flag: str
    env: str
    parse: Callable[[str], Any]
    help: str
    default: Any = None
    required: bool = False
    secret: bool = False

    @property
    def label(self) -> str:
        return f"{self.flag} / {self.env}"


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "queue_url",
        "--queue-url",
        "FEEDBACK_QUEUE_URL",
        queue_url,
        "URL of the SQS queue that holds the verdicts",
        required=True,
    ),
    Setting(
        "dlq_url",
        "--dlq-url",
        "FEEDBACK_DLQ_URL",
        queue_url,
        "URL of the dead-letter queue for verdicts that can never succeed",
        required=True,
    ),
    Setting(
        "concurrency",
        "--concurrency",
        "FEEDBACK_CONCURRENCY",
        positive_int,
        "most Cognito calls in flight at once",
        default=16,
    ),
    Setting(
        "rate_limit",
        "--rate-limit",
        "FEEDBACK_RATE_LIMIT",
        rate,
        "hard ceiling on Cognito calls per second per region from this process; the rate "
        "control finds the share below it",
        default=DEFAULT_RATE_LIMIT,
    ),
    Setting(
        "user_rate_limit",
        "--user-rate-limit",
        "FEEDBACK_USER_RATE_LIMIT",
        rate,
        "most Cognito calls per second to one user",
        default=DEFAULT_USER_RATE_LIMIT,
    ),
    Setting(
        "visibility_timeout_s",
        "--visibility-timeout",
        "FEEDBACK_VISIBILITY_TIMEOUT",
        seconds(5, MAX_VISIBILITY_TIMEOUT_S),
        "seconds a received message stays hidden; held messages are extended before it ends",
        default=60.0,
    ),
    Setting(
        "shutdown_timeout_s",
        "--shutdown-timeout",
        "FEEDBACK_SHUTDOWN_TIMEOUT",
        seconds(0, 3600),
        "seconds in-flight calls may take to finish after SIGTERM",
        default=20.0,
    ),
    Setting(
        "max_attempts",
        "--max-attempts",
        "FEEDBACK_MAX_ATTEMPTS",
        positive_int,
        "transient failures (5xx, timeouts) before a message is dead-lettered",
        default=8,
    ),
    Setting(
        "wait_time_s",
        "--wait-time",
        "FEEDBACK_WAIT_TIME",
        seconds(0, MAX_WAIT_TIME_S),
        "long-poll wait of each receive, in seconds; also the longest an idle worker takes to "
        "stop (longer waits make fewer empty receives)",
        default=DEFAULT_WAIT_TIME_S,
    ),
    Setting(
        "metrics_port",
        "--metrics-port",
        "FEEDBACK_METRICS_PORT",
        port,
        "port of /metrics, /healthz and /readyz (0 = off)",
        default=9464,
    ),
    Setting(
        "metrics_bind",
        "--metrics-bind",
        "FEEDBACK_METRICS_BIND",
        bind_address,
        "address the metrics and health server binds to",
        default="127.0.0.1",
    ),
    Setting(
        "log_format",
        "--log-format",
        "FEEDBACK_LOG_FORMAT",
        choice("json", "console", "auto"),
        "json, console, or auto (console on a terminal, json elsewhere)",
        default="auto",
    ),
    Setting(
        "log_level",
        "--log-level",
        "FEEDBACK_LOG_LEVEL",
        choice(*LOG_LEVELS),
        "lowest level logged",
        default="info",
    ),
    Setting(
        "username_hash_key",
        "--username-hash-key",
        "FEEDBACK_USERNAME_HASH_KEY",
        hash_key,
        "key of the hash that stands for usernames in logs (random per process when unset; "
        "set it to correlate across replicas)",
        secret=True,
    ),
    Setting(
        "cognito_endpoints",
        "--cognito-endpoints",
        "FEEDBACK_COGNITO_ENDPOINTS",
        parse_endpoints,
        "Cognito endpoint per region, e.g. eu-west-1=https://vpce-....cognito-idp.eu-west-1"
        ".vpce.amazonaws.com; '*=URL' for an endpoint that serves every region (unset: AWS's "
        "own regional endpoints)",
    ),
)
SETTINGS_BY_FIELD = {s.field: s for s in SETTINGS}


def add_arguments(parser: argparse.ArgumentParser, fields: Sequence[str] | None = None) -> None:
    """Add the flags of `fields` (all settings when None), documenting each env var and default."""
    for setting in SETTINGS if fields is None else [SETTINGS_BY_FIELD[f] for f in fields]:
        default = (
            "required"
            if setting.required
            else ("unset" if setting.default is None else f"{setting.default}")
        )
        parser.add_argument(
            setting.flag,
            dest=setting.field,
            default=None,
            metavar=setting.env.removeprefix("FEEDBACK_"),
            help=f"{setting.help} [env {setting.env}; default: {default}]",
        )


def _readable(text: str, source: str) -> str:
    """The text, unless the environment held bytes that are not UTF-8 (never quoted)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        raise ConfigError(source, "is not readable: it holds bytes that are not UTF-8") from None
    return text


def resolve(
    args: argparse.Namespace | Mapping[str, Any],
    environ: Mapping[str, str],
    fields: Sequence[str],
    sources: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Resolve `fields` from flags, then the environment, then defaults; validate each.

    `sources`, when given, receives where each value came from (FROM_FLAG, ...).
    """
    given = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    values: dict[str, Any] = {}
    found = {} if sources is None else sources
    for name in fields:
        setting = SETTINGS_BY_FIELD[name]
        raw = given.get(name)
        source = setting.flag
        found[name] = FROM_FLAG
        if isinstance(raw, str) and raw.strip() == "":
            raise ConfigError(setting.flag, "is given but empty")
        if raw is None:
            raw = environ.get(setting.env)
            source = setting.env
            found[name] = FROM_ENVIRONMENT
        if raw is None or (isinstance(raw, str) and raw.strip() == ""):
            if setting.required:
                raise ConfigError(setting.label, "is required but not set")
            found[name] = FROM_DEFAULT
            if setting.default is not None:
                values[name] = setting.default
            continue
        text = _readable(str(raw), source)
        try:
            values[name] = setting.parse(text.strip())
        except ValueError as exc:
            shown = "(hidden)" if setting.secret else repr(raw)
            reason = (
                str(exc)
                if not str(exc).startswith(("invalid literal", "could not convert"))
                else ("must be a number")
            )
            raise ConfigError(source, f"{shown} {reason}") from None
    return values


def load_settings(
    args: argparse.Namespace | Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    *,
    until_empty: bool = False,
    give_up_after_s: float = DEFAULT_GIVE_UP_AFTER_S,
) -> Settings:
    """Build the worker's Settings; raises ConfigError naming the first bad setting."""
    env = os.environ if environ is None else environ
    sources: dict[str, str] = {}
    values = resolve(args, env, [s.field for s in SETTINGS], sources)
    values.setdefault("username_hash_key", secrets.token_bytes(32))
    settings = Settings(
        **values,
        until_empty=until_empty,
        give_up_after_s=give_up_after_s,
        sources=sources,
    )
    if settings.shutdown_timeout_s >= settings.visibility_timeout_s:
        raise ConfigError(
            "--shutdown-timeout / FEEDBACK_SHUTDOWN_TIMEOUT",
            f"({settings.shutdown_timeout_s:g} s) must be shorter than the visibility timeout "
            f"({settings.visibility_timeout_s:g} s), or draining messages could be redelivered",
        )
    if settings.queue_url == settings.dlq_url:
        raise ConfigError("--dlq-url / FEEDBACK_DLQ_URL", "must differ from the source queue URL")
    refuse_one_endpoint_for_every_region(env, has_own=bool(settings.cognito_endpoints))
    if settings.is_fifo != settings.dlq_url.endswith(".fifo"):
        raise ConfigError(
            "--dlq-url / FEEDBACK_DLQ_URL",
            "a FIFO source queue needs a FIFO dead-letter queue, and a standard one a standard DLQ",
        )
    return settings
