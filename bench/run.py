"""The HTTP benchmark suite: one command runs every scenario on SQLite and PostgreSQL and records the results.

    uv run --frozen python bench/run.py [--quick] [--scenario NAME ...] [--backend sqlite|postgresql ...]

Starts the service as real uvicorn processes (production settings, access log off) on a fresh, migrated database,
seeds users, drives it over loopback with wrk (Lua scripts in bench/wrk/) and appends a markdown section to
``bench/results/<date>.md``. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from perf import RESULTS, ROOT, cpucap, database, hashlimit, report
from perf.database import BackendName
from perf.profile import markdown, summarize
from perf.scenarios import (
    CAP_REFUSED,
    OPTIONAL_SCENARIOS,
    SCENARIOS,
    Context,
    Options,
    Outcome,
    reference_cap,
)
from perf.server import server_command

BACKENDS: tuple[BackendName, ...] = ("sqlite", "postgresql")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="5 s measurements, 1 s warm-ups (default: 15 s and 3 s)",
    )
    parser.add_argument(
        "--scenario",
        action="append",
        choices=list(SCENARIOS),
        help="run only these (repeatable; default: all, in the order listed)",
    )
    parser.add_argument(
        "--backend", action="append", choices=BACKENDS, help="default: both, SQLite first"
    )
    parser.add_argument("--duration", type=float, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, help="seconds of unrecorded warm-up per load")
    parser.add_argument("--users", type=int, default=1000, help="seeded users (default 1000)")
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="sessions for million/purge (default 1,000,000)"
    )
    parser.add_argument("--hash-seconds", type=float, help="how long to measure the hash limit")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also run py-spy on the server during an extra (unrecorded) run of refresh, "
        "refresh-rotation and me; flame graphs go to bench/results/profile-*.svg",
    )
    parser.add_argument(
        "--output", type=Path, help="results file (default bench/results/<date>.md)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the work directory (logs, wrk output)"
    )
    parser.add_argument(
        "--cpu-limit",
        metavar="CORES|reference",
        type=_cpu_limit,
        help="run every server under a cgroup CPU quota, to emulate a slower machine (needs root): a number of "
        "cores, or 'reference' for the quota at which /healthz serves the issue's reference ~4,500 req/s. "
        f"Not with {', '.join(CAP_REFUSED)}. See bench/perf/cpucap.py",
    )
    return parser.parse_args(argv)


def _cpu_limit(value: str) -> float | str:
    if value == "reference":
        return value
    return cpucap.cores_argument(value)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.cpu_limit is None:
        return run(args, argv, None)
    refused = set(args.scenario or SCENARIOS) & set(CAP_REFUSED)
    if refused:
        print(
            f"--cpu-limit cannot emulate a slower machine for {', '.join(sorted(refused))}: "
            "choose other scenarios with --scenario",
            file=sys.stderr,
        )
        return 2
    try:
        with cpucap.cpu_cap(None if args.cpu_limit == "reference" else args.cpu_limit) as cap:
            return run(args, argv, cap)
    except cpucap.CapUnavailable as exc:
        print(exc, file=sys.stderr)
        return 2


def run(args: argparse.Namespace, argv: list[str], cap: cpucap.CpuCap | None) -> int:
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2
    duration = args.duration or (5.0 if args.quick else 15.0)
    warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 3.0)
    scenarios = args.scenario or [name for name in SCENARIOS if name not in OPTIONAL_SCENARIOS]
    backends: list[BackendName] = args.backend or list(BACKENDS)
    started = datetime.now(UTC)
    workdir = Path(tempfile.mkdtemp(prefix="refreshd-bench-"))
    hash_seconds = args.hash_seconds or (3.0 if args.quick else 5.0)
    options = Options(
        duration, warmup, args.users, args.rows, args.profile, workdir, hash_seconds, cap
    )
    outcome = Outcome()
    load_start = os.getloadavg()
    print(f"work directory {workdir}; scenarios {', '.join(scenarios)}", flush=True)

    limit = None
    if {"login", "refresh-under-login"} & set(scenarios):
        limit = hashlimit.measure(hash_seconds)
        print(
            f"hash limit: {limit.per_second:.1f} verifies/s ({limit.threads} threads)", flush=True
        )

    calibrated = False
    database_versions = []
    labels = []
    try:
        for name in backends:
            backend = database.create(name, workdir)
            labels.append(backend.label)
            database_versions.append(database.server_version(backend))
            database.seed_users(backend, args.users)
            ctx = Context(backend, database.Secrets.generate(), options, outcome)
            if cap is not None and args.cpu_limit == "reference" and not calibrated:
                reference_cap(ctx, cap)
                calibrated = True
            for scenario in scenarios:
                began = time.monotonic()
                print(f"[{backend.label}] {scenario} ...", flush=True)
                try:
                    SCENARIOS[scenario](ctx)
                except Exception:
                    ctx.note(f"scenario {scenario} failed:\n\n```\n{traceback.format_exc()}```")
                    traceback.print_exc()
                for row in outcome.rows:
                    if row.backend == backend.label and row.scenario == scenario:
                        w = row.wrk
                        print(
                            f"    {row.label}: {w.rps:,.0f} req/s, p50 {w.p50_ms:.1f} ms, "
                            f"p99 {w.p99_ms:.1f} ms, {w.errors} errors, RSS {row.rss_mb:.0f} MB",
                            flush=True,
                        )
                print(f"    ({time.monotonic() - began:.0f} s)", flush=True)
    finally:
        if "postgresql" in backends:
            asyncio.run(database.drop_postgres())

    limit_end = None
    if limit is not None:
        limit_end = hashlimit.measure(limit.seconds)
        print(f"hash limit again: {limit_end.per_second:.1f} verifies/s", flush=True)

    if args.profile:
        for raw in sorted(workdir.glob("profile-*.txt")):
            summary_path = RESULTS / f"{raw.stem}.md"
            summary_path.write_text(markdown(raw.stem, summarize(raw)))
            outcome.notes.append(f"profile summary: {summary_path.relative_to(ROOT)}")

    info = report.RunInfo(
        started=started,
        finished=datetime.now(UTC),
        command=" ".join(["uv run --frozen python bench/run.py", shlex.join(argv)]).strip(),
        quick=args.quick,
        duration=duration,
        warmup=warmup,
        bulk_rows=args.rows,
        users=args.users,
        load_start=load_start,
        load_end=os.getloadavg(),
        database_versions=database_versions,
        server_command="python " + " ".join(server_command("<port>", 1)[1:]),
        hash_limit=limit,
        hash_limit_end=limit_end,
        cpu_cap=cap.describe() if cap is not None and cap.cores is not None else None,
    )
    section = report.render(info, outcome, labels)
    output = args.output or RESULTS / f"{started:%Y-%m-%d}.md"
    output.parent.mkdir(parents=True, exist_ok=True)
    report.write(output, section)
    print(section)
    print(f"results appended to {output}")
    if args.keep:
        print(f"work directory kept: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
