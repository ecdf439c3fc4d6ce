"""The scenarios. Each starts its own server (so peak RSS and the log belong to it), measures with wrk and returns
rows for the report and checks against the issue's targets."""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from perf import RESULTS, ROOT, database, flood, hashlimit, load, wire
from perf.cpucap import CpuCap
from perf.database import Backend, Secrets
from perf.hashlimit import HashLimit
from perf.load import CpuWindow, WrkResult
from perf.server import LOCKED, Server, metric_sum, running, server_env
from perf.wire import WireLatency

# Strapi 5.54 + refresh-token plugin on this kind of box (the figures, rotation off, wrk -t2 -c64 -d15s).
STRAPI_REFRESH_RPS = 528.0
STRAPI_ME_RPS = 318.0
STRAPI_LOGIN_RPS = 11.0
# The targets: refresh and /users/me at least 3x Strapi, refresh with rotation at least 2x its figure.
TARGET_REFRESH_RPS = 1600.0
TARGET_ME_RPS = 950.0
TARGET_ROTATION_RPS = 2 * STRAPI_REFRESH_RPS
CONNECTIONS = 64
# The "bare FastAPI JSON endpoint on one uvicorn worker" on the machine where Strapi was measured: how fast
# a given machine is, next to the one the absolute targets were set on.
REFERENCE_BARE_RPS = 4500.0
LOGIN_CONNECTIONS = 16
THREADS = 2
TOKEN_SESSIONS = 256  # sessions per measured run: 4 per connection
REFRESH_PATH = "/api/auth/local/refresh"
ME_PATH = "/api/users/me"
LOGIN_PATH = "/api/auth/local"


@dataclass
class Options:
    duration: float
    warmup: float
    users: int
    bulk_rows: int
    profile: bool
    workdir: Path
    hash_seconds: float = 5.0  # each measurement of the hash limit
    cap: CpuCap | None = None  # every server runs in this cgroup (perf.cpucap)


@dataclass
class Row:
    backend: str
    scenario: str
    label: str
    connections: int
    wrk: WrkResult
    rss_mb: float
    idle_rss_mb: float
    server_cores: float
    machine_cores: float
    locked: int
    logged_errors: int
    code: str
    workers: int = 1
    wire: WireLatency | None = None  # the same requests timed on the loopback interface (perf.wire)


@dataclass
class Check:
    backend: str
    target: str
    measured: str
    ok: bool | None  # None: not measurable in this run


@dataclass
class Outcome:
    rows: list[Row] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)


@dataclass
class Context:
    backend: Backend
    keys: Secrets
    options: Options
    outcome: Outcome
    counter: int = 0

    @property
    def label(self) -> str:
        return self.backend.label

    def path(self, name: str) -> Path:
        self.counter += 1
        return self.options.workdir / f"{self.backend.name}-{self.counter:02d}-{name}"

    def tokens(self, count: int = TOKEN_SESSIONS) -> database.Tokens:
        refs = database.add_sessions(self.backend, count, self.options.users, "refreshd-bench")
        return database.mint(refs, self.keys)

    def files(self, name: str, values: list[str]) -> str:
        return str(load.write_thread_files(self.options.workdir / "tokens", name, values, THREADS))

    def check(self, target: str, measured: str, ok: bool | None) -> None:
        self.outcome.checks.append(Check(self.label, target, measured, ok))

    def note(self, text: str) -> None:
        self.outcome.notes.append(f"{self.label}: {text}")

    def serve(
        self,
        name: str,
        *,
        rotation: bool,
        workers: int = 1,
        env: dict[str, str] | None = None,
    ) -> AbstractContextManager[Server]:
        """A server for one scenario, on this backend, under the run's CPU cap if it has one."""
        return running(
            self.backend,
            self.keys,
            self.options.workdir,
            name,
            rotation=rotation,
            workers=workers,
            env=env,
            cap=self.options.cap,
        )


@dataclass(frozen=True)
class Load:
    """One wrk load: script, path, per-thread files and connection count."""

    script: str
    path: str
    args: list[str]
    connections: int = CONNECTIONS
    threads: int = THREADS


def _start(ctx: Context, server: Server, work: Load, seconds: float, name: str) -> load.WrkRun:
    return load.start(
        server.url + work.path,
        work.script,
        args=work.args,
        threads=work.threads,
        connections=work.connections,
        duration_s=seconds,
        output=ctx.path(f"{name}.wrk.txt"),
    )


