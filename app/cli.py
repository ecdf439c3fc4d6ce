"""The ``refreshd`` command line: run, migrate, and look after accounts, sessions and the audit trail.

Every command reads the same settings as the service (environment, ``.env``) and works on ``DATABASE_URL``.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from app.clock import system_clock
from app.errors import AppError
from app.runtime import argon2_params, password_rules
from app.schemas.auth import RegisterRequest
from app.schemas.common import iso_ms, user_payload
from app.security.passwords import build_context, hash_password
from app.services import purge, users
from app.services.admin import AdminService, UserRef
from app.settings import Settings
from app.store import Store


class CommandError(Exception):
    """A failure to report in one line, with exit status 1."""


def _run(work: Callable[[Settings, AdminService], Awaitable[int]]) -> int:
    settings = Settings()

    async def main() -> int:
        store = Store.open(settings)
        try:
            return await work(settings, AdminService(store, access_ttl=settings.jwt_expires_in))
        finally:
            await store.close()

    return asyncio.run(main())


def _add_user_lookup(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """The user is named by exactly one of id, email or username: never a guess between them (a username "42"
    and the user with id 42 are different accounts)."""
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--id", type=int, dest="user_id", metavar="ID", help="the user's id")
    group.add_argument(
        "--email", dest="user_email", metavar="EMAIL", help="the user's email (any case)"
    )
    group.add_argument(
        "--username", dest="user_username", metavar="USERNAME", help="the user's username (exact)"
    )


def _user_ref(args: argparse.Namespace) -> UserRef | None:
    ref = UserRef(args.user_id, args.user_email, args.user_username)
    return None if ref == UserRef() else ref


async def _user_id(admin: AdminService, args: argparse.Namespace) -> int:
    ref = _user_ref(args)
    assert ref is not None  # the parser requires one
    return (await admin.find(ref)).id


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise CommandError("the passwords do not match")
    return first


def _check_password(settings: Settings, password: str) -> str:
    users.check_password_policy(password, password_rules(settings))
    context = build_context(argon2_params(settings))
    return hash_password(context, password)


# --- commands -----------------------------------------------------------------------------------------


def _migrate(_args: argparse.Namespace) -> int:
    from alembic import command

    from app.migrations_info import alembic_config

    command.upgrade(alembic_config(), "head")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from app import serving
    from app.main import settings_from_environment

    if args.workers > 1 and settings_from_environment().metrics_port is not None:
        # Every worker would bind it: the second could not, and would be restarted over and over.
        raise CommandError(
            "METRICS_PORT is one process's listener: use it with one worker, or METRICS_TOKEN instead"
        )
    serving.serve(
        host=args.host, port=args.port, workers=args.workers, graceful_timeout=args.graceful_timeout
    )
    return 0


def _purge(_args: argparse.Namespace) -> int:
    async def work(settings: Settings, admin: AdminService) -> int:
        done = await purge.purge_all(
            admin.store.write_alone,
            now=system_clock(),
            access_ttl=settings.jwt_expires_in,
            audit_retention=settings.audit_retention,
            batch_size=settings.session_purge_batch,
        )
        print(
            f"purged {done.sessions} sessions, {done.codes} codes, {done.audit_events} audit events"
        )
        return 0

    return _run(work)


def _user_create(args: argparse.Namespace) -> int:
    async def work(settings: Settings, admin: AdminService) -> int:
        password = _read_password(args)
        # The same rules as the register route (format, lengths), then the password policy.
        RegisterRequest.model_validate(
            {"username": args.username, "email": args.email, "password": password}
        )
        registration = users.Registration(args.username, args.email, password)
        users.check_registration(registration, password_rules(settings))
        password_hash = _check_password(settings, password)
        user = await admin.create_user(
            registration, password_hash, confirmed=not args.unconfirmed, now=system_clock()
        )
        print(json.dumps(user_payload(user)))
        return 0

    return _run(work)


def _user_block(args: argparse.Namespace) -> int:
    blocked = args.action == "block"

    async def work(_settings: Settings, admin: AdminService) -> int:
        user_id = await _user_id(admin, args)
        await admin.set_blocked(user_id, blocked, now=system_clock())
        print(f"user {user_id} {'blocked (every session revoked)' if blocked else 'unblocked'}")
        return 0

    return _run(work)


def _user_set_password(args: argparse.Namespace) -> int:
    async def work(settings: Settings, admin: AdminService) -> int:
        user_id = await _user_id(admin, args)
        password_hash = _check_password(settings, _read_password(args))
        revoked = await admin.set_password(user_id, password_hash, now=system_clock())
        print(f"password of user {user_id} set; {revoked} sessions revoked")
        return 0

    return _run(work)


def _user_show(args: argparse.Namespace) -> int:
    async def work(_settings: Settings, admin: AdminService) -> int:
        ref = _user_ref(args)
        assert ref is not None
        user = await admin.find(ref)
        live = await admin.live_sessions(user.id, now=system_clock())
        print(json.dumps({**user_payload(user), "liveSessions": live}, indent=2))
        return 0

    return _run(work)


def _user_collisions(_args: argparse.Namespace) -> int:
    """Accounts whose usernames or emails are one name in NFKC form (migration 0006 leaves them as they were)."""

    async def work(_settings: Settings, admin: AdminService) -> int:
        collisions = await admin.collisions()
        for collision in collisions:
            listed = ", ".join(f"user {i} ({u!r}, {e!r})" for i, u, e in collision.members)
            print(f"{collision.kind} {collision.name!r}: {listed}")
        if not collisions:
            print("no collisions")
        return 0

    return _run(work)


def _sessions_list(args: argparse.Namespace) -> int:
    async def work(_settings: Settings, admin: AdminService) -> int:
        user_id = await _user_id(admin, args)
        # The API's own definition of live (SESSION_LISTED), so both list the same sessions.
        states = await admin.sessions(user_id, now=system_clock(), include_ended=args.all)
        for state in states:
            row = state.row
            label = f"revoked ({row.revoked_reason})" if row.revoked_at else "live"
            if not row.revoked_at and not state.listed:
                label = "expired"
            print(
                f"{row.id}  {label:<28} login {iso_ms(row.created_at)}  "
                f"active {iso_ms(row.last_active_at)}  {row.ip or '-'}  {row.device_name or '-'}"
            )
        if not states:
            print("no sessions")
        return 0

    return _run(work)


def _sessions_revoke(args: argparse.Namespace) -> int:
    if not args.all and not args.session:
        raise CommandError("name a session id, or --all")

    async def work(_settings: Settings, admin: AdminService) -> int:
        user_id = await _user_id(admin, args)
        session_id = None if args.all else args.session
        count = await admin.revoke_sessions(user_id, session_id, now=system_clock())
        print(f"{count} sessions revoked")
        return 0

    return _run(work)


def _audit(args: argparse.Namespace) -> int:
    async def work(_settings: Settings, admin: AdminService) -> int:
        ref = _user_ref(args)
        user_id = (await admin.find(ref)).id if ref else None
        for event in await admin.audit(user_id=user_id, limit=args.limit):
            record: dict[str, Any] = {
                "at": iso_ms(event.at),
                "event": event.event,
                "user": event.user_id,
                "session": event.session_id,
                "ip": event.ip,
                "userAgent": event.user_agent,
                "details": event.details,
            }
            if args.json:
                print(json.dumps(record))
            else:
                print(
                    f"{record['at']}  {event.event:<22} user={event.user_id} "
                    f"session={event.session_id or '-'} ip={event.ip or '-'} {event.details or ''}"
                )
        return 0

    return _run(work)


def _import_strapi(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from app.services.importer import StrapiSourceError, count_strapi_users, import_strapi

    async def work(_settings: Settings, admin: AdminService) -> int:
        try:
            total = await count_strapi_users(args.source)
        except StrapiSourceError as exc:
            raise CommandError(str(exc)) from None
        with tqdm(total=total, unit=" users", disable=args.quiet or None, file=sys.stderr) as bar:
            report = await import_strapi(
                args.source,
                admin.store,
                dry_run=args.dry_run,
                batch_size=args.batch_size,
                progress=bar.update,
                now=system_clock(),
            )
        print(report.summary())
        return 0

    return _run(work)


# --- the parser ---------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="refreshd",
        description="Strapi-compatible auth service with refresh tokens. Settings come from the "
        "environment and .env (see .env.example).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_service_commands(commands)
    _add_user_commands(commands)
    _add_session_commands(commands)
    _add_audit_and_import(commands)
    return parser


Commands = Any  # argparse's subparsers action (a private class)


def _add_service_commands(commands: Commands) -> None:
    serve = commands.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument(
        "--graceful-timeout",
        type=int,
        default=20,
        help="seconds in-flight requests get on shutdown",
    )
    serve.set_defaults(handler=_serve)
    commands.add_parser("migrate", help="upgrade the database to the latest schema").set_defaults(
        handler=_migrate
    )
    commands.add_parser(
        "purge", help="delete dead sessions, used or expired codes, and old audit events now"
    ).set_defaults(handler=_purge)


def _add_user_commands(commands: Commands) -> None:
    user = commands.add_parser("user", help="manage accounts")
    user_commands = user.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = user_commands.add_parser("create", help="create a local account")
    create.add_argument("username")
    create.add_argument("email")
    create.add_argument("--unconfirmed", action="store_true", help="require email confirmation")
    create.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    create.set_defaults(handler=_user_create)
    for action, text in (
        ("block", "block an account and revoke all its sessions"),
        ("unblock", "let a blocked account log in again"),
    ):
        sub = user_commands.add_parser(action, help=text)
        _add_user_lookup(sub)
        sub.set_defaults(handler=_user_block)
    set_password = user_commands.add_parser(
        "set-password", help="set a new password; every session of the account is revoked"
    )
    _add_user_lookup(set_password)
    set_password.add_argument("--password-stdin", action="store_true")
    set_password.set_defaults(handler=_user_set_password)
    show = user_commands.add_parser("show", help="print an account (never its password hash)")
    _add_user_lookup(show)
    show.set_defaults(handler=_user_show)
    user_commands.add_parser(
        "collisions",
        help="list accounts whose usernames or emails are one name in Unicode NFKC form",
    ).set_defaults(handler=_user_collisions)


def _add_session_commands(commands: Commands) -> None:
    session_parser = commands.add_parser("sessions", help="a user's sessions")
    session_commands = session_parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = session_commands.add_parser("list", help="list live sessions (or --all)")
    _add_user_lookup(listing)
    listing.add_argument("--all", action="store_true", help="include revoked and expired ones")
    listing.set_defaults(handler=_sessions_list)
    revoke = session_commands.add_parser("revoke", help="revoke one session, or --all")
    _add_user_lookup(revoke)
    revoke.add_argument("session", nargs="?", help="the session id")
    revoke.add_argument("--all", action="store_true")
    revoke.set_defaults(handler=_sessions_revoke)


def _add_audit_and_import(commands: Commands) -> None:
    audit_parser = commands.add_parser("audit", help="read the audit trail, newest first")
    _add_user_lookup(audit_parser, required=False)  # only this user
    audit_parser.add_argument("--limit", type=int, default=50)
    audit_parser.add_argument("--json", action="store_true", help="one JSON object per line")
    audit_parser.set_defaults(handler=_audit)
    importer = commands.add_parser(
        "import-strapi", help="import users (with their passwords) from a Strapi 5 database"
    )
    importer.add_argument("source", help="a Strapi SQLite file, sqlite:///..., or postgresql://...")
    importer.add_argument("--dry-run", action="store_true", help="check and count, write nothing")
    importer.add_argument("--batch-size", type=int, default=2000)
    importer.add_argument("--quiet", action="store_true", help="no progress bar")
    importer.set_defaults(handler=_import_strapi)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except CommandError as exc:
        print(f"refreshd: {exc}", file=sys.stderr)
        return 1
    except AppError as exc:
        print(f"refreshd: {exc.message}", file=sys.stderr)
        return 1
    except PydanticValidationError as exc:
        problems = "; ".join(str(e["msg"]) for e in exc.errors())
        print(f"refreshd: {problems}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
