"""SQLite on the standard library's driver, on the event loop.

Each operation is a few microseconds of work on a local file, cheaper than the thread hops a thread-backed driver
makes for every call while holding the write lock (bench/results/2026-11-28-hot-path.md). So statements run on the event loop itself, on
a connection that never waits (``busy_timeout=0``):

- **Writes** take the process's write gate, then ``BEGIN IMMEDIATE``: concurrent writers queue on the gate instead
  of failing with "database is locked". If another process holds the database lock (the CLI, a second worker), the
  operation is handed to a thread that retries every 2 ms for up to ``SQLITE_BUSY_TIMEOUT_MS``, so the event loop
  never blocks on a lock; past that it is ``DatabaseUnavailable`` (503).
- **Transactions** (``transaction()``) hold the gate from BEGIN to COMMIT; their statements run synchronously, so
  the gate is held only while they execute. A read that arrives while one is open (its block awaited something
  else) runs on a second connection, so it never sees uncommitted writes.
- **Checkpoints**: the loop's connection never checkpoints in its commits (``wal_autocheckpoint=0``). Every
  ``CHECKPOINT_EVERY`` changes (a request's write counts one, a housekeeping batch its rows) a thread checkpoints
  PASSIVE twice (blocks nobody, copies most of the log), then FULL runs while holding the write gate (copies the
  rest, so the next write starts the log over). Without that last step a sustained write load never lets a
  checkpoint catch up and the log grows without bound (bench/results/2026-11-28-hot-path.md, step 8).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from sqlalchemy import Insert, Update
from sqlalchemy.engine import make_url
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.dml import UpdateBase

from app.errors import DatabaseUnavailable
from app.settings import Settings
from app.store.audit import AUDIT_INSERT
from app.store.compiled import Compiled, Row, StatementCache
from app.store.database import Conflict, Runner, Values

T = TypeVar("T")

CHECKPOINT_EVERY = 1000
WAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024
BUSY_POLL_S = 0.002
# Frames appended to the log between a round's two passive passes beyond which another process is writing heavily
# (this process commits a few frames per write, a few dozen writes in that time).
OTHER_WRITER_FRAMES = 1000

Work = Callable[[sqlite3.Connection], T]


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _transaction(work: Work[T]) -> Work[T]:
    """``work`` inside BEGIN IMMEDIATE ... COMMIT, rolled back if it fails."""

    def run(connection: sqlite3.Connection) -> T:
        connection.execute("BEGIN IMMEDIATE")
        try:
            result = work(connection)
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        _commit(connection)
        return result

    return run


def _commit(connection: sqlite3.Connection) -> None:
    """COMMIT; if it fails (a full disk, say), roll back, so the connection never stays inside a transaction that
    every later BEGIN would trip over."""
    try:
        connection.execute("COMMIT")
    except sqlite3.Error:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


def _abandon(connection: sqlite3.Connection) -> None:
    """Close a connection nobody will use again, giving back any lock it holds."""
    with contextlib.suppress(sqlite3.Error):
        if connection.in_transaction:
            connection.execute("ROLLBACK")
    connection.close()


def _full_checkpoint(connection: sqlite3.Connection) -> None:
    connection.execute("PRAGMA wal_checkpoint(FULL)").fetchall()


class _Statements:
    """Statement helpers over a connection, shared by the database and its transactions."""

    def __init__(self, compile: StatementCache) -> None:
        self.compile = compile

    def one(self, c: sqlite3.Connection, compiled: Compiled, values: Values) -> Row | None:
        return compiled.row(c.execute(compiled.sql, compiled.args(values)).fetchone())

    def all(self, c: sqlite3.Connection, compiled: Compiled, values: Values) -> list[Row]:
        rows = c.execute(compiled.sql, compiled.args(values)).fetchall()
        return [row for raw in rows if (row := compiled.row(raw)) is not None]

    def run(self, c: sqlite3.Connection, compiled: Compiled, values: Values) -> int:
        return c.execute(compiled.sql, compiled.args(values)).rowcount

    def audited(self, c: sqlite3.Connection, change: Compiled, values: Values) -> Row | None:
        row = self.one(c, change, values)
        if row is not None:
            audit = self.compile(AUDIT_INSERT)
            c.execute(audit.sql, audit.args(values))
        return row


class _TransactionRunner:
    """The statements of a transaction that holds the write gate: run at once, on its connection."""

    def __init__(self, statements: _Statements, connection: sqlite3.Connection) -> None:
        self._s = statements
        self._connection = connection

    def _do(self, work: Callable[[], T]) -> T:
        try:
            return work()
        except sqlite3.IntegrityError as exc:
            raise Conflict(str(exc)) from exc
        except sqlite3.OperationalError as exc:
            raise DatabaseUnavailable(str(exc)) from exc

    async def one(self, statement: ClauseElement, values: Values | None = None) -> Row | None:
        compiled = self._s.compile(statement)
        return self._do(lambda: self._s.one(self._connection, compiled, values or {}))

    async def all(self, statement: ClauseElement, values: Values | None = None) -> list[Row]:
        compiled = self._s.compile(statement)
        return self._do(lambda: self._s.all(self._connection, compiled, values or {}))

    async def run(self, statement: ClauseElement, values: Values | None = None) -> int:
        compiled = self._s.compile(statement)
        return self._do(lambda: self._s.run(self._connection, compiled, values or {}))

    async def audited(self, change: Update | Insert, values: Values) -> Row | None:
        compiled = self._s.compile(change)
        return self._do(lambda: self._s.audited(self._connection, compiled, values))


class SqliteDatabase:
    is_sqlite = True

    def __init__(self, settings: Settings) -> None:
        url = make_url(settings.database_url)
        if not url.database or url.database == ":memory:":
            raise ValueError("refreshd needs an SQLite database file, not an in-memory database")
        self._path = url.database
        self._busy_timeout_ms = settings.sqlite_busy_timeout_ms
        self.compile = StatementCache(url.get_dialect()())
        self._s = _Statements(self.compile)
        # One writer at a time in this process; every write takes it (requests, transactions, batches, FULL).
        self.gate = asyncio.Lock()
        self._inline: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = (
            None  # reads while a transaction holds the loop's connection
        )
        self._spare: sqlite3.Connection | None = (
            None  # a transaction that had to wait for another process
        )
        self._in_transaction = False
        # Two threads: one waits out another process's lock, one checkpoints.
        self._threads = ThreadPoolExecutor(2, thread_name_prefix="refreshd-sqlite")
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._opened_lock = threading.Lock()
        self._changes = 0
        self.checkpoint_every = CHECKPOINT_EVERY
        self._checkpoint: asyncio.Task[None] | None = None

    def prepare(self, statement: ClauseElement, *, audited: bool = False) -> None:
        self.compile(statement)
        if audited:
            self.compile(AUDIT_INSERT)

    # Connections ---------------------------------------------------------------------------------------------

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

    def _loop_connection(self) -> sqlite3.Connection:
        if self._in_transaction:
            if self._reader is None:
                self._reader = self._connect(0, autocheckpoint=False)
            return self._reader
        if self._inline is None:
            self._inline = self._connect(0, autocheckpoint=False)
        return self._inline

    def _thread_connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._connect(0, autocheckpoint=True)
            self._local.connection = connection
            with self._opened_lock:
                self._opened.append(connection)
        return connection

    # Running -------------------------------------------------------------------------------------------------

    async def _run(self, work: Work[T]) -> T:
        try:
            try:
                return work(self._loop_connection())
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
            # Another process holds the lock: wait for it in a thread, never on the event loop.
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._threads, self._wait_and_run, work)
        except sqlite3.IntegrityError as exc:
            raise Conflict(str(exc)) from exc
        except sqlite3.OperationalError as exc:
            raise DatabaseUnavailable(str(exc)) from exc

    def _wait_and_run(self, work: Work[T], on: sqlite3.Connection | None = None) -> T:
        """Retry every BUSY_POLL_S until SQLITE_BUSY_TIMEOUT_MS has passed. SQLite's own busy handler backs off
        to 100 ms between tries, long enough for a batch job (``refreshd purge``) to commit and start its next
        batch each time: a waiting request could starve behind it. Polling catches the gap between batches."""
        connection = on or self._thread_connection()
        deadline = time.monotonic() + self._busy_timeout_ms / 1000
        while True:
            try:
                return work(connection)
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(BUSY_POLL_S)

    async def _write(self, work: Work[T]) -> T:
        async with self.gate:
            result = await self._run(_transaction(work))
        self._changed(1)
        return result

    async def one(self, statement: ClauseElement, values: Values | None = None) -> Row | None:
        compiled = self.compile(statement)
        args = values or {}
        if compiled.writes:
            return await self._write(lambda c: self._s.one(c, compiled, args))
        return await self._run(lambda c: self._s.one(c, compiled, args))

    async def all(self, statement: ClauseElement, values: Values | None = None) -> list[Row]:
        compiled = self.compile(statement)
        args = values or {}
        if compiled.writes:
            return await self._write(lambda c: self._s.all(c, compiled, args))
        return await self._run(lambda c: self._s.all(c, compiled, args))

    async def run(self, statement: ClauseElement, values: Values | None = None) -> int:
        compiled = self.compile(statement)
        return await self._write(lambda c: self._s.run(c, compiled, values or {}))

    async def audited(self, change: Update | Insert, values: Values) -> Row | None:
        compiled = self.compile(change)
        return await self._write(lambda c: self._s.audited(c, compiled, values))

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Runner]:
        async with self.gate:
            connection = await self._begin()
            before = connection.total_changes
            self._in_transaction = connection is self._inline
            try:
                yield _TransactionRunner(self._s, connection)
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            else:
                try:
                    _commit(connection)
                except sqlite3.Error as exc:
                    raise DatabaseUnavailable(str(exc)) from exc
            finally:
                self._in_transaction = False
        # Toward the next checkpoint round, as many changes as the transaction made (an import batch: thousands).
        self._changed(max(1, connection.total_changes - before))

    async def _begin(self) -> sqlite3.Connection:
        """BEGIN IMMEDIATE on the loop's connection; if another process holds the lock, on a spare connection
        in a thread that waits for it (the transaction then runs on that one)."""
        try:
            try:
                connection = self._loop_connection()
                connection.execute("BEGIN IMMEDIATE")
                return connection
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise
            if self._spare is None:
                self._spare = self._connect(0, autocheckpoint=False)
            spare = self._spare
            loop = asyncio.get_running_loop()
            waiting = loop.run_in_executor(
                self._threads, self._wait_and_run, lambda c: c.execute("BEGIN IMMEDIATE"), spare
            )
            try:
                await asyncio.shield(waiting)
            except asyncio.CancelledError:
                # The thread may still take the lock for nobody: that connection gives it back and is dropped.
                self._spare = None
                waiting.add_done_callback(lambda _: _abandon(spare))
                raise
            return spare
        except sqlite3.OperationalError as exc:
            raise DatabaseUnavailable(str(exc)) from exc

    async def write_alone(self, statement: UpdateBase, values: Values | None = None) -> int:
        """On the loop's own connection, like the requests' writes: a batch waits for no thread, shares their
        page cache (another connection's commit would empty it), and takes the write gate in turn with them."""
        compiled = self.compile(statement)
        args = compiled.args(values or {})
        # Not while a checkpoint round runs: its last pass, which holds the gate, then copies only what requests
        # wrote meanwhile instead of a batch's hundreds of pages.
        await self.wait_for_checkpoint()
        async with self.gate:
            rows: int = await self._run(
                _transaction(lambda connection: connection.execute(compiled.sql, args).rowcount)
            )
        self._changed(rows)
        return rows

    # Checkpoints ---------------------------------------------------------------------------------------------

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
        # Two passive passes: the second copies what was written during the first, so the FULL pass, which holds
        # the write gate, has only the few milliseconds of the second one left to copy.
        first = await loop.run_in_executor(self._threads, self._passive_checkpoint)
        second = await loop.run_in_executor(self._threads, self._passive_checkpoint)
        async with self.gate:
            # With busy_timeout=0, FULL falls back to PASSIVE when another process is writing: the next round
            # retries. Usually on the loop, like the writes it holds back (a thread held the gate longer, mostly
            # waiting for the GIL). But when another process wrote much of the log meanwhile (``refreshd purge``),
            # what is left to copy takes tens of milliseconds: in a thread then, so the loop keeps serving.
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

    async def close(self) -> None:
        await self.wait_for_checkpoint()
        self._threads.shutdown(wait=True)
        loop_connections = (self._inline, self._reader, self._spare)
        for each in [*self._opened, *loop_connections]:
            if each is not None:
                each.close()
        self._inline = self._reader = self._spare = None