def warm_up(ctx: Context, server: Server, work: Load) -> None:
    """A short unrecorded run first: connection pools, statement caches and the page cache fill up."""
    if ctx.options.warmup > 0:
        _start(ctx, server, work, ctx.options.warmup, "warmup").finish()


def latency_control(ctx: Context, server: Server, scenario: str, label: str, work: Load) -> Row:
    """The same load from one wrk thread instead of two: on this two-core machine, two wrk threads beside a
    saturated server add latency of their own (shown by /healthz, which does no work). Recorded beside the
    measurement, never instead of it: the targets are judged on the two-thread run."""
    return measure(ctx, server, scenario, f"{label}; control: wrk -t1", replace(work, threads=1))


def measure(
    ctx: Context,
    server: Server,
    scenario: str,
    label: str,
    work: Load,
    *,
    seconds: float | None = None,
    during: Callable[[], None] | None = None,
) -> Row:
    """Run ``work`` for the scenario's duration (or until ``during`` returns, then stop wrk) and record a row."""
    capture = None
    if wire.available():
        capture = wire.Capture(server.port, ctx.path(f"{scenario}.pcap"))
        capture.start()
    cpu_before = server.cpu_seconds()
    window = CpuWindow()
    if during is None:
        run = _start(ctx, server, work, seconds or ctx.options.duration, scenario)
        result = run.finish()
    else:
        run = _start(ctx, server, work, 3600, scenario)
        during()
        result = run.finish(interrupt=True)
    machine = window.stop()
    timed_on_wire = capture.stop() if capture is not None else None
    row = Row(
        backend=ctx.label,
        scenario=scenario,
        label=label,
        connections=work.connections,
        wrk=result,
        rss_mb=server.peak_rss_mb(),
        idle_rss_mb=server.idle_rss_mb,
        server_cores=(server.cpu_seconds() - cpu_before) / machine.seconds,
        machine_cores=machine.busy_cores,
        locked=server.log_count(LOCKED),
        logged_errors=server.log_errors(),
        code=server.code,
        workers=server.workers,
        wire=timed_on_wire,
    )
    ctx.outcome.rows.append(row)
    command = _generic(ctx, server, result.command)
    if during is not None:
        command += "  # stopped with SIGINT once the work it measures is done"
    ctx.outcome.commands.append(command)
    return row


def measure_together(
    ctx: Context, server: Server, scenario: str, loads: list[tuple[str, Load]]
) -> list[Row]:
    """Several wrk loads at once against one server, for the same duration."""
    cpu_before = server.cpu_seconds()
    window = CpuWindow()
    runs = [
        (label, work, _start(ctx, server, work, ctx.options.duration, scenario))
        for label, work in loads
    ]
    results = [(label, work, run.finish()) for label, work, run in runs]
    machine = window.stop()
    server_cores = (server.cpu_seconds() - cpu_before) / machine.seconds
    rows = []
    for label, work, result in results:
        row = Row(
            backend=ctx.label,
            scenario=scenario,
            label=label,
            connections=work.connections,
            wrk=result,
            rss_mb=server.peak_rss_mb(),
            idle_rss_mb=server.idle_rss_mb,
            server_cores=server_cores,
            machine_cores=machine.busy_cores,
            locked=server.log_count(LOCKED),
            logged_errors=server.log_errors(),
            code=server.code,
        )
        rows.append(row)
        ctx.outcome.rows.append(row)
        ctx.outcome.commands.append(_generic(ctx, server, result.command))
    return rows


def _generic(ctx: Context, server: Server, command: str) -> str:
    """A wrk command line without this run's port and work directory."""
    return command.replace(server.url, "http://127.0.0.1:$PORT").replace(
        str(ctx.options.workdir), "$WORK"
    )


def _refresh_load(ctx: Context, name: str, tokens: list[str] | None = None) -> Load:
    values = tokens if tokens is not None else ctx.tokens().refresh
    return Load("refresh.lua", REFRESH_PATH, [ctx.files(name, values)])


def _chain_load(ctx: Context, name: str) -> Load:
    return Load("chain.lua", REFRESH_PATH, [ctx.files(name, ctx.tokens().refresh)])


def _me_load(ctx: Context, name: str) -> Load:
    return Load("me.lua", ME_PATH, [ctx.files(name, ctx.tokens().access)])


