"""The registration-flood scenario: a real login's latency while one address floods register.

Each registration pays a full argon2 hash in the same pool as a login's verification. Before the cap on hashing
for anonymous routes (``HASH_ANONYMOUS_CONCURRENCY``, app/services/hashing.py), 40 registrations queued 40 hashes
in the pool ahead of any login arriving after them. The server runs with rate limits off (as every scenario here):
the per-address budget would refuse 30 of the 40 at once, and what is measured is the cap alone, the worst case.

Logins one at a time, first on the idle server, then during rounds of 40 concurrent registrations (fresh emails,
one connection each, from one address, sent by a process of their own): p99 during the flood against p99 idle, target at most 2x. The same on a
server running the code from before the cap (``BEFORE_CAP``, in a temporary git worktree: registrations hashed
in the logins' pool, at their priority) as the control.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from perf import database
from perf.server import Server, running

if TYPE_CHECKING:
    from perf.scenarios import Context

# The last commit before the hashing cap (and the register/taken reordering): the control.
BEFORE_CAP = "37bb0eb"
FLOOD = 40
ROUNDS = 10
IDLE_LOGINS = 200
WARM_LOGINS = 10
LOGIN_PATH = "/api/auth/local"
REGISTER_PATH = "/api/auth/local/register"


@dataclass(frozen=True)
class Latencies:
    samples_ms: list[float]

    @property
    def p99(self) -> float:
        """Nearest rank."""
        ordered = sorted(self.samples_ms)
        return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]

    @property
    def p50(self) -> float:
        ordered = sorted(self.samples_ms)
        return ordered[len(ordered) // 2]

    def describe(self) -> str:
        return f"p50 {self.p50:.0f} ms, p99 {self.p99:.0f} ms ({len(self.samples_ms)} logins)"


@dataclass(frozen=True)
class FloodRun:
    idle: Latencies
    flooded: Latencies
    registered: int
    flood_seconds: float  # mean time for one round of FLOOD registrations

    @property
    def ratio(self) -> float:
        return self.flooded.p99 / self.idle.p99


async def _login(client: httpx.AsyncClient) -> float:
    started = time.perf_counter()
    response = await client.post(
        LOGIN_PATH,
        json={"identifier": database.username(1), "password": database.BENCH_PASSWORD},
    )
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"login answered {response.status_code}: {response.text}")
    return elapsed


async def _flood(url: str, tag: str) -> list[int]:
    """FLOOD registrations at once, one connection each (a pool as large as the flood)."""
    limits = httpx.Limits(max_connections=FLOOD, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def register(n: int) -> int:
            body = {
                "username": f"flood-{tag}-{n}",
                "email": f"flood-{tag}-{n}@example.com",
                "password": database.BENCH_PASSWORD,
            }
            return (await client.post(REGISTER_PATH, json=body)).status_code

        return await asyncio.gather(*(register(n) for n in range(FLOOD)))


def flood_round(url: str, tag: str) -> list[int]:
    """One flood, in a process of its own: its client's work must not delay the measuring loop's logins."""
    return asyncio.run(_flood(url, tag))


async def _measure(url: str, flooder: ProcessPoolExecutor) -> FloodRun:
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        for _ in range(WARM_LOGINS):
            await _login(client)
        idle = [await _login(client) for _ in range(IDLE_LOGINS)]
        flooded: list[float] = []
        registered = 0
        round_seconds = []
        for _ in range(ROUNDS):
            started = time.perf_counter()
            flood = loop.run_in_executor(flooder, flood_round, url, secrets.token_hex(4))
            while not flood.done():
                flooded.append(await _login(client))
            statuses = await flood
            round_seconds.append(time.perf_counter() - started)
            registered += sum(1 for status in statuses if status == 200)
    return FloodRun(
        Latencies(idle), Latencies(flooded), registered, sum(round_seconds) / len(round_seconds)
    )


def registration_flood(ctx: Context) -> None:
    """A login's p99 during 40-registration floods from one address, against its idle p99 (target ≤ 2x); the
    control has the cap lifted above the flood."""
    # bench/ab.py's (bench/ is on bench/run.py's path); imported here, as ab.py imports the scenarios.
    from ab import worktree

    runs: dict[str, FloodRun] = {}
    with worktree(BEFORE_CAP) as before:

        def control() -> AbstractContextManager[Server]:
            # /healthz: this schema may be newer than the old code's head, which /readyz would refuse.
            return running(
                ctx.backend,
                ctx.keys,
                ctx.options.workdir,
                "flood-before",
                rotation=False,
                root=before,
                cap=ctx.options.cap,
                ready="/healthz",
            )

        for label, serve in (
            ("capped", lambda: ctx.serve("flood", rotation=False)),
            (f"control, before the cap ({BEFORE_CAP})", control),
        ):
            with serve() as server, ProcessPoolExecutor(max_workers=1) as flooder:
                flooder.submit(int).result()  # the process is up before anything is timed
                run = asyncio.run(_measure(server.url, flooder))
            runs[label] = run
            ctx.note(
                f"registration flood, {label}: idle {run.idle.describe()}; during {ROUNDS} floods of {FLOOD} "
                f"registrations {run.flooded.describe()}, {run.ratio:.2f}x; {run.registered} of "
                f"{ROUNDS * FLOOD} registered, {run.flood_seconds:.1f} s per flood"
            )
            ctx.outcome.commands.append(
                f"registration-flood ({label}): {ROUNDS} x {FLOOD} concurrent POST {REGISTER_PATH} from one "
                f"address, sequential POST {LOGIN_PATH} meanwhile (bench/perf/flood.py)"
            )
    capped, uncapped = runs.values()
    ctx.check(
        "login p99 during a 40-registration flood ≤ 2x its idle p99",
        f"{capped.flooded.p99:.0f} ms vs {capped.idle.p99:.0f} ms ({capped.ratio:.2f}x); "
        f"before the cap {uncapped.flooded.p99:.0f} ms vs {uncapped.idle.p99:.0f} ms ({uncapped.ratio:.2f}x)",
        capped.ratio <= 2 and capped.registered == ROUNDS * FLOOD,
    )
