"""PostgreSQL on asyncpg, through one pool per process.

Every statement outside a transaction is one autocommit round trip; a change and its audit row are one
data-modifying CTE, so a refresh is one round trip and the audit row exists exactly when the update happened.
Transactions (``transaction()``) hold one connection from BEGIN to COMMIT.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Literal, NoReturn, TypeVar

import asyncpg
from sqlalchemy import Insert, Select, Update, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.dml import UpdateBase

from app.errors import DatabaseUnavailable
from app.settings import Settings
from app.store.audit import AUDIT_VALUES
from app.store.compiled import Compiled, Row, StatementCache
from app.store.database import Conflict, Runner, Values
from app.store.tables import AUDIT

T = TypeVar("T")

# SQLSTATE classes of an outage: connection exceptions, operator intervention (shutdown, restart), resources.
UNAVAILABLE_SQLSTATES = ("08", "53", "57P")
# A connection idle for longer than this is closed (a firewall or a proxy may have dropped it; the server keeps a
# process for it), as asyncpg's pool does by default.
IDLE_LIFETIME_S = 300.0
# Fail fast instead of hanging when the server is gone or stuck: the request gets a 503.
CONNECT_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 15.0

Lane = Literal["requests", "housekeeping"]


def _is_outage(exc: asyncpg.PostgresError) -> bool:
    return isinstance(exc, asyncpg.PostgresConnectionError) or str(
        getattr(exc, "sqlstate", "")
    ).startswith(UNAVAILABLE_SQLSTATES)


def _raise_translated(exc: Exception) -> NoReturn:
    """Raise ``exc`` as the store's failure (``_translated``), or as it is."""
    translated = _translated(exc)
    if translated is exc:
        raise exc
    raise translated from exc


def _translated(exc: Exception) -> Exception:
    """The driver's failures as the store's: an outage is ``DatabaseUnavailable``, a unique index refusing a row
    is ``Conflict``; anything else as it is."""
    original = exc
    if isinstance(exc, asyncpg.PostgresError):
        if _is_outage(exc):
            return DatabaseUnavailable(type(exc).__name__)
        if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
            return Conflict(type(exc).__name__)
        return original
    if isinstance(exc, asyncpg.InterfaceError | asyncpg.InternalClientError | OSError):
        # InternalClientError: the driver lost track of a connection the server dropped ("cannot switch to
        # state 12; another operation is in progress", seen after pg_terminate_backend).
        return DatabaseUnavailable(type(exc).__name__)
    return exc


