"""The commands: each reads its arguments, calls the use cases, prints the result."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.services.admin import AdminService
    from app.settings import Settings

from app.cli.support import (
    PROG,
    CommandError,
    _check_database,
    _check_password,
    _now,
    _read_password,
    _reason,
    _run,
    _settings,
    _user_id,
    _user_ref,
)

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
    _check_signing_keys(settings)
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


def _check_signing_keys(settings: Settings) -> None:
    """An ES256/RS256 key set the server could not sign with is refused here, in one line, as at its start."""
    from app.security.keys import KeySetError
    from app.services.key_file import load_signing_keys

    try:
        load_signing_keys(settings)
    except KeySetError as exc:
        raise CommandError(f"invalid configuration: {exc}") from None


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
