"""The ``semcom`` command.

Every command prints a human table by default and exact JSON with ``--json``.
Bad input ends the command with a one-line ``semcom: error: ...`` on stderr
and a non-zero exit, never a traceback.

Start-up is kept short: :func:`main` builds only the parser of the command it runs (the others are their line
of semcom.commands.HELP, without importing their module), and the command modules import torch, Sionna, PyAV,
matplotlib and the rest inside the functions that need them, so ``semcom --help`` imports none of them
(tests/test_threads_imports.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import import_module

from semcom.commands import COMMANDS, HELP
from semcom.errors import ConfigError, SemcomError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump
        raise ConfigError(f"{self.prog}: {message}")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``semcom`` parser with every sub-command, or, given ``only``, with that sub-command's full parser and
    the others as their help line (what ``semcom --help`` lists; ``only=""``: none in full)."""
    parser = _Parser(prog="semcom", description="Semantic communication with shared memories.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMANDS:
        if only is None or name == only:
            import_module(f"semcom.commands.{name}").add_parser(sub)
        else:
            sub.add_parser(name, help=HELP[name], add_help=False)
    return parser


def command_of(argv: list[str]) -> str:
    """The sub-command ``argv`` names (its first word that is not an option; ``semcom`` itself has no option but
    -h), or "" when it names none of them."""
    word = next((a for a in argv if not a.startswith("-")), "")
    return word if word in COMMANDS else ""


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``semcom`` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser(only=command_of(argv)).parse_args(argv)
        from semcom.threads import pinned

        with pinned(getattr(args, "threads", None)):  # --threads N: the whole command on N torch threads
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