def _login_load(ctx: Context, name: str) -> Load:
    identifiers = [database.username(i) for i in range(1, ctx.options.users + 1)]
    return Load(
        "login.lua",
        LOGIN_PATH,
        [ctx.files(name, identifiers), database.BENCH_PASSWORD],
        connections=LOGIN_CONNECTIONS,
    )


def _clean(row: Row) -> bool:
    return row.wrk.errors == 0 and row.wrk.n5xx == 0 and row.locked == 0


def _errors_text(row: Row) -> str:
    w = row.wrk
    return (
        f"{w.non_2xx} non-2xx ({w.n5xx} 5xx), {w.socket_errors + w.timeouts} socket errors/timeouts"
    )


def _throughput_check(ctx: Context, what: str, row: Row, floor: float, strapi: float) -> None:
    w = row.wrk
    ctx.check(
        f"{what} ≥ {floor:,.0f} req/s ({floor / strapi:.0f}x Strapi's {strapi:,.0f})",
        f"{w.rps:,.0f} req/s ({w.rps / strapi:.1f}x Strapi)",
        w.rps >= floor,
    )


def _latency_check(ctx: Context, what: str, row: Row, limit_ms: float) -> None:
    """Judged on wrk's figure; the same requests timed on the wire are a second line, never a replacement."""
    ctx.check(
        f"{what} p99 < {limit_ms:.0f} ms", f"{row.wrk.p99_ms:.1f} ms", row.wrk.p99_ms < limit_ms
    )
    if row.wire is not None and row.wire.requests:
        ctx.check(
            f"{what} p99 < {limit_ms:.0f} ms, timed on the wire (same run)",
            f"{row.wire.p99_ms:.1f} ms over {row.wire.requests:,} requests"
            + (f", {row.wire.dropped:,} packets dropped" if row.wire.dropped else ""),
            row.wire.p99_ms < limit_ms and not row.wire.dropped,
        )


def _error_check(ctx: Context, what: str, row: Row) -> None:
    ctx.check(f"{what}: zero errors", _errors_text(row), _clean(row))


# --- Scenarios ----------------------------------------------------------------------------------------------------


def generator(ctx: Context) -> None:
    """wrk against /healthz: the ceiling of load generator + server stack on this machine."""
    with ctx.serve("generator", rotation=False) as server:
        work = Load("healthz.lua", "/healthz", [])
        warm_up(ctx, server, work)
        row = measure(ctx, server, "generator", "GET /healthz (no database)", work)
        latency_control(ctx, server, "generator", "GET /healthz (no database)", work)
    ctx.note(
        f"load generator: wrk used {row.wrk.cores:.2f} cores for {row.wrk.rps:,.0f} req/s on /healthz "
        f"({row.wrk.cpu_seconds / max(row.wrk.requests, 1) * 1e6:.0f} µs CPU per request)"
    )
    ctx.note(
        f"machine speed: /healthz at {row.wrk.rps:,.0f} req/s is {row.wrk.rps / REFERENCE_BARE_RPS:.0%} of the "
        f"~{REFERENCE_BARE_RPS:,.0f} req/s the issue measured for a bare FastAPI endpoint on the machine its "
        "targets come from: absolute figures scale with it"
    )


# Several busy threads (the hashing pool) or processes would share one CPU quota instead of each getting a slower
# core: a cap does not emulate a slower machine for these (perf.cpucap).
CAP_REFUSED = ("login", "refresh-under-login", "two-workers", "registration-flood")
CALIBRATION_SECONDS = 5.0
CALIBRATION_TOLERANCE = 0.03
CALIBRATION_STEPS = 5


