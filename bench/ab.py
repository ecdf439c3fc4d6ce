"""Two versions of the service side by side: the same wrk load, alternated between them round after round.

    uv run --frozen python bench/ab.py [--base REV] [--backend postgresql|sqlite]
                                       [--scenario refresh|refresh-rotation|me|login]
                                       [--rounds 8] [--seconds 4] [--cpu-limit CORES]

On this shared two-core machine a single run's throughput moves by ±10-20 % from one minute to the next, so a
change worth 5 % cannot be seen by comparing two runs of ``bench/run.py``. Here both servers run on the same
database with the same tokens, started afresh every round (two processes of the same code can differ by a few per
cent for their whole lives), and each round measures them four times, ABBA, then BAAB in the next round, so that
drift within a round and the advantage of a position in it fall equally on both. What is compared is each round's
pair: the report gives the median of B/A over the rounds, with the range; trust a difference whose rounds agree in
direction, or repeat the run (bench/results/ab.md has an A/A calibration and a change that measured 1.071, then
1.002). ``base`` is a git revision checked out in a temporary worktree (default HEAD); B is this working tree,
uncommitted changes included. The database is migrated by this working tree: compare revisions with the same
migrations. ``--cpu-limit`` runs both servers under a cgroup CPU quota (perf.cpucap), as on a slower machine; only
one of them is loaded at a time.

Scenarios: ``refresh`` (rotation off: the plugin's default), ``refresh-rotation`` (rotation on: 256 token chains
each presented once and followed by its successor, bench/wrk/chain.lua; every measurement gets chains of its own,
since a chain used up by one server would be a replay for the other), ``me`` (``/users/me``) and ``login`` (16
connections, bound by argon2).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from perf import ROOT, database, load
from perf.cpucap import CapUnavailable, cores_argument, cpu_cap
from perf.database import BackendName
from perf.scenarios import (
    CONNECTIONS,
    LOGIN_CONNECTIONS,
    LOGIN_PATH,
    ME_PATH,
    REFRESH_PATH,
    THREADS,
    TOKEN_SESSIONS,
    Load,
)
from perf.server import Server, running


@dataclass(frozen=True)
class Sample:
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float  # the server's CPU (user + system) per request
    errors: int


@contextlib.contextmanager
def worktree(revision: str) -> Iterator[Path]:
    """``revision`` checked out in a temporary directory, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="refreshd-ab-"))
    subprocess.run(
        ["git", "worktree", "add", "--detach", "--quiet", str(path), revision],
        cwd=ROOT,
        check=True,
    )
    try:
        yield path
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, check=False)
        shutil.rmtree(path, ignore_errors=True)


SCENARIOS = ("refresh", "refresh-rotation", "me", "login")


class Loads:
    """The loads of a scenario, on one seeded database: the same for every measurement, except the rotation
    chains, which a measurement uses up (each is minted afresh)."""

    def __init__(
        self, scenario: str, backend: database.Backend, keys: database.Secrets, users: int
    ) -> None:
        self.scenario = scenario
        self.backend = backend
        self.keys = keys
        self.users = users
        self.workdir = Path(tempfile.mkdtemp(prefix="refreshd-ab-loads-"))
        self._fixed: Load | None = None
        self._minted = 0

    def _files(self, name: str, values: list[str]) -> str:
        return str(load.write_thread_files(self.workdir, name, values, THREADS))

    def _tokens(self) -> database.Tokens:
        refs = database.add_sessions(self.backend, TOKEN_SESSIONS, self.users, "refreshd-bench")
        return database.mint(refs, self.keys)

    def next(self) -> Load:
        if self.scenario == "refresh-rotation":
            self._minted += 1
            name = f"chain-{self._minted}"
            return Load("chain.lua", REFRESH_PATH, [self._files(name, self._tokens().refresh)])
        if self._fixed is None:
            if self.scenario == "login":
                identifiers = [database.username(i) for i in range(1, self.users + 1)]
                self._fixed = Load(
                    "login.lua",
                    LOGIN_PATH,
                    [self._files("login", identifiers), database.BENCH_PASSWORD],
                    LOGIN_CONNECTIONS,
                )
            elif self.scenario == "me":
                self._fixed = Load("me.lua", ME_PATH, [self._files("me", self._tokens().access)])
            else:
                self._fixed = Load(
                    "refresh.lua", REFRESH_PATH, [self._files("refresh", self._tokens().refresh)]
                )
        return self._fixed


def measure(server: Server, work: Load, seconds: float, out: Path) -> Sample:
    cpu = server.cpu_seconds()
    run = load.start(
        server.url + work.path,
        work.script,
        args=work.args,
        threads=work.threads,
        connections=work.connections,
        duration_s=seconds,
        output=out,
    )
    result = run.finish()
    used = server.cpu_seconds() - cpu
    return Sample(
        rps=result.rps,
        p50_ms=result.p50_ms,
        p99_ms=result.p99_ms,
        cpu_us=used / result.requests * 1e6 if result.requests else 0.0,
        errors=result.errors,
    )


