"""`python -m core <command> [args]`: runs core/cli/<command>.py; `python -m core` lists the commands."""

import importlib
import os
import sys

from core.cli import COMMANDS


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        known = "\n".join(f"  {name:<12} {what}" for name, what in COMMANDS.items())
        stream = sys.stdout if argv and argv[0] in ("-h", "--help") else sys.stderr
        if argv and argv[0] not in ("-h", "--help"):
            print(f"error: unknown command {argv[0]!r}", file=stream)
        print(f"usage: python -m core <command> [--help]\n\ncommands:\n{known}", file=stream)
        return 0 if stream is sys.stdout else 2
    return importlib.import_module(f"core.cli.{argv[0].replace('-', '_')}").main(argv[1:])


def run(argv: list[str]) -> int:
    """main(), quiet when the reader of its output goes away (`... --json | head`): no traceback, exit 1."""
    try:
        code = main(argv)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit's own flush must not fail again
        return 1


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