def reference_cap(ctx: Context, cap: CpuCap) -> float | None:
    """Set ``cap`` to the CPU quota at which /healthz serves the reference machine's ~4,500 req/s, and return it
    (None when this machine is no faster than the reference). One uncapped measurement gives a first guess, then
    capped ones correct it until one is within 3 % (at most five); the nearest is used."""
    work = Load("healthz.lua", "/healthz", [])
    steps: list[str] = []
    points: list[tuple[float, float]] = []

    def healthz(cores: float | None) -> tuple[float, float]:
        cap.limit(cores)
        with ctx.serve("calibration", rotation=False) as server:
            warm_up(ctx, server, work)
            cpu_before = server.cpu_seconds()
            window = CpuWindow()
            result = _start(ctx, server, work, CALIBRATION_SECONDS, "calibration").finish()
            used = (server.cpu_seconds() - cpu_before) / window.stop().seconds
        steps.append(f"{cap.describe()}: {result.rps:,.0f} req/s")
        return used, max(result.rps, 1.0)

    used, rps = healthz(None)
    cores = used * REFERENCE_BARE_RPS / rps
    if cores >= 1.0:
        cap.limit(None)
        ctx.note(
            f"reference speed: no CPU cap, this machine is no faster than the reference ({steps[0]})"
        )
        return None
    for _ in range(CALIBRATION_STEPS):
        points.append((cores, healthz(cores)[1]))
        if abs(points[-1][1] / REFERENCE_BARE_RPS - 1) <= CALIBRATION_TOLERANCE:
            break
        # By the ratio still missing: a line through two noisy points (±5 % here) overshot wildly.
        cores = min(cores * REFERENCE_BARE_RPS / points[-1][1], 1.0)
    cores = min(points, key=lambda p: abs(p[1] - REFERENCE_BARE_RPS))[0]
    cap.limit(cores)
    ctx.note(
        f"reference speed: servers capped at {cap.describe()}, the step nearest ~{REFERENCE_BARE_RPS:,.0f} "
        f"req/s on /healthz ({CALIBRATION_SECONDS:g} s each: {'; '.join(steps)}); the generator rows show the "
        "cap's result"
    )
    return cores


def _steady(
    ctx: Context,
    scenario: str,
    label: str,
    load_of: Callable[[Context, str], Load],
    *,
    what: str,
    target: float,
    strapi: float,
) -> None:
    """Warm-up, the measurement, its one-thread control and (with --profile) a profile, on one server; then
    throughput, latency and errors against the targets."""
    with ctx.serve(scenario, rotation=False) as server:
        warm_up(ctx, server, load_of(ctx, f"{scenario}-warm"))
        row = measure(ctx, server, scenario, label, load_of(ctx, scenario))
        latency_control(ctx, server, scenario, label, load_of(ctx, f"{scenario}-t1"))
        _profile(ctx, server, scenario, load_of)
    _throughput_check(ctx, what, row, target, strapi)
    _latency_check(ctx, what, row, 50)
    _error_check(ctx, what, row)


def refresh(ctx: Context) -> None:
    """POST /api/auth/local/refresh with rotation off (the plugin's default, Strapi's figure)."""
    _steady(
        ctx,
        "refresh",
        "refresh, rotation off",
        _refresh_load,
        what="refresh (rotation off)",
        target=TARGET_REFRESH_RPS,
        strapi=STRAPI_REFRESH_RPS,
    )


def refresh_rotation(ctx: Context) -> None:
    """Rotation on: 256 token chains, each presented once and followed by its successor (bench/wrk/chain.lua)."""
    with ctx.serve("rotation", rotation=True) as server:
        warm_up(ctx, server, _chain_load(ctx, "chain-warm"))
        before = server.metrics()
        row = measure(
            ctx,
            server,
            "refresh-rotation",
            "refresh, rotation on (chains)",
            _chain_load(ctx, "chain"),
        )
        after = server.metrics()
        _profile(ctx, server, "refresh-rotation", _chain_load)
    rotated = metric_sum(after, "refreshd_refreshes_total", outcome="rotated") - metric_sum(
        before, "refreshd_refreshes_total", outcome="rotated"
    )
    refused = sum(
        metric_sum(after, "refreshd_refreshes_total", outcome=o)
        - metric_sum(before, "refreshd_refreshes_total", outcome=o)
        for o in ("reused", "invalid", "expired", "revoked", "reissued_in_grace")
    )
    ctx.note(
        f"rotation chains: wrk counted {row.wrk.requests:,} answers; the server rotated {rotated:,.0f} tokens "
        f"(the difference is requests still in flight when wrk stopped) and saw {refused:,.0f} "
        f"reused/invalid/expired/re-issued tokens; {row.wrk.starved} requests found no live token, "
        f"{row.wrk.missing} 200s carried no successor"
    )
    _throughput_check(ctx, "refresh (rotation on)", row, TARGET_ROTATION_RPS, STRAPI_REFRESH_RPS)
    _error_check(ctx, "refresh (rotation on)", row)
    ctx.check(
        "rotation chains stay valid (no reuse verdicts, no starved chains)",
        f"{refused:,.0f} refused, {row.wrk.starved} starved",
        refused == 0 and row.wrk.starved == 0 and row.wrk.missing == 0,
    )


