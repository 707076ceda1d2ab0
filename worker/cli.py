"""The `feedback-worker` command line: run, healthcheck, check-config, status, enqueue, dlq.

`run` and `healthcheck` are the service; the operator commands live in `worker.ops`.

Each flag doubles as an environment variable (see worker.config); `--help` of every command
lists both with the default. A bad flag or variable stops the program with exit code 2 and a
message naming it.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable, Sequence

import anyio

from worker import __version__, exitcodes, tracing
from worker.config import (
    DEFAULT_GIVE_UP_AFTER_S,
    FROM_DEFAULT,
    SETTINGS,
    add_arguments,
    load_settings,
    resolve,
)
from worker.effective import check_variable_names, shown_value
from worker.errors import ConfigError
from worker.logs import configure_logging

Command = Callable[[argparse.Namespace], int]

HEALTH_TIMEOUT_S = 3.0
STATUS_HELP = "The queues' depth and age, dead letters by ErrorCode, workers' readiness."


def _seconds_above_zero(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0")
    return value


def _run(args: argparse.Namespace) -> int:
    settings = load_settings(args, until_empty=args.until_empty, give_up_after_s=args.give_up_after)
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
    host = _local_host(values["metrics_bind"])
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
    from worker.ops.check_config import check_aws, inspect_offline, print_findings

    settings = load_settings(args)
    if args.show:
        width = max(len(setting.env) for setting in SETTINGS)
        for setting in SETTINGS:
            source = settings.sources.get(setting.field, FROM_DEFAULT)
            print(f"{setting.env:<{width}}  {shown_value(settings, setting)!s:<24}  ({source})")
    offline = inspect_offline(settings)
    print_findings(offline)
    for problem in offline.problems:
        print(f"problem: {problem}", file=sys.stderr)
    if offline.problems:
        return exitcodes.CONFIG_ERROR
    if not args.aws:
        print("configuration is valid (add --aws to check the queues and the identity too)")
        return exitcodes.OK
    problems = anyio.run(check_aws, settings)
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    if problems:
        return exitcodes.FAILURE
    print("configuration is valid and both queues are reachable")
    return exitcodes.OK


def _status(args: argparse.Namespace) -> int:
    from worker.ops.status import status_command

    values = resolve(args, os.environ, ["queue_url", "dlq_url", "metrics_port", "metrics_bind"])
    workers = list(args.worker)
    if not workers and values["metrics_port"]:
        workers = [f"http://{_local_host(values['metrics_bind'])}:{values['metrics_port']}"]
    configure_logging(fmt="auto", level="warning")
    code: int = anyio.run(
        functools.partial(
            status_command,
            args,
            queue_url=values["queue_url"],
            dlq_url=values["dlq_url"],
            workers=workers,
        )
    )
    return code


def _local_host(bind: str) -> str:
    """Where a worker bound to `bind` on this host answers."""
    return "127.0.0.1" if bind in ("0.0.0.0", "::", "") else bind


def _enqueue(args: argparse.Namespace) -> int:
    from worker.ops.enqueue_command import enqueue_command

    queue_url = resolve(args, os.environ, ["queue_url"])["queue_url"]
    configure_logging(fmt="auto", level="warning")
    tracing.configure()
    code: int = anyio.run(enqueue_command, args, queue_url)
    return code


def _dlq(args: argparse.Namespace) -> int:
    from worker.ops.dlq_command import dlq_command

    # inspect reads the DLQ only; redrive needs the queue to move messages back to.
    fields = ["dlq_url"] if args.dlq_command == "inspect" else ["queue_url", "dlq_url"]
    values = resolve(args, os.environ, fields)
    configure_logging(fmt="auto", level="warning")
    code: int = anyio.run(dlq_command, args, values.get("queue_url", ""), values["dlq_url"])
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

    _add_service_commands(command)
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

    _add_status_command(command("status", _status, STATUS_HELP))
    _add_dlq_commands(command("dlq", _dlq, "Inspect or redrive the dead-letter queue."))
    return parser


def _add_service_commands(command: Callable[[str, Command, str], argparse.ArgumentParser]) -> None:
    run = command("run", _run, "Run the worker (a long-lived service, or --until-empty).")
    run.add_argument(
        "--until-empty",
        action="store_true",
        help="exit 0 once nothing is held here and the queue has no visible or in-flight messages",
    )
    run.add_argument(
        "--give-up-after",
        type=_seconds_above_zero,
        default=DEFAULT_GIVE_UP_AFTER_S,
        metavar="SECONDS",
        help="with --until-empty: exit 1 once the worker has been unable to work (unready: "
        "the queue or Cognito out of reach, credentials refused) this long "
        f"[default: {DEFAULT_GIVE_UP_AFTER_S:g}]",
    )
    add_arguments(run)

    check = command(
        "check-config", _check_config, "Validate the settings (with --aws: reach the queues)."
    )
    check.add_argument("--aws", action="store_true", help="also check the queues and identity")
    check.add_argument(
        "--show",
        action="store_true",
        help="list every setting's value and where it came from (flag, environment, default)",
    )
    add_arguments(check)


def _add_status_command(status: argparse.ArgumentParser) -> None:
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.add_argument(
        "--worker",
        action="append",
        default=[],
        metavar="URL",
        help="a worker's metrics address (http://host:9464), repeatable; default: the one "
        "--metrics-bind and --metrics-port name on this host",
    )
    status.add_argument(
        "--dlq-sample",
        type=int,
        default=100,
        help="dead letters read to count by ErrorCode (0: none), all given back",
    )
    add_arguments(status, ["queue_url", "dlq_url", "metrics_port", "metrics_bind"])


def _add_dlq_commands(dlq: argparse.ArgumentParser) -> None:
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    inspect = dlq_commands.add_parser("inspect", help="counts by ErrorCode and sample bodies")
    inspect.add_argument("--samples", type=int, default=3, help="sample bodies per ErrorCode")
    inspect.add_argument("--max-messages", type=int, default=1000, help="most messages to read")
    inspect.add_argument("--json", action="store_true", help="print the report as JSON")
    add_arguments(inspect, ["dlq_url", "username_hash_key"])
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
    redrive.add_argument(
        "--dry-run",
        action="store_true",
        help="count what would move, by ErrorCode, and move nothing",
    )
    redrive.add_argument(
        "--yes", action="store_true", help="move without showing the counts and asking first"
    )
    add_arguments(redrive, ["queue_url", "dlq_url", "username_hash_key"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_variable_names(os.environ)
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"feedback-worker: configuration error: {exc}", file=sys.stderr)
        return exitcodes.CONFIG_ERROR
    except KeyboardInterrupt:
        return exitcodes.FORCED
    return code


if __name__ == "__main__":
    sys.exit(main())
