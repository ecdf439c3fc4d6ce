"""What every command shares: settings, the store, argument types, passwords, the clock."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.services.admin import AdminService, UserRef
    from app.settings import Settings

PROG = "refreshd"
SIGPIPE_EXIT = 128 + 13  # what a shell reports for a process ended by SIGPIPE, as `yes | head` does


class CommandError(Exception):
    """A failure to report in one line, with exit status 1."""


# --- settings and the database ------------------------------------------------------------------------


def _settings() -> Settings:
    """The service's settings; a refused one is one line naming each setting at fault."""
    from pydantic import ValidationError

    from app.settings import Settings, describe_invalid

    try:
        return Settings()
    except ValidationError as exc:
        raise CommandError(f"invalid configuration: {describe_invalid(exc)}") from None


def _run(work: Callable[[Settings, AdminService], Awaitable[int]]) -> int:
    """Open the store, check that the database answers and is at this build's schema, then ``work``."""
    settings = _settings()
    import asyncio

    from app.services.admin import AdminService
    from app.store import Store

    async def main() -> int:
        store = Store.open(settings)
        try:
            await _check_database(store)
            return await work(settings, AdminService(store, access_ttl=settings.jwt_expires_in))
        finally:
            await store.close()

    return asyncio.run(main())


async def _check_database(store: Any) -> None:
    """The first statement of a command: a database that cannot be used is named here, before any work."""
    from app.errors import DatabaseUnavailable
    from app.services.schema import schema_problem

    try:
        current = await store.schema_version()
    except DatabaseUnavailable as exc:
        raise CommandError(f"DATABASE_URL: cannot use the database: {exc.reason}") from None
    except Exception as exc:  # the driver's refusal: a wrong password, no such database, ...
        raise CommandError(f"DATABASE_URL: cannot use the database: {_reason(exc)}") from None
    problem = schema_problem(current)
    if problem is not None:
        raise CommandError(problem)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


# --- arguments ----------------------------------------------------------------------------------------


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r}: must be 1 or more")
    return number


def _port(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r}: a port is from 0 (any free one) to 65535")
    return number


def _user_id_argument(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a user id (a number)") from None


def _add_user_lookup(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """The user is named by exactly one of id, email or username: never a guess between them (a username "42"
    and the user with id 42 are different accounts)."""
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument(
        "--id", type=_user_id_argument, dest="user_id", metavar="ID", help="the user's id"
    )
    group.add_argument(
        "--email", dest="user_email", metavar="EMAIL", help="the user's email (any case)"
    )
    group.add_argument(
        "--username", dest="user_username", metavar="USERNAME", help="the user's username (exact)"
    )


def _user_ref(args: argparse.Namespace) -> UserRef | None:
    from app.services.admin import UserRef

    ref = UserRef(args.user_id, args.user_email, args.user_username)
    return None if ref == UserRef() else ref


async def _user_id(admin: AdminService, args: argparse.Namespace) -> int:
    ref = _user_ref(args)
    assert ref is not None  # the parser requires one
    return (await admin.find(ref)).id


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        if not line:
            raise CommandError(
                "--password-stdin: standard input is empty (write the password to it)"
            )
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        # getpass would fall back to reading standard input, with a warning, echoing nothing: say what to do.
        raise CommandError(
            "no terminal to ask for the password on: write it to standard input with --password-stdin"
        )
    import getpass

    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise CommandError("the passwords do not match")
    return first


def _check_password(settings: Settings, password: str) -> str:
    from app.runtime import argon2_params, password_rules
    from app.security.passwords import build_context, hash_password
    from app.services import users

    users.check_password_policy(password, password_rules(settings))
    context = build_context(argon2_params(settings))
    return hash_password(context, password)


def _now() -> Any:
    from app.clock import system_clock

    return system_clock()