def me(ctx: Context) -> None:
    """GET /api/users/me with a bearer token (one session lookup joined to the user per request)."""
    _steady(
        ctx,
        "me",
        "GET /api/users/me",
        _me_load,
        what="/users/me",
        target=TARGET_ME_RPS,
        strapi=STRAPI_ME_RPS,
    )


def login(ctx: Context) -> None:
    """POST /api/auth/local (requestRefresh) at 16 connections: bound by argon2 verifies in the hashing pool. The
    hash limit it is judged against is measured right before and right after the measured load, with the server
    idle: this kind of machine's speed drifts by 10-15 % within a run (a limit taken once at the start of a run
    and once at its end differed by that much), and a login load is only comparable with the cores' speed at
    the time."""
    with ctx.serve("login", rotation=False) as server:
        warm_up(ctx, server, _login_load(ctx, "login-warm"))
        before = hashlimit.measure(ctx.options.hash_seconds)
        row = measure(ctx, server, "login", "login (16 connections)", _login_load(ctx, "login"))
        after = hashlimit.measure(ctx.options.hash_seconds)
        _profile(ctx, server, "login", _login_load)
    _error_check(ctx, "login", row)
    ctx.check(*login_check(row.wrk.rps, before, after))


def login_check(rps: float, before: HashLimit, after: HashLimit) -> tuple[str, str, bool]:
    """Login throughput against the higher of the two hash limits measured around it."""
    limit = max(before.per_second, after.per_second)
    return (
        f"login ≥ 85% of the hash limit, measured around the login load ({limit:.1f} verifies/s → "
        f"≥ {0.85 * limit:.1f} req/s)",
        f"{rps:.1f} req/s ({rps / limit:.0%} of the limit; {before.per_second:.1f} verifies/s before the "
        f"load, {after.per_second:.1f} after)",
        rps >= 0.85 * limit,
    )


def refresh_under_login(ctx: Context) -> None:
    """Refresh (rotation off) alone, then again while 16 connections of logins saturate the hashing pool."""
    with ctx.serve("mixed", rotation=False) as server:
        warm_up(ctx, server, _refresh_load(ctx, "mixed-warm"))
        alone = measure(
            ctx,
            server,
            "refresh-under-login",
            "refresh alone (baseline)",
            _refresh_load(ctx, "mixed-alone"),
        )
        together = measure_together(
            ctx,
            server,
            "refresh-under-login",
            [
                ("refresh, with login load", _refresh_load(ctx, "mixed-refresh")),
                ("login load (16 connections)", _login_load(ctx, "mixed-login")),
            ],
        )
    loaded = together[0]
    ratio = loaded.wrk.p99_ms / alone.wrk.p99_ms if alone.wrk.p99_ms else float("inf")
    ctx.check(
        "refresh p99 under login load ≤ 2x without",
        f"{loaded.wrk.p99_ms:.1f} ms vs {alone.wrk.p99_ms:.1f} ms ({ratio:.1f}x); "
        f"logins meanwhile {together[1].wrk.rps:.1f} req/s",
        ratio <= 2,
    )
    _error_check(ctx, "refresh under login load", loaded)


