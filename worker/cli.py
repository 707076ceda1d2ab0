"""The `feedback-worker` command line: run, healthcheck, check-config, enqueue, dlq.

`run` and `healthcheck` are the service; the operator commands live in `worker.ops`.

Each flag doubles as an environment variable (see worker.config); `--help` of every command
lists both with the default. A bad flag or variable stops the program with exit code 2 and a
message naming it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

import anyio

from worker import __version__, exitcodes, tracing
from worker.config import SETTINGS, add_arguments, load_settings, resolve
from worker.errors import ConfigError
from worker.logs import configure_logging

Command = Callable[[argparse.Namespace], int]

HEALTH_TIMEOUT_S = 3.0


def _run(args: argparse.Namespace) -> int:
    settings = load_settings(args, until_empty=args.until_empty)
    configure_logging(fmt=settings.log_format, level=settings.log_level)
    tracing.configure()
    from worker.supervisor import serve

    return anyio.run(serve, settings)


def _healthcheck(args: argparse.Namespace) -> int:
    import urllib.error
    import urllib.request

    values = resolve(args, os.environ, ["metrics_port", "metrics_bind"])
    port = values["metrics_port"]
    if port == 0:
        raise ConfigError("--metrics-port / FEEDBACK_METRICS_PORT", "is 0 (off): nothing to check")
    host = values["metrics_bind"]
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    path = "/healthz" if args.liveness else "/readyz"
    url = f"http://{host}:{port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=HEALTH_TIMEOUT_S) as response:
            body = response.read().decode()
            print(body)
            return exitcodes.OK if response.status == 200 else exitcodes.FAILURE
    except urllib.error.HTTPError as exc:
        print(exc.read().decode(errors="replace"))
        return exitcodes.FAILURE
    except OSError as exc:
        print(f"unhealthy: {url} did not answer: {exc}", file=sys.stderr)
        return exitcodes.FAILURE


def _check_config(args: argparse.Namespace) -> int:
    settings = load_settings(args)
    for setting in SETTINGS:
        value = getattr(settings, setting.field)
        shown = "(set)" if setting.secret and os.environ.get(setting.env) else value
        if setting.secret and not os.environ.get(setting.env) and not getattr(args, setting.field):
            shown = "(random per process)"
        print(f"{setting.flag:<22} {shown}")
    if not args.aws:
        print("configuration is valid (add --aws to check the queues and the identity too)")
        return exitcodes.OK
    from worker.ops.check_config import check_aws

    problems = anyio.run(check_aws, settings)
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    if problems:
        return exitcodes.FAILURE
    print("configuration is valid and both queues are reachable")
    return exitcodes.OK


def _enqueue(args: argparse.Namespace) -> int:
    from worker.ops.enqueue_command import enqueue_command

    queue_url = resolve(args, os.environ, ["queue_url"])["queue_url"]
    configure_logging(fmt="auto", level="warning")
    tracing.configure()
    code: int = anyio.run(enqueue_command, args, queue_url)
    return code


def _dlq(args: argparse.Namespace) -> int:
    from worker.ops.dlq_command import dlq_command

    values = resolve(args, os.environ, ["queue_url", "dlq_url"])
    configure_logging(fmt="auto", level="warning")
    code: int = anyio.run(dlq_command, args, values["queue_url"], values["dlq_url"])
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="feedback-worker",
        description="Drains verdicts from Amazon SQS into Cognito threat-protection feedback.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, func: Command, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(func=func)
        return sub

    run = command("run", _run, "Run the worker (a long-lived service, or --until-empty).")
    run.add_argument(
        "--until-empty",
        action="store_true",
        help="exit 0 once nothing is held here and the queue has no visible or in-flight messages",
    )
    add_arguments(run)

    check = command(
        "check-config", _check_config, "Validate the settings (with --aws: reach the queues)."
    )
    check.add_argument("--aws", action="store_true", help="also check the queues and identity")
    add_arguments(check)

    health = command("healthcheck", _healthcheck, "Exit 0 if the local worker is ready, else 1.")
    health.add_argument("--liveness", action="store_true", help="check /healthz, not /readyz")
    add_arguments(health, ["metrics_port", "metrics_bind"])

    enqueue = command("enqueue", _enqueue, "Send verdicts (from flags, or JSONL) to the queue.")
    add_arguments(enqueue, ["queue_url", "username_hash_key"])
    enqueue.add_argument("--pool", help="UserPoolId of a single verdict")
    enqueue.add_argument("--user", help="Username of a single verdict")
    enqueue.add_argument("--event", help="EventId of a single verdict")
    enqueue.add_argument("--value", help="FeedbackValue of a single verdict: Valid or Invalid")
    enqueue.add_argument(
        "--file", help="JSONL file of verdict bodies, one per line ('-' for stdin)"
    )

    _add_dlq_commands(command("dlq", _dlq, "Inspect or redrive the dead-letter queue."))
    return parser


def _add_dlq_commands(dlq: argparse.ArgumentParser) -> None:
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    inspect = dlq_commands.add_parser("inspect", help="counts by ErrorCode and sample bodies")
    inspect.add_argument("--samples", type=int, default=3, help="sample bodies per ErrorCode")
    inspect.add_argument("--max-messages", type=int, default=1000, help="most messages to read")
    inspect.add_argument("--json", action="store_true", help="print the report as JSON")
    add_arguments(inspect, ["queue_url", "dlq_url", "username_hash_key"])
    redrive = dlq_commands.add_parser("redrive", help="move dead-lettered messages back")
    redrive.add_argument(
        "--error-code", action="append", default=[], help="only these ErrorCodes (repeatable)"
    )
    redrive.add_argument(
        "--client-side",
        action="store_true",
        help="move with send-then-delete here instead of StartMessageMoveTask",
    )
    redrive.add_argument("--max-messages", type=int, default=0, help="most to move (0 = all)")
    redrive.add_argument("--rate", type=float, default=100.0, help="messages per second")
    add_arguments(redrive, ["queue_url", "dlq_url", "username_hash_key"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"feedback-worker: configuration error: {exc}", file=sys.stderr)
        return exitcodes.CONFIG_ERROR
    except KeyboardInterrupt:
        return exitcodes.FORCED
    return code


if __name__ == "__main__":
    sys.exit(main())
