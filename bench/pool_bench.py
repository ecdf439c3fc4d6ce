"""Event-loop CPU per query through the PostgreSQL hot path's pool (``FairPool``) against asyncpg's own pool behind
a fair semaphore (what the hot path used before), at the server's concurrency: 64 clients, 20 connections.

    uv run --frozen python bench/pool_bench.py [--dsn postgresql://postgres@127.0.0.1/test] [--rounds 4]

Prints a markdown table; bench/results/pool.md keeps the recorded runs. CPU is this process's own (user + system),
so PostgreSQL's share is left out: what is measured is what the server's event loop spends per query.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import asyncpg

from app.store.postgres import (
    COMMAND_TIMEOUT_S,
    CONNECT_TIMEOUT_S,
    IDLE_LIFETIME_S,
    FairPool,
)

CLIENTS = 64
CONNECTIONS = 20
QUERIES_PER_CLIENT = 300
QUERY = "SELECT $1::int"


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _nothing_to_reset(_connection: asyncpg.Connection) -> None:
    return None


async def _load(query: Callable[[], Awaitable[object]], per_client: int) -> tuple[float, float]:
    """(µs of CPU per query, queries/s) for CLIENTS clients each running ``per_client`` queries in turn."""

    async def client() -> None:
        for _ in range(per_client):
            await query()

    cpu, began = _cpu_seconds(), time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    total = CLIENTS * per_client
    return (_cpu_seconds() - cpu) / total * 1e6, total / (time.perf_counter() - began)


async def main(dsn: str, rounds: int) -> None:
    asyncpg_pool = await asyncpg.create_pool(
        dsn,
        min_size=0,
        max_size=CONNECTIONS,
        max_inactive_connection_lifetime=IDLE_LIFETIME_S,
        timeout=CONNECT_TIMEOUT_S,
        command_timeout=COMMAND_TIMEOUT_S,
        reset=_nothing_to_reset,
    )
    turns = asyncio.Semaphore(CONNECTIONS)
    fair = FairPool(
        lambda: asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_S, command_timeout=COMMAND_TIMEOUT_S),
        CONNECTIONS,
    )

    async def through_asyncpg() -> object:
        async with turns:
            return await asyncpg_pool.fetchrow(QUERY, 1)

    async def through_fair_pool() -> object:
        return await fair.run(lambda connection: connection.fetchrow(QUERY, 1))

    pools = {
        "asyncpg pool behind an asyncio.Semaphore (before)": through_asyncpg,
        "FairPool (app/store/postgres.py)": through_fair_pool,
    }
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in pools}
    try:
        for query in pools.values():  # connections opened, statements prepared
            await _load(query, 10)
        for _ in range(rounds):  # interleaved, so both see the machine's drift
            for name, query in pools.items():
                results[name].append(await _load(query, QUERIES_PER_CLIENT))
    finally:
        await asyncpg_pool.close()
        await fair.close()

    print(f"## Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n")
    print(
        f"{os.cpu_count()} CPUs, asyncpg {asyncpg.__version__}; {CLIENTS} clients, {CONNECTIONS} connections, "
        f"`{QUERY}`, {rounds} interleaved rounds of {CLIENTS * QUERIES_PER_CLIENT:,} queries each\n"
    )
    print("| pool | µs CPU per query (median; each round) | queries/s (median) |")
    print("|---|---|---:|")
    for name, runs in results.items():
        cpu = [c for c, _ in runs]
        rate = [r for _, r in runs]
        each = ", ".join(f"{c:.1f}" for c in cpu)
        print(
            f"| {name} | **{statistics.median(cpu):.1f}** ({each}) | {statistics.median(rate):,.0f} |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--dsn", default="postgresql://postgres@127.0.0.1/test")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    asyncio.run(main(args.dsn, args.rounds))
