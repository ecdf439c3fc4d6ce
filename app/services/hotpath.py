"""The hot path: refreshing a token and finding the user behind an access token, on the database driver directly.

These two run on every refresh and on every authenticated request. Their statements are written once, here, with
SQLAlchemy Core, and compiled at startup to the driver's own SQL; each request only binds values and runs them on
asyncpg or sqlite3: no ORM, no unit of work, no per-request compilation, no SQLAlchemy session or pool checkout.

- **PostgreSQL**: a refresh is one round trip. The conditional UPDATE that rotates (or touches) the session and the
  INSERT of its audit row are one statement, a data-modifying CTE, atomic on its own: the audit row exists exactly
  when the update happened. Up to ``DB_POOL_SIZE`` asyncpg connections are handed out in turn (``FairPool``);
  the server's purge batches (``write_alone``) run on a connection of their own.
- **SQLite**: each operation is a few microseconds of work on a local file, cheaper than the thread hops a
  thread-backed driver makes for every call while holding the write lock. So it runs on the event loop itself,
  on a connection that never waits (``busy_timeout=0``): writes take the process's write gate (shared with every
  other write), then ``BEGIN IMMEDIATE``. If another process holds the database lock (the CLI, a second worker),
  the operation is handed to a thread that retries every 2 ms for up to ``SQLITE_BUSY_TIMEOUT_MS``, so the event
  loop never blocks on a lock. The server's own purge runs its batches here too (``write_alone``), between the
  requests' writes. This connection never checkpoints in its commits (``wal_autocheckpoint=0``): every
  ``CHECKPOINT_EVERY`` changes (a request's write counts one, a batch its rows) a thread checkpoints PASSIVE
  twice (blocks nobody, copies most of the log), then the loop runs FULL while holding the write gate (copies
  the rest, so the next write starts the log over).
  Without that last step a sustained write load never lets a checkpoint catch up, and the log grows without bound
  (measured: 30 MB/s at 1,600 refreshes/s, 4 GB during a purge).

Driver failures that mean "the database is unavailable" become ``DatabaseUnavailable`` (503).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import asyncpg
from sqlalchemy import (
    JSON,
    ColumnElement,
    Insert,
    Integer,
    Select,
    String,
    Table,
    Update,
    and_,
    bindparam,
    case,
    exists,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import UpdateBase

from app.db import UTCDateTime
from app.models import AuditEvent, Session, User
from app.models.audit import Event
from app.models.user import UserRecord
from app.settings import Settings

T = TypeVar("T")

_SESSIONS: Table = Session.__table__  # type: ignore[assignment]  # declared models map to Tables
_USERS: Table = User.__table__  # type: ignore[assignment]
_AUDIT: Table = AuditEvent.__table__  # type: ignore[assignment]

# "Alive": this generation, not revoked, not expired, its user not blocked.
NOW = bindparam("now_", type_=UTCDateTime())
_ALIVE = and_(
    _SESSIONS.c.id == bindparam("sid"),
    _SESSIONS.c.user_id == bindparam("uid"),
    _SESSIONS.c.generation == bindparam("gen"),
    _SESSIONS.c.revoked_at.is_(None),
    _SESSIONS.c.expires_at > NOW,
    _SESSIONS.c.refresh_expires_at > NOW,
    exists().where(_USERS.c.id == bindparam("uid"), _USERS.c.blocked.is_(False)),
)
_CANDIDATE = bindparam("candidate", type_=UTCDateTime())
# now - REFRESH_TOKEN_REUSE_GRACE
GRACE_START = bindparam("grace_start", type_=UTCDateTime())
# The next generation, as SET clauses: refresh_expires_at = min(now + idle, expires_at), so the idle expiry
# slides and the absolute one never moves; the issue times shift along (SET reads the row as it was), so the row
# knows when its last three generations were issued, for the reuse grace; a rotation more than the window after
# the previous one starts a new burst.
NEXT_GENERATION = {
    "generation": _SESSIONS.c.generation + 1,
    "rotated_at": NOW,
    "previous_rotated_at": _SESSIONS.c.rotated_at,
    "earlier_rotated_at": _SESSIONS.c.previous_rotated_at,
    "burst_generation": case(
        (_SESSIONS.c.rotated_at > GRACE_START, _SESSIONS.c.burst_generation),
        else_=_SESSIONS.c.generation + 1,
    ),
    "refresh_expires_at": case(
        (_SESSIONS.c.expires_at < _CANDIDATE, _SESSIONS.c.expires_at), else_=_CANDIDATE
    ),
    "last_active_at": NOW,
}
ROTATION_RESULT = (_SESSIONS.c.generation, _SESSIONS.c.refresh_expires_at)
_ROTATE = (
    update(_SESSIONS)
    .where(_ALIVE)
    .values(**NEXT_GENERATION, ip=bindparam("ip_"))
    .returning(*ROTATION_RESULT)
)
_TOUCH = (
    update(_SESSIONS)
    .where(_ALIVE)
    .values(last_active_at=NOW, ip=bindparam("ip_"))
    .returning(_SESSIONS.c.generation)
)
# The audit row of a refresh, valued from the request's parameters.
_AUDIT_VALUES: dict[str, ColumnElement[Any]] = {
    "at": NOW,
    "event": bindparam("event", type_=String()),
    "user_id": bindparam("uid", type_=Integer()),
    "session_id": bindparam("sid", type_=String()),
    "ip": bindparam("ip_", type_=String()),
    "user_agent": bindparam("ua", type_=String()),
    "details": bindparam("details", type_=JSON()),
}
_AUDIT_INSERT = insert(_AUDIT).values(**_AUDIT_VALUES)
# The user behind an access token: its session alive, joined by primary key.
_USER_COLUMNS = (
    _USERS.c.id,
    _USERS.c.document_id,
    _USERS.c.username,
    _USERS.c.email,
    _USERS.c.provider,
    _USERS.c.password_hash,
    _USERS.c.confirmed,
    _USERS.c.blocked,
    _USERS.c.created_at,
    _USERS.c.updated_at,
    _USERS.c.published_at,
)
_SIGNED_IN_USER = (
    select(*_USER_COLUMNS)
    .join(_SESSIONS, _SESSIONS.c.user_id == _USERS.c.id)
    .where(
        _SESSIONS.c.id == bindparam("sid"),
        _SESSIONS.c.user_id == bindparam("uid"),
        _SESSIONS.c.revoked_at.is_(None),
        _SESSIONS.c.expires_at > NOW,
    )
)


# Login: the account an identifier names (email, stored lower-cased, or username), first by id as Strapi does.
_LOGIN_CANDIDATE = (
    select(*_USER_COLUMNS)
    .where(
        _USERS.c.provider == bindparam("provider"),
        or_(_USERS.c.email == bindparam("email"), _USERS.c.username == bindparam("username")),
    )
    .order_by(_USERS.c.id)
    .limit(1)
)
# Login: a session is started only if the account still has the hash that was verified and is not blocked,
# so a password change, reset or block that lands while the hash is being checked wins (PostgreSQL locks the
# account row for it; SQLite's writes are serialized anyway).
_SESSION_VALUES: dict[str, ColumnElement[Any]] = {
    "id": bindparam("sid", type_=String()),
    "user_id": _USERS.c.id,
    "generation": bindparam("gen", type_=Integer()),
    "rotated_at": bindparam("rotated_at", type_=UTCDateTime()),
    "refresh_expires_at": bindparam("refresh_expires_at", type_=UTCDateTime()),
    "expires_at": bindparam("expires_at", type_=UTCDateTime()),
    "created_at": NOW,
    "last_active_at": NOW,
    "ip": bindparam("ip_", type_=String()),
    "user_agent": bindparam("ua", type_=String()),
    "device_name": bindparam("device", type_=String()),
}
_START = (
    insert(_SESSIONS)
    .from_select(
        list(_SESSION_VALUES),
        select(*_SESSION_VALUES.values())
        .where(
            _USERS.c.id == bindparam("uid"),
            _USERS.c.password_hash == bindparam("verified"),
            _USERS.c.blocked.is_(False),
        )
        .with_for_update(),
    )
    .returning(_SESSIONS.c.id)
)


def _candidate_values(provider: str, identifier: str) -> dict[str, str]:
    """Emails are stored lower-cased; usernames compare as typed."""
    return {"provider": provider, "email": identifier.lower(), "username": identifier}


def _audited(change: Update | Insert, result: Sequence[str]) -> Select[Any]:
    """``change`` (an UPDATE or INSERT ... RETURNING) and the audit row of each row it wrote, as one statement."""
    changed = change.cte("changed")
    audit_row = select(*_AUDIT_VALUES.values()).select_from(changed)
    audit = insert(_AUDIT).from_select(list(_AUDIT_VALUES), audit_row).cte("audit")
    return select(*(changed.c[name] for name in result)).add_cte(audit)


class DatabaseUnavailable(Exception):
    """The database cannot be reached or is locked past the busy timeout: answer 503, retry later."""


@dataclass(frozen=True, slots=True)
class Compiled:
    """A statement in the driver's SQL, with its parameters in positional order."""

    sql: str
    names: tuple[str, ...]
    defaults: Mapping[str, Any]

    @classmethod
    def of(cls, statement: ClauseElement, dialect: Dialect) -> Compiled:
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        # Values fixed in the statement (the 1 of generation + 1); every other parameter must be given.
        fixed = {name: value for name, value in compiled.params.items() if value is not None}
        return cls(compiled.string, tuple(compiled.positiontup or ()), fixed)

    def args(self, values: Mapping[str, Any]) -> list[Any]:
        return [values[name] if name in values else self.defaults[name] for name in self.names]