def _mean(samples: list[Sample]) -> Sample:
    return Sample(
        rps=statistics.fmean(s.rps for s in samples),
        p50_ms=statistics.fmean(s.p50_ms for s in samples),
        p99_ms=statistics.fmean(s.p99_ms for s in samples),
        cpu_us=statistics.fmean(s.cpu_us for s in samples),
        errors=sum(s.errors for s in samples),
    )


def _median_ratio(pairs: list[tuple[Sample, Sample]], field: str) -> str:
    ratios = [getattr(b, field) / getattr(a, field) for a, b in pairs if getattr(a, field)]
    return (
        f"{statistics.median(ratios):.3f} (range {min(ratios):.3f}-{max(ratios):.3f})"
        if ratios
        else "n/a"
    )


def report(args: argparse.Namespace, base: str, pairs: list[tuple[Sample, Sample]]) -> str:
    connections = LOGIN_CONNECTIONS if args.scenario == "login" else CONNECTIONS
    lines = [
        f"A/B `{base}` (A) vs the working tree (B), {args.backend} {args.scenario}, "
        f"{args.rounds} rounds of 2 x {args.seconds:g} s each, wrk -t{THREADS} -c{connections}"
        + (f", servers capped at {args.cpu_limit:g} core" if args.cpu_limit else ""),
        "",
        "| round | A req/s | B req/s | A p99 ms | B p99 ms | A CPU µs/req | B CPU µs/req | errors A/B |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for number, (a, b) in enumerate(pairs, 1):
        lines.append(
            f"| {number} | {a.rps:,.0f} | {b.rps:,.0f} | {a.p99_ms:.1f} | {b.p99_ms:.1f} "
            f"| {a.cpu_us:.0f} | {b.cpu_us:.0f} | {a.errors}/{b.errors} |"
        )
    lines += [
        "",
        f"- B/A req/s, median of rounds: {_median_ratio(pairs, 'rps')}",
        f"- B/A p99: {_median_ratio(pairs, 'p99_ms')}",
        f"- B/A server CPU per request: {_median_ratio(pairs, 'cpu_us')}",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--base", default="HEAD", help="git revision for A (default HEAD)")
    parser.add_argument("--backend", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--scenario", choices=SCENARIOS, default="refresh")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0, help="per measurement; 4 per round")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument(
        "--cpu-limit", type=cores_argument, metavar="CORES", help="cap both servers (perf.cpucap)"
    )
    args = parser.parse_args(argv)
    backend_name: BackendName = args.backend
    base = subprocess.run(
        ["git", "rev-parse", "--short", args.base],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    workdir = Path(tempfile.mkdtemp(prefix="refreshd-ab-work-"))
    keys = database.Secrets.generate()
    backend = database.create(backend_name, workdir)
    database.seed_users(backend, args.users)
    loads = Loads(args.scenario, backend, keys, args.users)
    rotation = args.scenario == "refresh-rotation"
    pairs: list[tuple[Sample, Sample]] = []
    with contextlib.ExitStack() as stack:
        try:
            cap = None if args.cpu_limit is None else stack.enter_context(cpu_cap(args.cpu_limit))
        except CapUnavailable as exc:
            print(exc, file=sys.stderr)
            return 2
        tree = stack.enter_context(worktree(base))
        for number in range(args.rounds):
            # Fresh processes every round: two processes of the same code can differ by several per cent for
            # the whole of their lives (memory layout, hash seeds), which would pass for a difference of code.
            with (
                # A may be a revision from before this tree's last migration (the database is migrated by
                # this tree): it is ready when it answers, not when /readyz finds its own schema head.
                running(
                    backend,
                    keys,
                    workdir,
                    "a",
                    rotation=rotation,
                    root=tree,
                    cap=cap,
                    ready="/healthz",
                ) as a,
                running(backend, keys, workdir, "b", rotation=rotation, cap=cap) as b,
            ):
                if number == 0:
                    print(f"A: {a.code} from {tree}; B: {b.code}", flush=True)
                for server in (a, b):  # warm-up, not recorded
                    measure(server, loads.next(), 2.0, workdir / "warm.txt")
                # ABBA, then BAAB: each server is measured first, second, third and last equally often, so
                # neither drift over a round nor a position's own advantage leans on one side.
                order = (a, b, b, a) if number % 2 == 0 else (b, a, a, b)
                measured: dict[int, list[Sample]] = {id(a): [], id(b): []}
                for server in order:
                    measured[id(server)].append(
                        measure(server, loads.next(), args.seconds, workdir / "wrk.txt")
                    )
                samples = {key: _mean(values) for key, values in measured.items()}
            pair = (samples[id(a)], samples[id(b)])
            pairs.append(pair)
            print(
                f"round {number + 1}: A {pair[0].rps:,.0f} req/s p99 {pair[0].p99_ms:.1f} ms "
                f"{pair[0].cpu_us:.0f} µs/req | B {pair[1].rps:,.0f} req/s p99 {pair[1].p99_ms:.1f} ms "
                f"{pair[1].cpu_us:.0f} µs/req",
                flush=True,
            )
    print()
    print(report(args, base, pairs))
    if backend_name == "postgresql":
        asyncio.run(database.drop_postgres())
    shutil.rmtree(workdir, ignore_errors=True)
    shutil.rmtree(loads.workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
