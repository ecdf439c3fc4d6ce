"""The ``refreshd`` command line: run, migrate, and look after accounts, sessions and the audit trail.

Every command reads the same settings as the service (environment, ``.env``) and works on ``DATABASE_URL``.
Whatever goes wrong is reported in one line naming the setting or argument at fault, never as a traceback.

Only the standard library is imported up front: ``refreshd --help`` and a mistyped argument answer at once, and
each command imports what it uses when it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

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


# --- commands -----------------------------------------------------------------------------------------


def _migrate(_args: argparse.Namespace) -> int:
    from alembic import command
    from pydantic import ValidationError

    from app.migrations_info import alembic_config
    from app.settings import DatabaseSettings, describe_invalid

    try:
        DatabaseSettings()  # what the migrations read: refused here in one line, not inside Alembic
    except ValidationError as exc:
        raise CommandError(f"invalid configuration: {describe_invalid(exc)}") from None
    try:
        command.upgrade(alembic_config(), "head")
    except Exception as exc:
        # The driver's failure, wrapped by SQLAlchemy (whose text adds the statement and a link): its own words.
        raise CommandError(
            f"DATABASE_URL: cannot migrate: {_reason(getattr(exc, 'orig', None) or exc)}"
        ) from None
    return 0


def _serve(args: argparse.Namespace) -> int:
    from app import serving

    settings = _settings()  # refused here, in one line, before uvicorn starts
    if args.workers > 1 and settings.metrics_port is not None:
        # Every worker would bind it: the second could not, and would be restarted over and over.
        raise CommandError(
            "METRICS_PORT is one process's listener: use it with one worker, or METRICS_TOKEN instead"
        )
    problem = _database_problem(settings)
    if problem is not None:
        # Not a refusal: the database may come up later, and /readyz answers 503 until it does.
        print(
            f"{PROG}: warning: {problem}; serving anyway, /readyz answers 503 meanwhile",
            file=sys.stderr,
        )
    serving.serve(
        host=args.host, port=args.port, workers=args.workers, graceful_timeout=args.graceful_timeout
    )
    return 0


def _database_problem(settings: Settings) -> str | None:
    """What ``_check_database`` would refuse, said instead of raised (within a few seconds)."""
    import asyncio

    from app.store import Store

    async def probe() -> str | None:
        store = Store.open(settings)
        try:
            async with asyncio.timeout(5):
                await _check_database(store)
        except CommandError as exc:
            return str(exc)
        except TimeoutError:
            return "DATABASE_URL: the database did not answer within 5 s"
        finally:
            await store.close()
        return None

    return asyncio.run(probe())


def _purge(_args: argparse.Namespace) -> int:
    from app.services import purge

    async def work(settings: Settings, admin: AdminService) -> int:
        done = await purge.purge_all(
            admin.store.write_alone,
            now=_now(),
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
    from app.runtime import password_rules
    from app.schemas.auth import RegisterRequest
    from app.schemas.common import user_payload
    from app.services import users

    password = _read_password(
        args
    )  # before the database: a missing password is the first thing to say

    async def work(settings: Settings, admin: AdminService) -> int:
        # The same rules as the register route (format, lengths), then the password policy.
        RegisterRequest.model_validate(
            {"username": args.username, "email": args.email, "password": password}
        )
        registration = users.Registration(args.username, args.email, password)
        users.check_registration(registration, password_rules(settings))
        password_hash = _check_password(settings, password)
        user = await admin.create_user(
            registration, password_hash, confirmed=not args.unconfirmed, now=_now()
        )
        print(json.dumps(user_payload(user)))
        return 0

    return _run(work)


def _user_list(args: argparse.Namespace) -> int:
    from app.schemas.common import iso_ms, user_payload

    async def work(_settings: Settings, admin: AdminService) -> int:
        found = await admin.list_users(
            after=args.after,
            limit=args.limit,
            search=args.search,
            blocked=True if args.blocked else None,
            confirmed=False if args.unconfirmed else None,
        )
        for user in found:
            if args.json:
                print(json.dumps(user_payload(user)))
            else:
                states = [
                    s
                    for s, on in (("blocked", user.blocked), ("unconfirmed", not user.confirmed))
                    if on
                ]
                print(
                    f"{user.id:>8}  {user.username:<24} {user.email:<32} "
                    f"{iso_ms(user.created_at)}  {','.join(states) or '-'}"
                )
        if not found and not args.json:
            print("no users", file=sys.stderr)
        if len(found) == args.limit and not args.json:
            print(f"more: --after {found[-1].id}", file=sys.stderr)
        return 0

    return _run(work)


def _user_delete(args: argparse.Namespace) -> int:
    async def work(_settings: Settings, admin: AdminService) -> int:
        user_id = await _user_id(admin, args)
        revoked = await admin.delete_user(user_id, now=_now())
        print(f"user {user_id} deleted; {revoked} sessions revoked")
        return 0

    return _run(work)


def _user_block(args: argparse.Namespace) -> int:
    blocked = args.action == "block"

    async def work(_settings: Settings, admin: AdminService) -> int:
        user_id = await _user_id(admin, args)
        await admin.set_blocked(user_id, blocked, now=_now())
        print(f"user {user_id} {'blocked (every session revoked)' if blocked else 'unblocked'}")
        return 0

    return _run(work)


def _user_set_password(args: argparse.Namespace) -> int:
    password = _read_password(args)

    async def work(settings: Settings, admin: AdminService) -> int:
        user_id = await _user_id(admin, args)
        password_hash = _check_password(settings, password)
        revoked = await admin.set_password(user_id, password_hash, now=_now())
        print(f"password of user {user_id} set; {revoked} sessions revoked")
        return 0

    return _run(work)


def _user_show(args: argparse.Namespace) -> int:
    from app.schemas.common import user_payload

    async def work(_settings: Settings, admin: AdminService) -> int:
        ref = _user_ref(args)
        assert ref is not None
        user = await admin.find(ref)
        live = await admin.live_sessions(user.id, now=_now())
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
    from app.schemas.common import iso_ms

    async def work(_settings: Settings, admin: AdminService) -> int:
        user_id = await _user_id(admin, args)
        # The API's own definition of live (SESSION_LISTED), so both list the same sessions.
        states = await admin.sessions(user_id, now=_now(), include_ended=args.all)
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
        count = await admin.revoke_sessions(user_id, session_id, now=_now())
        print(f"{count} sessions revoked")
        return 0

    return _run(work)


def _audit(args: argparse.Namespace) -> int:
    from app.schemas.common import iso_ms

    async def work(_settings: Settings, admin: AdminService) -> int:
        ref = _user_ref(args)
        user_id = ref.id if ref else None  # by id, even once deleted: its trail outlives it
        if ref is not None and user_id is None:
            user_id = (await admin.find(ref)).id
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
                details = json.dumps(event.details, sort_keys=True) if event.details else ""
                print(
                    f"{record['at']}  {event.event:<22} user={event.user_id} "
                    f"session={event.session_id or '-'} ip={event.ip or '-'} {details}".rstrip()
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
                now=_now(),
            )
        print(report.summary())
        return 0

    return _run(work)


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


if __name__ == "__main__":
    sys.exit(main())