@dataclass(frozen=True, slots=True)
class RefreshQuery:
    """A refresh's parameters, and what its audit row records."""

    session_id: str
    user_id: int
    generation: int
    now: datetime
    candidate_expiry: datetime  # now + REFRESH_TOKEN_EXPIRES_IN
    grace_start: datetime  # now - REFRESH_TOKEN_REUSE_GRACE
    ip: str | None
    user_agent: str | None

    def values(self, *, rotated: bool) -> dict[str, Any]:
        return {
            "sid": self.session_id,
            "uid": self.user_id,
            "gen": self.generation,
            "now_": self.now,
            "candidate": self.candidate_expiry,
            "grace_start": self.grace_start,
            "ip_": self.ip,
            "ua": self.user_agent,
            "event": Event.REFRESHED.value,
            "details": json.dumps({"rotated": rotated}),
        }


@dataclass(frozen=True, slots=True)
class NewSession:
    """A login's session row, and what its audit row records."""

    session_id: str
    user_id: int
    verified_hash: str  # the hash the password was checked against: the account must still have it
    generation: int
    now: datetime
    expires_at: datetime
    refresh_expires_at: datetime | None
    ip: str | None
    user_agent: str | None
    device_name: str | None

    def values(self) -> dict[str, Any]:
        with_refresh = self.refresh_expires_at is not None
        return {
            "sid": self.session_id,
            "uid": self.user_id,
            "verified": self.verified_hash,
            "gen": self.generation,
            "now_": self.now,
            "rotated_at": self.now if with_refresh else None,
            "refresh_expires_at": self.refresh_expires_at,
            "expires_at": self.expires_at,
            "ip_": self.ip,
            "ua": self.user_agent,
            "device": self.device_name,
            "event": Event.LOGIN_SUCCEEDED.value,
            "details": json.dumps({"refresh_token": with_refresh}),
        }