class FairPool:
    """Up to ``size`` asyncpg connections for requests, plus ``reserved`` for housekeeping, opened when first
    needed and handed out in the order they were asked for.

    asyncpg's own pool is neither fair nor cheap here: a released connection goes to whoever asks next, so under
    load some requests waited rounds behind newer ones, and its checkout costs event-loop CPU (figures:
    bench/results/pool.md). Here a checkout is a turn of an ``asyncio.Semaphore`` (first come, first served; a
    release goes straight to the first waiter) and a list pop. Housekeeping batches have a lane of their own, so a
    purge never queues behind every waiting request (a batch's pause is proportional to how long it took).

    A connection goes back as it is, after a statement or a finished transaction. One that failed other than by a
    statement error (the server gone, a timeout, a cancelled call) is closed, and the next checkout opens a new
    one; failures that mean the database is unavailable are raised as ``DatabaseUnavailable`` (503). The most
    recently used connection goes out first; each release closes the longest-idle one if it has idled past
    IDLE_LIFETIME_S, so a pool sized for a peak shrinks back when the load falls.
    """

    def __init__(
        self,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        size: int,
        *,
        reserved: int = 0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._connect = connect
        self._monotonic = monotonic
        self._turns: dict[Lane, asyncio.Semaphore] = {
            "requests": asyncio.Semaphore(size),
            "housekeeping": asyncio.Semaphore(reserved),
        }
        self._idle: list[tuple[asyncpg.Connection, float]] = []  # with when each went idle
        self._busy: set[asyncpg.Connection] = set()
        self._closed = False

    async def run(
        self, call: Callable[[asyncpg.Connection], Awaitable[T]], lane: Lane = "requests"
    ) -> T:
        """``call`` on a connection of ``lane``. Written out, not through ``connection()``: this runs for every
        statement, and a generator-based context manager costs the event loop more than the checkout itself."""
        async with self._turns[lane]:
            if self._closed:
                raise DatabaseUnavailable("the connection pool is closed")
            try:
                connection = await self._checkout()
                self._busy.add(connection)
                reusable = False
                try:
                    result = await call(connection)
                    reusable = True
                    return result
                except asyncpg.PostgresError as exc:
                    # The server answered with a statement error: the connection works.
                    reusable = not _is_outage(exc)
                    raise
                finally:
                    self._give_back(connection, reusable)
            except Exception as exc:
                _raise_translated(exc)

    @contextlib.asynccontextmanager
    async def connection(self, lane: Lane = "requests") -> AsyncIterator[asyncpg.Connection]:
        """A connection for a transaction: it goes back idle after the block unless the connection itself failed
        (an error the caller raised, which rolled its transaction back, leaves it as good as before)."""
        async with self._turns[lane]:
            if self._closed:
                raise DatabaseUnavailable("the connection pool is closed")
            try:
                connection = await self._checkout()
                self._busy.add(connection)
                reusable = False
                try:
                    yield connection
                    reusable = True
                except asyncpg.PostgresError as exc:
                    reusable = not _is_outage(exc)
                    raise
                except (asyncpg.InterfaceError, asyncpg.InternalClientError, OSError):
                    raise  # the connection itself failed (timeouts included)
                except Exception:
                    reusable = True
                    raise
                finally:
                    self._give_back(connection, reusable)
            except Exception as exc:
                _raise_translated(exc)

    def _give_back(self, connection: asyncpg.Connection, reusable: bool) -> None:
        self._busy.discard(connection)
        if reusable and not self._closed and not connection.is_closed():
            self._release(connection)
        else:
            connection.terminate()

    def _release(self, connection: asyncpg.Connection) -> None:
        now = self._monotonic()
        self._idle.append((connection, now))
        oldest, since = self._idle[0]
        if now - since >= IDLE_LIFETIME_S:
            del self._idle[0]
            oldest.terminate()

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


def audited(change: Update | Insert) -> Select[Any]:
    """``change`` (an UPDATE or INSERT ... RETURNING) and the audit row of each row it wrote, as one statement."""
    changed = change.cte("changed")
    audit_row = select(*AUDIT_VALUES.values()).select_from(changed)
    audit = insert(AUDIT).from_select(list(AUDIT_VALUES), audit_row).cte("audit")
    return select(*(changed.c[str(column.key)] for column in change.exported_columns)).add_cte(
        audit
    )


async def _set_codecs(connection: asyncpg.Connection) -> None:
    # As SQLAlchemy's asyncpg dialect does: JSON values arrive encoded by the column type, and are read back
    # decoded.
    await connection.set_type_codec(
        "json", encoder=lambda text: text, decoder=json.loads, schema="pg_catalog"
    )


class _TransactionRunner:
    """Statements on the connection that holds the caller's transaction; a failed one is translated at once, so
    the use case can tell a conflict from a bug (the transaction is then aborted: it must raise)."""

    def __init__(self, database: PostgresDatabase, connection: asyncpg.Connection) -> None:
        self._database = database
        self._connection = connection

    async def _do(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except asyncpg.PostgresError as exc:
            _raise_translated(exc)

    async def one(self, statement: ClauseElement, values: Values | None = None) -> Row | None:
        compiled = self._database.compile(statement)
        args = compiled.args(values or {})
        return compiled.row(await self._do(self._connection.fetchrow(compiled.sql, *args)))

    async def all(self, statement: ClauseElement, values: Values | None = None) -> list[Row]:
        compiled = self._database.compile(statement)
        rows = await self._do(self._connection.fetch(compiled.sql, *compiled.args(values or {})))
        return [row for raw in rows if (row := compiled.row(raw)) is not None]

    async def run(self, statement: ClauseElement, values: Values | None = None) -> int:
        compiled = self._database.compile(statement)
        args = compiled.args(values or {})
        return _rowcount(await self._do(self._connection.execute(compiled.sql, *args)))

    async def audited(self, change: Update | Insert, values: Values) -> Row | None:
        compiled = self._database.compile_audited(change)
        args = compiled.args(values)
        return compiled.row(await self._do(self._connection.fetchrow(compiled.sql, *args)))


def _rowcount(status: str) -> int:
    """From a command tag: "UPDATE 3", "DELETE 100", "INSERT 0 1"."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class PostgresDatabase:
    is_sqlite = False

    def __init__(self, settings: Settings) -> None:
        url = make_url(settings.database_url)
        self._dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.compile = StatementCache(url.get_dialect()())
        self._audited: dict[ClauseElement, Compiled] = {}
        # One pool: the requests' connections, and one more for housekeeping batches.
        self.pool = FairPool(self._connect, settings.db_pool_size, reserved=1)

    async def _connect(self) -> asyncpg.Connection:
        connection = await asyncpg.connect(
            self._dsn, timeout=CONNECT_TIMEOUT_S, command_timeout=COMMAND_TIMEOUT_S
        )
        try:
            await _set_codecs(connection)
        except BaseException:
            connection.terminate()
            raise
        return connection

    def prepare(self, statement: ClauseElement, *, audited: bool = False) -> None:
        if audited:
            assert isinstance(statement, Update | Insert)
            self.compile_audited(statement)
        else:
            self.compile(statement)

    def compile_audited(self, change: Update | Insert) -> Compiled:
        compiled = self._audited.get(change)
        if compiled is None:
            compiled = self._audited[change] = self.compile(audited(change))
        return compiled

    async def _fetchrow(self, compiled: Compiled, args: Sequence[Any]) -> Any:
        return await self.pool.run(lambda connection: connection.fetchrow(compiled.sql, *args))

    async def one(self, statement: ClauseElement, values: Values | None = None) -> Row | None:
        compiled = self.compile(statement)
        return compiled.row(await self._fetchrow(compiled, compiled.args(values or {})))

    async def all(self, statement: ClauseElement, values: Values | None = None) -> list[Row]:
        compiled = self.compile(statement)
        args = compiled.args(values or {})
        rows = await self.pool.run(lambda connection: connection.fetch(compiled.sql, *args))
        return [row for raw in rows if (row := compiled.row(raw)) is not None]

    async def run(self, statement: ClauseElement, values: Values | None = None) -> int:
        compiled = self.compile(statement)
        args = compiled.args(values or {})
        status: str = await self.pool.run(
            lambda connection: connection.execute(compiled.sql, *args)
        )
        return _rowcount(status)

    async def audited(self, change: Update | Insert, values: Values) -> Row | None:
        compiled = self.compile_audited(change)
        return compiled.row(await self._fetchrow(compiled, compiled.args(values)))

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Runner]:
        async with self.pool.connection() as connection, connection.transaction():
            yield _TransactionRunner(self, connection)

    async def write_alone(self, statement: UpdateBase, values: Values | None = None) -> int:
        compiled = self.compile(statement)
        args = compiled.args(values or {})
        status: str = await self.pool.run(
            lambda connection: connection.execute(compiled.sql, *args), lane="housekeeping"
        )
        return _rowcount(status)

    async def close(self) -> None:
        await self.pool.close()
