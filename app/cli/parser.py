"""The arguments of every command, with help text and defaults."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    pass

from app.cli.commands import (
    _audit,
    _import_strapi,
    _migrate,
    _purge,
    _serve,
    _sessions_list,
    _sessions_revoke,
    _user_block,
    _user_collisions,
    _user_create,
    _user_delete,
    _user_list,
    _user_set_password,
    _user_show,
)
from app.cli.keys import add_key_commands
from app.cli.support import PROG, _add_user_lookup, _port, _positive, _user_id_argument

# --- the parser ---------------------------------------------------------------------------------------


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's default in its help, except where there is nothing to say (a flag's False, no value)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        nothing = action.default is None or action.default is False
        if nothing or action.default == argparse.SUPPRESS or not action.option_strings:
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    """argparse, with a mistake reported in one line (which command, which argument, what to do) instead of the
    whole usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


class _Version(argparse.Action):
    """``--version``, read from the installed package only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_args: Any, **_kwargs: Any) -> NoReturn:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("refreshd")
        except PackageNotFoundError:  # run from a checkout that was never installed
            number = "unknown"
        print(f"{PROG} {number}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Strapi-compatible auth service with refresh tokens. Settings come from the "
        "environment and .env (see .env.example).",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action=_Version, help="print the version and exit")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )
    _add_service_commands(commands)
    _add_user_commands(commands)
    _add_session_commands(commands)
    _add_audit_and_import(commands)
    add_key_commands(commands, _command)
    return parser


Commands = Any  # argparse's subparsers action (a private class)


def _command(commands: Commands, name: str, text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=text,
        description=text[0].upper() + text[1:] + ".",
        formatter_class=_HelpFormatter,
    )
    return parser


def _add_service_commands(commands: Commands) -> None:
    serve = _command(commands, "serve", "run the HTTP server")
    serve.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    serve.add_argument(
        "--port", type=_port, default=8000, help="the port to listen on (0: any free one)"
    )
    serve.add_argument(
        "--workers", type=_positive, default=1, help="worker processes (each with its own pool)"
    )
    serve.add_argument(
        "--graceful-timeout",
        type=_positive,
        default=20,
        help="seconds in-flight requests get on shutdown",
    )
    serve.set_defaults(handler=_serve)
    _command(commands, "migrate", "upgrade the database to the latest schema").set_defaults(
        handler=_migrate
    )
    _command(
        commands, "purge", "delete dead sessions, used or expired codes, and old audit events now"
    ).set_defaults(handler=_purge)


def _add_user_commands(commands: Commands) -> None:
    user = _command(commands, "user", "manage accounts")
    user_commands = user.add_subparsers(
        dest="action", required=True, metavar="ACTION", parser_class=_Parser
    )
    create = _command(user_commands, "create", "create a local account")
    create.add_argument("username", help="3 characters or more")
    create.add_argument("email", help="stored lower-cased")
    create.add_argument("--unconfirmed", action="store_true", help="require email confirmation")
    create.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input (else it is asked for on the terminal)",
    )
    create.set_defaults(handler=_user_create)
    _add_user_list(user_commands)
    _add_user_changes(user_commands)


def _add_user_list(user_commands: Commands) -> None:
    listing = _command(user_commands, "list", "list accounts by id, a page at a time")
    listing.add_argument(
        "--search",
        metavar="TEXT",
        help="only those whose username or email contains TEXT (any case)",
    )
    listing.add_argument("--blocked", action="store_true", help="only blocked accounts")
    listing.add_argument(
        "--unconfirmed", action="store_true", help="only accounts whose email is not confirmed"
    )
    listing.add_argument(
        "--after", type=_user_id_argument, default=0, metavar="ID", help="start after this id"
    )
    listing.add_argument("--limit", type=_positive, default=50, help="accounts per page")
    listing.add_argument(
        "--json", action="store_true", help="one JSON object per line (as GET /api/users/me)"
    )
    listing.set_defaults(handler=_user_list)


def _add_user_changes(user_commands: Commands) -> None:
    for action, text in (
        ("block", "block an account and revoke all its sessions"),
        ("unblock", "let a blocked account log in again"),
    ):
        sub = _command(user_commands, action, text)
        _add_user_lookup(sub)
        sub.set_defaults(handler=_user_block)
    set_password = _command(
        user_commands, "set-password", "set a new password; every session of the account is revoked"
    )
    _add_user_lookup(set_password)
    set_password.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from standard input (else it is asked for on the terminal)",
    )
    set_password.set_defaults(handler=_user_set_password)
    show = _command(user_commands, "show", "print an account (never its password hash)")
    _add_user_lookup(show)
    show.set_defaults(handler=_user_show)
    delete = _command(
        user_commands,
        "delete",
        "delete an account: its sessions are revoked and deleted with it (audited)",
    )
    _add_user_lookup(delete)
    delete.set_defaults(handler=_user_delete)
    _command(
        user_commands,
        "collisions",
        "list accounts whose usernames or emails are one name in Unicode NFKC form",
    ).set_defaults(handler=_user_collisions)


def _add_session_commands(commands: Commands) -> None:
    session_parser = _command(commands, "sessions", "a user's sessions")
    session_commands = session_parser.add_subparsers(
        dest="action", required=True, metavar="ACTION", parser_class=_Parser
    )
    listing = _command(session_commands, "list", "list live sessions (or --all)")
    _add_user_lookup(listing)
    listing.add_argument("--all", action="store_true", help="include revoked and expired ones")
    listing.set_defaults(handler=_sessions_list)
    revoke = _command(session_commands, "revoke", "revoke one session, or --all")
    _add_user_lookup(revoke)
    revoke.add_argument("session", nargs="?", help="the session id")
    revoke.add_argument("--all", action="store_true", help="every session of the user")
    revoke.set_defaults(handler=_sessions_revoke)


def _add_audit_and_import(commands: Commands) -> None:
    audit_parser = _command(commands, "audit", "read the audit trail, newest first")
    _add_user_lookup(audit_parser, required=False)  # only this user
    audit_parser.add_argument("--limit", type=_positive, default=50, help="events to print")
    audit_parser.add_argument("--json", action="store_true", help="one JSON object per line")
    audit_parser.set_defaults(handler=_audit)
    importer = _command(
        commands, "import-strapi", "import users (with their passwords) from a Strapi 5 database"
    )
    importer.add_argument("source", help="a Strapi SQLite file, sqlite:///..., or postgresql://...")
    importer.add_argument("--dry-run", action="store_true", help="check and count, write nothing")
    importer.add_argument(
        "--batch-size", type=_positive, default=2000, help="users written per transaction"
    )
    importer.add_argument("--quiet", action="store_true", help="no progress bar")
    importer.set_defaults(handler=_import_strapi)