class HotPath(Protocol):
    async def rotate(self, query: RefreshQuery) -> tuple[int, datetime] | None:
        """Move a live session to its next generation and audit it; the new generation and its idle expiry,
        or None if the session is not alive at this generation."""

    async def touch(self, query: RefreshQuery) -> bool:
        """Rotation off: mark a live session active and audit it; False if it is not alive at this
        generation."""

    async def signed_in_user(
        self, session_id: str, user_id: int, now: datetime
    ) -> UserRecord | None:
        """The user whose live session this is."""

    async def login_candidate(self, provider: str, identifier: str) -> UserRecord | None:
        """The account a login identifier names: its email (compared lower-cased) or its username."""

    async def start_session(self, new: NewSession) -> bool:
        """Insert a login's session and its audit row, if the account still has the verified hash and is not
        blocked; False (nothing written) otherwise."""

    async def write_alone(self, statement: UpdateBase) -> int:
        """One write statement with its values bound in (a housekeeping batch), committed on its own beside the
        requests (SQLite: between their writes, under the write gate); how many rows it changed."""

    async def close(self) -> None: ...


def create_hot_path(
    settings: Settings, dialect: Dialect, write_gate: asyncio.Lock | None
) -> HotPath:
    if settings.is_sqlite:
        assert write_gate is not None
        return SqliteHotPath(settings, dialect, write_gate)
    return PostgresHotPath(settings, dialect)


