"""The ``refreshd`` command line: serve, migrate, purge."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from app.clock import system_clock
from app.db import Database
from app.services.purge import purge_sessions
from app.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def _migrate(_args: argparse.Namespace) -> int:
    from alembic import command
    from alembic.config import Config

    # A checkout keeps alembic.ini beside app/; an installed package (the image) runs from a folder holding it.
    base = Path.cwd() if (Path.cwd() / "alembic.ini").exists() else ROOT
    config = Config(str(base / "alembic.ini"))
    config.set_main_option("script_location", str(base / "migrations"))
    command.upgrade(config, "head")
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        access_log=False,
        # X-Forwarded-For is the application's call (TRUSTED_PROXIES), not uvicorn's.
        proxy_headers=False,
    )
    return 0


def _purge(_args: argparse.Namespace) -> int:
    settings = Settings()

    async def run() -> int:
        db = Database(settings)
        try:
            return await purge_sessions(
                db,
                now=system_clock(),
                access_ttl=settings.jwt_expires_in,
                batch_size=settings.session_purge_batch,
            )
        finally:
            await db.dispose()

    deleted = asyncio.run(run())
    print(f"purged {deleted} dead sessions")
    return 0


async def _find_user_id(db: Database, ident: str) -> int | None:
    from sqlalchemy import or_, select

    from app.models import User

    conditions = [User.username == ident, User.email == ident.lower()]
    if ident.isdecimal():
        conditions.append(User.id == int(ident))
    async with db.read() as session:
        found = await session.scalar(select(User.id).where(or_(*conditions)).order_by(User.id))
    return int(found) if found is not None else None


def _set_blocked(args: argparse.Namespace) -> int:
    from app.services import accounts

    blocked = args.action == "block"
    settings = Settings()

    async def run() -> int:
        db = Database(settings)
        try:
            user_id = await _find_user_id(db, args.user)
            if user_id is None:
                print(f"no user {args.user!r}", file=sys.stderr)
                return 1
            async with db.write() as session:
                await accounts.set_blocked(session, user_id, blocked, now=system_clock())
            verb = "blocked (every session revoked)" if blocked else "unblocked"
            print(f"user {user_id} {verb}")
            return 0
        finally:
            await db.dispose()

    return asyncio.run(run())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="refreshd", description="Strapi-compatible auth service with refresh tokens."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP server (configured by the environment)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(handler=_serve)
    migrate = commands.add_parser("migrate", help="upgrade the database named by DATABASE_URL")
    migrate.set_defaults(handler=_migrate)
    purge = commands.add_parser("purge", help="delete revoked and expired sessions now, in batches")
    purge.set_defaults(handler=_purge)
    user = commands.add_parser("user", help="manage accounts")
    user_commands = user.add_subparsers(dest="action", required=True)
    for action, text in (
        ("block", "block an account and revoke all its sessions"),
        ("unblock", "let a blocked account log in again"),
    ):
        sub = user_commands.add_parser(action, help=text)
        sub.add_argument("user", help="id, username or email")
        sub.set_defaults(handler=_set_blocked)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = args.handler
    return int(handler(args))


if __name__ == "__main__":
    sys.exit(main())
