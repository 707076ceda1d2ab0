"""The emulator's command line: ``python -m feedback_local.emulator_cli [flags]``.

Every flag sets the start-up config (what ``POST /_emulator/reset`` returns to); the same
settings can be changed at run time through ``POST /_emulator/config``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from feedback_local.emulator import LOOPBACK, READY_PREFIX, Emulator
from feedback_local.emulator_config import ConfigValueError, EmulatorConfig
from feedback_local.emulator_quota import DEFAULT_STATS_WINDOW_S
from feedback_local.emulator_state import SeedError

EXIT_OK = 0
EXIT_CANNOT_LISTEN = 1
_PLAIN_SETTINGS = (
    "quota_per_region",
    "read_quota_per_region",
    "burst",
    "per_user_limit",
    "quota_throttles_untyped",
    "latency_s",
    "latency_jitter_s",
    "fault_internal_error",
    "fault_untyped_throttle",
    "fault_drop_connection",
    "session_credentials_lifetime_s",
    "bound_region",
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m feedback_local.emulator_cli",
        description="A Cognito threat-protection emulator on loopback (AWS JSON 1.1, SigV4).",
    )
    defaults = EmulatorConfig()
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--seed", type=Path, help="JSON file in the seed shape")
    parser.add_argument("--quota-per-region", type=float, default=defaults.quota_per_region)
    parser.add_argument(
        "--read-quota-per-region", type=float, default=defaults.read_quota_per_region
    )
    parser.add_argument("--burst", type=float, default=None, help="default: 1 s of quota")
    parser.add_argument("--per-user-limit", type=float, default=defaults.per_user_limit)
    parser.add_argument(
        "--quota-throttles-untyped",
        type=float,
        default=0.0,
        help="share of the quotas' throttles answered untyped (0-1)",
    )
    parser.add_argument("--latency-s", type=float, default=0.0)
    parser.add_argument("--latency-jitter-s", type=float, default=0.0)
    parser.add_argument("--fault-internal-error", type=float, default=0.0)
    parser.add_argument("--fault-untyped-throttle", type=float, default=0.0)
    parser.add_argument("--fault-drop-connection", type=float, default=0.0)
    parser.add_argument(
        "--inject-error",
        action="append",
        default=[],
        metavar="JSON",
        help='a rule such as {"code": "InternalErrorException", "region": "eu-west-1"}',
    )
    parser.add_argument(
        "--session-credentials-lifetime-s",
        type=float,
        default=defaults.session_credentials_lifetime_s,
    )
    parser.add_argument(
        "--bound-region", default=None, help="refuse requests signed for any other region"
    )
    parser.add_argument("--denied-access-key", action="append", default=[], metavar="KEY")
    parser.add_argument(
        "--known-key",
        action="append",
        default=[],
        metavar="KEY:SECRET",
        help="replaces the default testing:testing when given",
    )
    parser.add_argument("--stats-window-s", type=int, default=DEFAULT_STATS_WINDOW_S)
    parser.add_argument(
        "--exit-on-stdin-eof",
        action="store_true",
        help="stop when stdin closes (the parent process has gone)",
    )
    return parser


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    changes: dict[str, Any] = {name: getattr(args, name) for name in _PLAIN_SETTINGS}
    changes["denied_access_keys"] = args.denied_access_key
    try:
        changes["injected_errors"] = [json.loads(rule) for rule in args.inject_error]
    except ValueError:
        raise ConfigValueError("--inject-error takes a JSON object") from None
    if args.known_key:
        pairs = [k.partition(":") for k in args.known_key]
        if any(not sep or not key for key, sep, _ in pairs):
            raise ConfigValueError("--known-key takes KEY:SECRET")
        changes["known_keys"] = {key: secret for key, _, secret in pairs}
    return EmulatorConfig().updated(changes)


async def _serve(emulator: Emulator, *, exit_on_stdin_eof: bool) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if exit_on_stdin_eof:

        def watch_stdin() -> None:
            with contextlib.suppress(OSError, ValueError):
                sys.stdin.buffer.read()
            loop.call_soon_threadsafe(stop.set)

        threading.Thread(target=watch_stdin, name="stdin-watch", daemon=True).start()
    async with emulator:
        print(f"{READY_PREFIX}{emulator.url}", flush=True)
        await stop.wait()
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        emulator = Emulator(
            config_from_args(args), port=args.port, stats_window_s=args.stats_window_s
        )
        if args.seed is not None:
            emulator.store.seed(json.loads(args.seed.read_text()))
    except (ConfigValueError, SeedError, OSError, ValueError) as exc:
        parser.error(str(exc))
    try:
        return asyncio.run(_serve(emulator, exit_on_stdin_eof=args.exit_on_stdin_eof))
    except OSError as exc:  # e.g. the requested port is taken
        print(f"emulator: cannot listen on {LOOPBACK}:{args.port}: {exc}", file=sys.stderr)
        return EXIT_CANNOT_LISTEN


if __name__ == "__main__":
    sys.exit(main())
