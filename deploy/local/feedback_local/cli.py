"""The `feedback-local` command: run the local stack, or drain a demo workload through it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _stack(_args: argparse.Namespace) -> int:
    from feedback_local.stack import run_forever

    return run_forever()


def _demo(args: argparse.Namespace) -> int:
    from feedback_local.demo import run_demo

    code: int = run_demo(messages=args.messages)
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="feedback-local",
        description="The local stack of cognito-feedback-worker: moto's SQS and a Cognito "
        "emulator on loopback.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    stack = commands.add_parser(
        "stack",
        help="run the local stack in the foreground and print the environment to export",
    )
    stack.set_defaults(func=_stack)
    demo = commands.add_parser(
        "demo", help="drain a demo workload through the worker on the local stack (make run)"
    )
    demo.add_argument("--messages", type=int, default=300, help="valid verdicts to enqueue")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
