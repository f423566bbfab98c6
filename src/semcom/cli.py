"""The ``semcom`` command.

Every command prints a human table by default and exact JSON with ``--json``.
Bad input ends the command with a one-line ``semcom: error: ...`` on stderr
and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import import_module

from semcom.commands import COMMANDS
from semcom.errors import ConfigError, SemcomError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump
        raise ConfigError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="semcom", description="Semantic communication with shared memories.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMANDS:
        import_module(f"semcom.commands.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``semcom`` console script."""
    try:
        args = build_parser().parse_args(argv)
        return args.main(args)
    except SemcomError as exc:
        print(f"semcom: error: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:
        print(f"semcom: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("semcom: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not bad input: still one line, and how to get the traceback
        if os.environ.get("SEMCOM_TRACEBACK"):
            raise
        print(f"semcom: internal error: {type(exc).__name__}: {exc} (a bug; SEMCOM_TRACEBACK=1 shows where)",
              file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
