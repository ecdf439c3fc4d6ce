"""The ``refreshd`` command line: run, migrate, and look after accounts, sessions and the audit trail.

Every command reads the same settings as the service (environment, ``.env``) and works on ``DATABASE_URL``.
Whatever goes wrong is reported in one line naming the setting or argument at fault, never as a traceback.

Only the standard library is imported up front: ``refreshd --help`` and a mistyped argument answer at once, and
each command imports what it uses when it runs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from app.cli.parser import build_parser
from app.cli.support import PROG, SIGPIPE_EXIT, CommandError

__all__ = ["build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        try:
            status = int(args.handler(args))
            sys.stdout.flush()  # here, so a reader gone away (`refreshd audit | head`) is caught below
        except BrokenPipeError:
            # Nobody reads the rest: stop quietly, and point standard output at nothing so the interpreter's
            # own flush at exit does not complain again.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return SIGPIPE_EXIT
        return status
    except CommandError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return _fail("interrupted", status=130)
    except Exception as exc:
        return _fail_known(exc)


def _fail(message: str, *, status: int = 1) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return status


def _fail_known(exc: Exception) -> int:
    """The project's own refusals, in their own words; anything else is a bug and keeps its traceback."""
    from pydantic import ValidationError as PydanticValidationError

    from app.errors import AppError, DatabaseUnavailable

    if isinstance(exc, DatabaseUnavailable):
        return _fail(f"DATABASE_URL: the database stopped answering: {exc.reason}")
    if isinstance(exc, AppError):
        return _fail(exc.message)
    if isinstance(exc, PydanticValidationError):
        return _fail("; ".join(str(e["msg"]) for e in exc.errors()))
    raise exc