def million(ctx: Context) -> None:
    """Refresh on the small table, then with N more live sessions bulk-loaded, aimed at the whole table."""
    rows = ctx.options.bulk_rows
    marker = "refreshd-bench-million"
    with ctx.serve("million", rotation=False) as server:
        warm_up(ctx, server, _refresh_load(ctx, "million-warm"))
        empty = measure(
            ctx,
            server,
            "million",
            "refresh, small table (baseline)",
            _refresh_load(ctx, "million-empty"),
        )
        loaded = database.bulk_insert(
            ctx.backend,
            rows,
            ctx.options.users,
            expired=False,
            marker=marker,
            sample_every=max(1, rows // 20_000),
        )
        ctx.note(
            f"bulk-loaded {loaded.rows:,} live sessions in {loaded.seconds:.1f} s "
            f"({'COPY' if ctx.backend.name == 'postgresql' else 'executemany, 100k rows per transaction'}); "
            f"the measured load then refreshes {len(loaded.sample):,} of them, spread over the whole table"
        )
        sample = database.mint(loaded.sample, ctx.keys).refresh
        warm_up(ctx, server, _refresh_load(ctx, "million-warm2", sample))
        full = measure(
            ctx,
            server,
            "million",
            f"refresh, +{rows:,} sessions",
            _refresh_load(ctx, "million-full", sample),
        )
    deleted = database.delete_marked(ctx.backend, marker)
    ctx.note(f"removed the {deleted:,} bulk-loaded sessions again")
    ratio = full.wrk.rps / empty.wrk.rps if empty.wrk.rps else 0.0
    ctx.check(
        f"refresh with {rows:,} sessions ≥ 90% of the small-table figure",
        f"{full.wrk.rps:,.0f} vs {empty.wrk.rps:,.0f} req/s ({ratio:.0%})",
        ratio >= 0.9,
    )
    _error_check(ctx, f"refresh with {rows:,} sessions", full)


# The server's purge starts this long into the measured load (its interval counts from the server's start). The
# load runs for PURGE_WINDOW_DURATIONS scenario durations of the purge (under load the purge yields: a million rows
# take far longer than a run should), then stops; the rest is purged without load, timed.
PURGE_START_S = 3
PURGE_WINDOW_DURATIONS = 2
PURGE_TIMEOUT_S = 1800.0
POLL_S = 1.0


@dataclass
class PurgeWindow:
    """What a purge did in the measured window under load, and after it without load."""

    before: int = 0  # expired when it began
    under_load: int = 0  # deleted in the window
    seconds: float = 0.0  # from the purge's start until the load stopped and the rows were counted
    unloaded_seconds: float = 0.0  # the rest of the purge, after the load stopped

    def describe(self) -> str:
        rest = self.before - self.under_load
        unloaded = (
            f"{self.unloaded_seconds:.0f} s without load ({rest / self.unloaded_seconds:,.0f}/s, to within "
            f"{POLL_S:.0f} s)"
            if self.unloaded_seconds >= POLL_S
            else f"under {POLL_S:.0f} s without load"
        )
        return (
            f"it deleted {self.under_load:,} of {self.before:,} expired sessions in the {self.seconds:.0f} s "
            f"from its start to the end of the load ({self.under_load / (self.seconds or 1):,.0f}/s under load), then the "
            f"other {rest:,} in {unloaded}"
        )


def _expired_now(ctx: Context) -> int:
    return database.count_sessions(ctx.backend, expired_before=datetime.now(UTC))


def _measure_purge(
    ctx: Context, server: Server, scenario: str, label: str, before: int, begin: Callable[[], None]
) -> tuple[Row, PurgeWindow]:
    """Refresh load while a purge runs: ``begin`` returns once the purge has started (``before`` sessions were
    expired, counted before the load); the load then runs for PURGE_WINDOW_DURATIONS scenario durations and
    stops. The expired rows are counted only outside the measured load: a count reads every expired row's index
    entry (~100 ms of a core at 1M rows), and polled inside the load it competed with the requests measured."""
    seen = PurgeWindow(before=before)
    started = time.monotonic()

    def during() -> None:
        nonlocal started
        begin()
        started = time.monotonic()
        time.sleep(PURGE_WINDOW_DURATIONS * ctx.options.duration)

    row = measure(ctx, server, scenario, label, _refresh_load(ctx, scenario), during=during)
    # Includes what the purge deleted while wrk stopped (its window ends here, not when the load did).
    seen.under_load = before - _expired_now(ctx)
    seen.seconds = time.monotonic() - started
    return row, seen


def purge(ctx: Context) -> None:
    """Refresh while the server's own purge (every SESSION_PURGE_INTERVAL: how a deployment purges by default)
    deletes N expired sessions (batches of SESSION_PURGE_BATCH). The interval is set so that the first round
    starts PURGE_START_S into the measured load; the bench counts the expired rows before the load and after it,
    then until none are left."""
    rows = ctx.options.bulk_rows
    marker = "refreshd-bench-expired"
    loaded = database.bulk_insert(ctx.backend, rows, ctx.options.users, expired=True, marker=marker)
    ctx.note(f"bulk-loaded {loaded.rows:,} expired sessions in {loaded.seconds:.1f} s")
    interval = f"{math.ceil(ctx.options.warmup) + PURGE_START_S}s"
    before = _expired_now(ctx)  # nothing purges before the server's first round

    with ctx.serve(
        "purge",
        rotation=False,
        env={"SESSION_PURGE_INTERVAL": interval},
    ) as server:
        warm_up(ctx, server, _refresh_load(ctx, "purge-warm"))
        row, seen = _measure_purge(
            ctx,
            server,
            "purge",
            f"refresh during the server's purge of {rows:,} expired",
            before,
            lambda: time.sleep(PURGE_START_S),  # the server's first round starts about now
        )
        unloaded = time.monotonic()
        left = _expired_now(ctx)
        while left and time.monotonic() - unloaded < PURGE_TIMEOUT_S:
            time.sleep(POLL_S)
            left = _expired_now(ctx)
        seen.unloaded_seconds = time.monotonic() - unloaded
    ctx.outcome.commands.append(
        f"SESSION_PURGE_INTERVAL={interval}  # in the server's environment: its first purge starts "
        f"~{PURGE_START_S} s into the measured load"
    )
    ctx.note(f"the server's purge: {seen.describe()}; {left:,} left")
    _purge_checks(
        ctx,
        "refresh during the purge",
        row,
        (
            f"the purge of the {rows:,} expired sessions ran through the measurement and finished",
            f"{seen.before:,} expired when the measured load began, {seen.under_load:,} purged under it, "
            f"{left:,} left",
            seen.before >= rows and 0 < seen.under_load < seen.before and left == 0,
        ),
        left=left,
        marker=marker,
    )


def _purge_checks(
    ctx: Context, what: str, row: Row, finished: tuple[str, str, bool], *, left: int, marker: str
) -> None:
    """The checks both purge scenarios make (p99 < 100 ms, no errors, the purge's own verdict), then the sweep of
    whatever expired bench rows a purge left behind, or of the dead rows it made."""
    _latency_check(ctx, what, row, 100)
    _error_check(ctx, what, row)
    ctx.check(*finished)
    if left:
        database.delete_marked(ctx.backend, marker)  # settles too
    else:
        # The purged rows are dead rows now: reclaimed as autovacuum would.
        database.settle(ctx.backend)


_PURGED = re.compile(r"purged (\d+) sessions")


def purge_job(ctx: Context) -> None:
    """Refresh while ``refreshd purge``, a process of its own (a cron job), deletes N expired sessions (batches
    of SESSION_PURGE_BATCH), measured over the same window as ``purge``: the job starts PURGE_START_S into the
    measured load, which runs for PURGE_WINDOW_DURATIONS durations; the rest of the job runs without load, timed.
    Not in the default run: the target is judged on the server's own purge."""
    rows = ctx.options.bulk_rows
    marker = "refreshd-bench-expired"
    loaded = database.bulk_insert(ctx.backend, rows, ctx.options.users, expired=True, marker=marker)
    ctx.note(f"bulk-loaded {loaded.rows:,} expired sessions in {loaded.seconds:.1f} s")
    command = ["uv", "run", "--frozen", "refreshd", "purge"]
    job: list[subprocess.Popen[str]] = []
    before = _expired_now(ctx)

    with ctx.serve("purge-job", rotation=False) as server:
        warm_up(ctx, server, _refresh_load(ctx, "purge-job-warm"))

        def start_the_job() -> None:
            time.sleep(PURGE_START_S)  # load first, then the purge starts under it
            job.append(
                subprocess.Popen(
                    command,
                    cwd=ROOT,
                    env=server_env(ctx.backend, ctx.keys, rotation=False),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            )

        row, seen = _measure_purge(
            ctx,
            server,
            "purge-job",
            f"refresh during `refreshd purge` of {rows:,} expired",
            before,
            start_the_job,
        )
        unloaded = time.monotonic()
        output, _ = job[0].communicate(timeout=PURGE_TIMEOUT_S)
        seen.unloaded_seconds = time.monotonic() - unloaded
    match = _PURGED.search(output)
    purged = int(match.group(1)) if match else 0
    left = database.count_sessions(ctx.backend, marker=marker)
    ctx.outcome.commands.append(
        " ".join(command)
        + f"  # with the server's environment, started {PURGE_START_S} s into the measured load"
    )
    ctx.note(
        f"`refreshd purge` exited {job[0].returncode}: {output.strip()!r}; {seen.describe()}; "
        f"{left:,} expired bench sessions left"
    )
    _purge_checks(
        ctx,
        "refresh during `refreshd purge`",
        row,
        (
            f"`refreshd purge` removed the {rows:,} expired sessions",
            f"{purged:,} purged, {left:,} left",
            purged >= rows and left == 0,
        ),
        left=left,
        marker=marker,
    )


def two_workers(ctx: Context) -> None:
    """Refresh (rotation off) on one uvicorn worker, then on two (PostgreSQL only: SQLite is one process)."""
    if ctx.backend.name != "postgresql":
        ctx.note("two-workers runs on PostgreSQL only (SQLite serves one process)")
        return
    results = []
    for workers in (1, 2):
        name = f"workers{workers}"
        with ctx.serve(name, rotation=False, workers=workers) as server:
            warm_up(ctx, server, _refresh_load(ctx, f"{name}-warm"))
            results.append(
                measure(
                    ctx,
                    server,
                    "two-workers",
                    f"refresh, {workers} worker{'s' if workers > 1 else ''}",
                    _refresh_load(ctx, name),
                )
            )
    one, two = results
    ratio = two.wrk.rps / one.wrk.rps if one.wrk.rps else 0.0
    cores = os.cpu_count() or 1
    ctx.check(
        "two workers ≥ 1.5x one worker (refresh)",
        f"{two.wrk.rps:,.0f} vs {one.wrk.rps:,.0f} req/s ({ratio:.2f}x); the machine at "
        f"{two.machine_cores:.2f} of {cores} cores",
        ratio >= 1.5,
    )
    needed = cores / (1.5 * one.wrk.rps) * 1e6 if one.wrk.rps else 0.0
    ctx.note(
        f"two workers: 1.5x one worker ({1.5 * one.wrk.rps:,.0f} req/s) needs the machine's CPU per request "
        f"(server, database and wrk together) at most {needed:,.0f} µs with all {cores} cores busy; it was "
        f"{cpu_per_request_us(one):,.0f} µs with one worker and {cpu_per_request_us(two):,.0f} µs with two"
    )
    _error_check(ctx, "two workers", two)


def cpu_per_request_us(row: Row) -> float:
    """The whole machine's CPU per answered request while ``row`` was measured, in µs."""
    return row.machine_cores / row.wrk.rps * 1e6 if row.wrk.rps else 0.0


# --- Profiling ----------------------------------------------------------------------------------------------------


def _profile(
    ctx: Context, server: Server, name: str, load_of: Callable[[Context, str], Load]
) -> None:
    """With --profile: py-spy on the server during two more runs of the same load (never the measured one), one
    for the flame graph and one for the summary. Each run gets a load of its own: rotation chains are used up by
    the run that follows them, and a second pass over the same chains would profile only refusals."""
    if not ctx.options.profile:
        return
    py_spy = shutil.which("py-spy") or str(Path(server.command[0]).parent / "py-spy")
    if not Path(py_spy).exists():
        ctx.note("py-spy not found: no profile")
        return
    seconds = max(5, round(ctx.options.duration))
    stem = f"profile-{name}-{ctx.backend.name}"
    for fmt, target in (
        ("flamegraph", RESULTS / f"{stem}.svg"),
        ("raw", ctx.options.workdir / f"{stem}.txt"),
    ):
        spy = subprocess.Popen(
            [py_spy, "record", "--pid", str(server.process.pid), "--duration", str(seconds),
             "--rate", "200", "--format", fmt, "--threads", "-o", str(target)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        run = _start(
            ctx, server, load_of(ctx, f"{name}-profile-{fmt}"), seconds, f"{name}-profile-{fmt}"
        )
        run.finish()
        spy.wait(timeout=120)
    ctx.note(f"profile of {name}: {(RESULTS / f'{stem}.svg').relative_to(ROOT)}")
    ctx.outcome.commands.append(
        f"py-spy record --pid <server pid> --duration {seconds} --rate 200 --threads "
        f"-o {(RESULTS / f'{stem}.svg').relative_to(ROOT)}"
    )


SCENARIOS: dict[str, Callable[[Context], None]] = {
    "generator": generator,
    "refresh": refresh,
    "refresh-rotation": refresh_rotation,
    "me": me,
    "login": login,
    "refresh-under-login": refresh_under_login,
    "million": million,
    "purge": purge,
    "purge-job": purge_job,
    "two-workers": two_workers,
    "registration-flood": flood.registration_flood,
}
# Run only when named with --scenario.
OPTIONAL_SCENARIOS = {"purge-job"}