# PostgreSQL ------------------------------------------------------------------------------------------------------

# SQLSTATE classes of an outage: connection exceptions, operator intervention (shutdown, restart), resources.
UNAVAILABLE_SQLSTATES = ("08", "53", "57P")


# A connection idle for longer than this is closed (a firewall or a proxy may have dropped it; the server keeps a
# process for it), as asyncpg's pool does by default.
IDLE_LIFETIME_S = 300.0
# Fail fast instead of hanging when the server is gone or stuck: the request gets a 503.
CONNECT_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 15.0


def _is_outage(exc: asyncpg.PostgresError) -> bool:
    return isinstance(exc, asyncpg.PostgresConnectionError) or str(
        getattr(exc, "sqlstate", "")
    ).startswith(UNAVAILABLE_SQLSTATES)


class FairPool:
    """Up to ``size`` asyncpg connections, opened when first needed and handed out in the order they were asked
    for.

    asyncpg's own pool is neither fair nor cheap here. A released connection goes to whoever asks next, and the
    woken waiter that lost it queues again at the back: under load some requests waited rounds behind newer ones
    (measured: p99 75 ms for a p50 of 20; in turn, 36 ms). And its checkout costs event-loop CPU (a proxy object, a
    shielded release task, an idle timer re-armed): 60 µs per query at 64 clients and 20 connections, against
    38 µs here (bench/pool_bench.py). Here a checkout is a turn of an ``asyncio.Semaphore`` (first come, first served;
    a release goes straight to the first waiter) and a list pop. Every statement is one autocommit statement that
    leaves no session state behind, so a connection goes back as it is. One that failed other than by a statement
    error (the server gone, a timeout, a cancelled call) is closed, and the next checkout opens a new one; the
    driver's failures that mean the database is unavailable are raised as ``DatabaseUnavailable`` (503). The
    most recently used connection goes out first; each release closes the longest-idle one if it has idled
    past IDLE_LIFETIME_S, so a pool sized for a peak shrinks back when the load falls.
    """

    def __init__(
        self,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        size: int,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connect = connect
        self._monotonic = monotonic
        self._turns = asyncio.Semaphore(size)
        self._idle: list[tuple[asyncpg.Connection, float]] = []  # with when each went idle
        self._busy: set[asyncpg.Connection] = set()
        self._closed = False

    async def run(self, call: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        async with self._turns:
            if self._closed:
                raise DatabaseUnavailable("the connection pool is closed")
            try:
                return await self._run(call)
            except asyncpg.PostgresError as exc:
                if _is_outage(exc):
                    raise DatabaseUnavailable(type(exc).__name__) from exc
                raise
            except (asyncpg.InterfaceError, asyncpg.InternalClientError) as exc:
                # InternalClientError: the driver lost track of a connection the server dropped ("cannot
                # switch to state 12; another operation is in progress", seen after pg_terminate_backend).
                raise DatabaseUnavailable(type(exc).__name__) from exc

    async def _run(self, call: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """``call`` on a checked-out connection, which goes back idle unless it failed other than by a statement
        error."""
        connection = await self._checkout()
        self._busy.add(connection)
        reusable = False
        try:
            result = await call(connection)
            reusable = True
            return result
        except asyncpg.PostgresError as exc:
            reusable = not _is_outage(exc)  # the server answered with a statement error: it works
            raise
        finally:
            self._busy.discard(connection)
            if reusable and not self._closed and not connection.is_closed():
                now = self._monotonic()
                self._idle.append((connection, now))
                oldest, since = self._idle[0]
                if now - since >= IDLE_LIFETIME_S:
                    del self._idle[0]
                    oldest.terminate()
            else:
                connection.terminate()

    async def _checkout(self) -> asyncpg.Connection:
        while self._idle:
            connection, since = self._idle.pop()
            if self._monotonic() - since < IDLE_LIFETIME_S and not connection.is_closed():
                return connection
            connection.terminate()
        return await self._connect()

    @property
    def open_connections(self) -> int:
        return len(self._idle) + len(self._busy)

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for connection, _ in idle:
            try:
                await connection.close(timeout=CONNECT_TIMEOUT_S)
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                connection.terminate()
        # The server has drained its requests before it closes the pool: nothing should still be busy.
        for connection in list(self._busy):
            connection.terminate()


class PostgresHotPath:
    def __init__(self, settings: Settings, dialect: Dialect) -> None:
        url = make_url(settings.database_url).set(drivername="postgresql")
        self._dsn = url.render_as_string(hide_password=False)
        self._dialect = dialect
        self._pool = FairPool(self._connect, settings.db_pool_size)
        # Housekeeping batches (``write_alone``): a connection of their own.
        self._housekeeping = FairPool(self._connect, 1)
        self._rotate = Compiled.of(_audited(_ROTATE, ["generation", "refresh_expires_at"]), dialect)
        self._touch = Compiled.of(_audited(_TOUCH, ["generation"]), dialect)
        self._user = Compiled.of(_SIGNED_IN_USER, dialect)
        self._candidate = Compiled.of(_LOGIN_CANDIDATE, dialect)
        self._start = Compiled.of(_audited(_START, ["id"]), dialect)

    async def _connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(
            self._dsn, timeout=CONNECT_TIMEOUT_S, command_timeout=COMMAND_TIMEOUT_S
        )

    async def _fetchrow(self, compiled: Compiled, values: Mapping[str, Any]) -> Any:
        args = compiled.args(values)
        return await self._pool.run(lambda connection: connection.fetchrow(compiled.sql, *args))

    async def rotate(self, query: RefreshQuery) -> tuple[int, datetime] | None:
        row = await self._fetchrow(self._rotate, query.values(rotated=True))
        return None if row is None else (row[0], row[1])

    async def touch(self, query: RefreshQuery) -> bool:
        return await self._fetchrow(self._touch, query.values(rotated=False)) is not None

    async def signed_in_user(
        self, session_id: str, user_id: int, now: datetime
    ) -> UserRecord | None:
        row = await self._fetchrow(self._user, {"sid": session_id, "uid": user_id, "now_": now})
        return None if row is None else UserRecord(*row)

    async def login_candidate(self, provider: str, identifier: str) -> UserRecord | None:
        row = await self._fetchrow(self._candidate, _candidate_values(provider, identifier))
        return None if row is None else UserRecord(*row)

    async def start_session(self, new: NewSession) -> bool:
        return await self._fetchrow(self._start, new.values()) is not None

    async def write_alone(self, statement: UpdateBase) -> int:
        """On a connection of its own, outside the requests' pool: PostgreSQL needs no turn-taking between
        writers, and a batch queued behind every waiting request only stretched the purge's pauses (they are
        proportional to how long a batch took). bench/README.md, 1M rows, 30 s under load: 377 rows/s purged
        through the pool, 929 on a connection of its own; refresh p99 163 and 204 ms, within this machine's
        run-to-run noise."""
        compiled = Compiled.of(statement, self._dialect)
        args = compiled.args({})
        status: str = await self._housekeeping.run(
            lambda connection: connection.execute(compiled.sql, *args)
        )
        return int(status.rsplit(" ", 1)[-1])  # "DELETE 100"

    async def close(self) -> None:
        await self._pool.close()
        await self._housekeeping.close()


# SQLite ----------------------------------------------------------------------------------------------------------

CHECKPOINT_EVERY = 1000
WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024
BUSY_POLL_S = 0.002
# Frames appended to the log between a round's two passive passes beyond which another process is writing heavily
# (this process commits a few frames per write, a few dozen writes in that time).
OTHER_WRITER_FRAMES = 1000


def sqlite_time(value: datetime) -> str:
    """SQLAlchemy's storage format for DateTime on SQLite, ``%Y-%m-%d %H:%M:%S.%f``, by isoformat (1.8 µs;
    strftime: 2.6)."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def sqlite_datetime(value: str) -> datetime:
    return datetime.fromisoformat(value).replace(tzinfo=UTC)


def _sqlite_values(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: sqlite_time(v) if isinstance(v, datetime) else v for k, v in values.items()}


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class SqliteHotPath:
    def __init__(self, settings: Settings, dialect: Dialect, write_gate: asyncio.Lock) -> None:
        database = make_url(settings.database_url).database
        if not database or database == ":memory:":
            raise ValueError("the SQLite hot path needs a database file")
        self._path = database
        self._busy_timeout_ms = settings.sqlite_busy_timeout_ms
        self._dialect = dialect
        self._gate = write_gate
        self._inline: sqlite3.Connection | None = None
        # Two threads: one waits out another process's lock, one checkpoints.
        self._threads = ThreadPoolExecutor(2, thread_name_prefix="refreshd-sqlite")
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._opened_lock = threading.Lock()
        self._changes = 0
        self.checkpoint_every = CHECKPOINT_EVERY
        self._checkpoint: asyncio.Task[None] | None = None
        self._rotate = Compiled.of(_ROTATE, dialect)
        self._touch = Compiled.of(_TOUCH, dialect)
        self._audit = Compiled.of(_AUDIT_INSERT, dialect)
        self._user = Compiled.of(_SIGNED_IN_USER, dialect)
        self._candidate = Compiled.of(_LOGIN_CANDIDATE, dialect)
        self._start = Compiled.of(_START, dialect)

    def _connect(self, busy_timeout_ms: int, *, autocheckpoint: bool) -> sqlite3.Connection:
        connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        try:
            connection.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA foreign_keys=ON")
            if not autocheckpoint:
                connection.execute("PRAGMA wal_autocheckpoint=0")
                # When this connection starts the log over, it also cuts a log file grown large (by another
                # process's batch job, say) back to this size.
                connection.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}")
        except BaseException:
            connection.close()  # a lock held elsewhere can fail the setup: the next call opens it again
            raise
        return connection

    def _thread_connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._connect(0, autocheckpoint=True)
            self._local.connection = connection
            with self._opened_lock:
                self._opened.append(connection)
        return connection

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        try:
            try:
                if self._inline is None:
                    self._inline = self._connect(0, autocheckpoint=False)
                return work(self._inline)
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
            # Another process holds the lock: wait for it in a thread, never on the event loop.
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._threads, self._wait_and_run, work)
        except sqlite3.OperationalError as exc:
            raise DatabaseUnavailable(str(exc)) from exc

    def _wait_and_run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Retry every BUSY_POLL_S until SQLITE_BUSY_TIMEOUT_MS has passed. SQLite's own busy handler backs off
        to 100 ms between tries, long enough for a batch job (``refreshd purge``) to commit and start its next
        batch each time: a waiting request could starve behind it. Polling catches the gap between batches."""
        connection = self._thread_connection()
        deadline = time.monotonic() + self._busy_timeout_ms / 1000
        while True:
            try:
                return work(connection)
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(BUSY_POLL_S)

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        async with self._gate:
            result = await self._run(_transaction(work))
        self._changed(1)
        return result

    def _changed(self, rows: int) -> None:
        """Count a commit's changes (a request's write counts one, a batch its rows: a 100-row delete appends
        about as many pages to the log as a hundred refreshes); a checkpoint round every ``checkpoint_every``."""
        before, self._changes = self._changes, self._changes + rows
        due = before // self.checkpoint_every < self._changes // self.checkpoint_every
        if due and self._checkpoint is None:
            self._checkpoint = asyncio.get_running_loop().create_task(self._checkpoint_round())
            self._checkpoint.add_done_callback(self._checkpointed)

    async def wait_for_checkpoint(self) -> None:
        """Until the checkpoint in progress, if any, is done."""
        if self._checkpoint is not None:
            await asyncio.wait([self._checkpoint])

    async def _checkpoint_round(self) -> None:
        loop = asyncio.get_running_loop()
        # Two passive passes: the second copies what was written during the first (15-40 ms of commits), so the
        # FULL pass, which holds the write gate, has only the few milliseconds of the second one left to copy.
        first = await loop.run_in_executor(self._threads, self._passive_checkpoint)
        second = await loop.run_in_executor(self._threads, self._passive_checkpoint)
        async with self._gate:
            # With busy_timeout=0, FULL falls back to PASSIVE when another process is writing: the next round
            # retries. Usually on the loop, like the writes it holds back: 1-5 ms of copying and two syncs
            # (measured), where a thread held the gate 3-20 ms, mostly waiting for the GIL and for the loop to see
            # it finish. But when another process wrote much of the log meanwhile (``refreshd purge``: ~600 frames
            # a batch), what is left to copy took 14-48 ms: in a thread then, so the loop keeps serving.
            if second - first > OTHER_WRITER_FRAMES:
                await loop.run_in_executor(
                    self._threads, lambda: _full_checkpoint(self._thread_connection())
                )
            elif self._inline is not None:
                _full_checkpoint(self._inline)

    def _passive_checkpoint(self) -> int:
        """Copy what can be copied without waiting; returns the frames in the log."""
        _busy, frames, _copied = (
            self._thread_connection().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        )
        return int(frames)

    def _checkpointed(self, done: asyncio.Task[None]) -> None:
        self._checkpoint = None
        if not done.cancelled():
            done.exception()  # retrieved: a failed checkpoint is retried at the next round

    def _change(self, compiled: Compiled, values: Mapping[str, Any]) -> Any:
        """``compiled`` (a statement RETURNING the row it wrote) and, if it wrote one, the audit row."""
        values = _sqlite_values(values)

        def work(connection: sqlite3.Connection) -> Any:
            row = connection.execute(compiled.sql, compiled.args(values)).fetchone()
            if row is not None:
                connection.execute(self._audit.sql, self._audit.args(values))
            return row

        return self._write(work)

    async def rotate(self, query: RefreshQuery) -> tuple[int, datetime] | None:
        row = await self._change(self._rotate, query.values(rotated=True))
        return None if row is None else (row[0], sqlite_datetime(row[1]))

    async def touch(self, query: RefreshQuery) -> bool:
        return await self._change(self._touch, query.values(rotated=False)) is not None

    async def signed_in_user(
        self, session_id: str, user_id: int, now: datetime
    ) -> UserRecord | None:
        args = self._user.args({"sid": session_id, "uid": user_id, "now_": sqlite_time(now)})
        return _sqlite_user(await self._run(lambda c: c.execute(self._user.sql, args).fetchone()))

    async def login_candidate(self, provider: str, identifier: str) -> UserRecord | None:
        args = self._candidate.args(_candidate_values(provider, identifier))
        return _sqlite_user(
            await self._run(lambda c: c.execute(self._candidate.sql, args).fetchone())
        )

    async def start_session(self, new: NewSession) -> bool:
        return await self._change(self._start, new.values()) is not None

    async def write_alone(self, statement: UpdateBase) -> int:
        """On the loop's own connection, like the requests' writes: a batch waits for no thread, shares their
        page cache (another connection's commit would empty it, doubling the next requests' reads), and takes
        the write gate in turn with them (measured: a 100-session delete holds it about 4 ms)."""
        compiled = Compiled.of(statement, self._dialect)
        args = compiled.args(_sqlite_values(compiled.defaults))
        # Not while a checkpoint round runs: its last pass, which holds the gate, then copies only what requests
        # wrote meanwhile (a few milliseconds on the loop) instead of a batch's hundreds of pages (30 ms).
        await self.wait_for_checkpoint()
        async with self._gate:
            rows: int = await self._run(
                _transaction(lambda connection: connection.execute(compiled.sql, args).rowcount)
            )
        self._changed(rows)
        return rows

    async def close(self) -> None:
        await self.wait_for_checkpoint()
        self._threads.shutdown(wait=True)
        for connection in self._opened:
            connection.close()
        if self._inline is not None:
            self._inline.close()
            self._inline = None


def _sqlite_user(row: Any) -> UserRecord | None:
    """A user row as SQLite returns it: 0/1 for booleans, SQLAlchemy's text format for times."""
    if row is None:
        return None
    (id_, document_id, username, email, provider, password_hash, confirmed, blocked) = row[:8]
    created, updated, published = (sqlite_datetime(v) for v in row[8:])
    return UserRecord(
        id_,
        document_id,
        username,
        email,
        provider,
        password_hash,
        bool(confirmed),
        bool(blocked),
        created,
        updated,
        published,
    )


def _full_checkpoint(connection: sqlite3.Connection) -> None:
    connection.execute("PRAGMA wal_checkpoint(FULL)").fetchall()


def _transaction(work: Callable[[sqlite3.Connection], T]) -> Callable[[sqlite3.Connection], T]:
    """``work`` inside BEGIN IMMEDIATE ... COMMIT, rolled back if it fails."""

    def run(connection: sqlite3.Connection) -> T:
        connection.execute("BEGIN IMMEDIATE")
        try:
            result = work(connection)
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
        return result

    return run
