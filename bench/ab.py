"""Versions or configurations of the service side by side: the same wrk load, alternated between them round after
round.

    uv run --frozen python bench/ab.py [--base REV] [--backend postgresql|sqlite]
                                       [--scenario refresh|refresh-rotation|me|me-uncached|login]
                                       [--rounds 8] [--seconds 4] [--cpu-limit CORES]
    uv run --frozen python bench/ab.py --algorithms HS256,ES256,RS256 [--backend ...] [--scenario ...] ...

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

``--algorithms HS256,ES256,...`` compares configurations of this working tree instead of two revisions: one server
per algorithm (``JWT_ALGORITHM``; for ES256 and RS256 a ``JWT_SIGNING_KEYS_FILE`` of one key, generated once per run
with mode 0600), the first being A and every other compared to it. Access tokens are minted with each server's own
key; refresh tokens are HS256 in every mode, so those loads are shared. With N of them a round measures each twice,
in the order of the list rotated by the round's number and then backwards (ABBA / BAAB for two; ABCCBA, BCAACB,
CABBAC for three): every round, each has the same mean position, and over N rounds each takes every position
equally often. The rounds default to the smallest multiple of N from 8.

Scenarios: ``refresh`` (rotation off: the plugin's default), ``refresh-rotation`` (rotation on: 256 token chains
each presented once and followed by its successor, bench/wrk/chain.lua; every measurement gets chains of its own,
since a chain used up by one server would be a replay for the other), ``me`` (``/users/me`` with the 256 sessions'
access tokens, which the server remembers once verified: app/security/tokens.py ``VERIFIED_CACHE_SIZE``),
``me-uncached`` (the same sessions with 32 distinct access tokens each, 8,192 in all, cycled: more than the server
remembers, so every request pays a full signature check) and ``login`` (16 connections, bound by argon2).
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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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

from app.security.keys import ASYMMETRIC_ALGORITHMS, HMAC_ALGORITHMS
from app.security.tokens import VERIFIED_CACHE_SIZE, SigningKeys
from app.services.key_rotation import KeyFile, RotationPolicy

# me-uncached: distinct access tokens per session. Two wrk threads each cycle through half of them, so between two
# uses of a token the server has verified every other one: 8,192 > VERIFIED_CACHE_SIZE, none is still remembered.
UNCACHED_PER_SESSION = 32
assert TOKEN_SESSIONS * UNCACHED_PER_SESSION >= 2 * VERIFIED_CACHE_SIZE


@dataclass(frozen=True)
class Sample:
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float  # the server's CPU (user + system) per request
    errors: int


@dataclass(frozen=True)
class Variant:
    """One side of the comparison: the code a server runs, the settings it gets, the keys of its access tokens."""

    label: str
    root: Path = ROOT
    env: Mapping[str, str] = field(default_factory=dict)
    access: SigningKeys | None = None  # None: HS256 with the run's JWT_SECRET
    # A revision from before this tree's last migration (the database is migrated by this tree) is ready when it
    # answers, not when /readyz finds its own schema head.
    ready: str = "/readyz"


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


def algorithm_variant(algorithm: str, workdir: Path) -> Variant:
    """A server of this working tree with ``JWT_ALGORITHM=algorithm``; for ES256 and RS256 with a key file of one
    new key, written as ``refreshd keys generate`` writes it (mode 0600)."""
    if algorithm in HMAC_ALGORITHMS:
        # Access tokens minted with the run's JWT_SECRET under this algorithm; refresh tokens stay HS256 (which an
        # HS384 or HS512 server would otherwise use for them too), so the refresh loads are every variant's.
        env = {"JWT_ALGORITHM": algorithm}
        if algorithm != database.ALGORITHM:
            env["REFRESH_JWT_ALGORITHM"] = database.ALGORITHM
        return Variant(algorithm, env=env, access=None)
    path = workdir / f"signing-keys-{algorithm.lower()}.json"
    policy = RotationPolicy(database.ACCESS_TTL, timedelta(seconds=10), timedelta(minutes=5))
    key_file = KeyFile(path, policy)
    key_file.generate(algorithm, datetime.now(UTC), "k1")
    return Variant(
        algorithm,
        env={"JWT_ALGORITHM": algorithm, "JWT_SIGNING_KEYS_FILE": str(path)},
        access=SigningKeys.key_set(key_file.read()),
    )


def algorithms_argument(value: str) -> list[str]:
    names = [name.strip().upper() for name in value.split(",") if name.strip()]
    known = HMAC_ALGORITHMS + ASYMMETRIC_ALGORITHMS
    unknown = [name for name in names if name not in known]
    if unknown or len(names) < 2 or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(
            f"two or more distinct algorithms of {', '.join(known)}, comma-separated"
        )
    return names


SCENARIOS = ("refresh", "refresh-rotation", "me", "me-uncached", "login")


class Loads:
    """The loads of a scenario, on one seeded database: the same for every measurement, except the rotation
    chains, which a measurement uses up (each is minted afresh). ``/users/me`` loads are per variant (its access
    tokens are signed with its key), for the same sessions; the others are shared."""

    def __init__(
        self, scenario: str, backend: database.Backend, keys: database.Secrets, users: int
    ) -> None:
        self.scenario = scenario
        self.backend = backend
        self.keys = keys
        self.users = users
        self.workdir = Path(tempfile.mkdtemp(prefix="refreshd-ab-loads-"))
        self._refs: list[database.SessionRef] | None = None
        self._fixed: dict[str, Load] = {}
        self._minted = 0

    def _files(self, name: str, values: list[str]) -> str:
        return str(load.write_thread_files(self.workdir, name, values, THREADS))

    def _sessions(self) -> list[database.SessionRef]:
        return database.add_sessions(self.backend, TOKEN_SESSIONS, self.users, "refreshd-bench")

    def _fixed_refs(self) -> list[database.SessionRef]:
        if self._refs is None:
            self._refs = self._sessions()
        return self._refs

    def _access(self, variant: Variant) -> Load:
        access = variant.access or SigningKeys.hmac(
            self.keys.access, variant.env.get("JWT_ALGORITHM", database.ALGORITHM)
        )
        per_session = UNCACHED_PER_SESSION if self.scenario == "me-uncached" else 1
        tokens = database.access_tokens(self._fixed_refs(), access, per_session=per_session)
        return Load("me.lua", ME_PATH, [self._files(f"me-{variant.label}", tokens)])

    def next(self, variant: Variant) -> Load:
        if self.scenario == "refresh-rotation":
            self._minted += 1
            chains = database.mint(self._sessions(), self.keys).refresh
            return Load("chain.lua", REFRESH_PATH, [self._files(f"chain-{self._minted}", chains)])
        key = variant.label if self.scenario in ("me", "me-uncached") else ""
        if key not in self._fixed:
            if self.scenario == "login":
                identifiers = [database.username(i) for i in range(1, self.users + 1)]
                self._fixed[key] = Load(
                    "login.lua",
                    LOGIN_PATH,
                    [self._files("login", identifiers), database.BENCH_PASSWORD],
                    LOGIN_CONNECTIONS,
                )
            elif key:
                self._fixed[key] = self._access(variant)
            else:
                refresh = database.mint(self._fixed_refs(), self.keys).refresh
                self._fixed[key] = Load(
                    "refresh.lua", REFRESH_PATH, [self._files("refresh", refresh)]
                )
        return self._fixed[key]


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


def round_order(count: int, number: int) -> list[int]:
    """The variants' indices in the order round ``number`` (from 0) measures them: the list rotated by the round's
    number, then backwards. Two: ABBA, BAAB. Three: ABCCBA, BCAACB, CABBAC."""
    forward = [(number + i) % count for i in range(count)]
    return forward + forward[::-1]


def _mean(samples: list[Sample]) -> Sample:
    return Sample(
        rps=statistics.fmean(s.rps for s in samples),
        p50_ms=statistics.fmean(s.p50_ms for s in samples),
        p99_ms=statistics.fmean(s.p99_ms for s in samples),
        cpu_us=statistics.fmean(s.cpu_us for s in samples),
        errors=sum(s.errors for s in samples),
    )


def _median_ratio(rounds: list[list[Sample]], field: str, index: int = 1) -> str:
    """The median over the rounds of variant ``index``'s ``field`` over the first variant's, with the range."""
    ratios = [
        getattr(samples[index], field) / getattr(samples[0], field)
        for samples in rounds
        if getattr(samples[0], field)
    ]
    return (
        f"{statistics.median(ratios):.3f} (range {min(ratios):.3f}-{max(ratios):.3f})"
        if ratios
        else "n/a"
    )


def report(
    args: argparse.Namespace, title: str, labels: list[str], rounds: list[list[Sample]]
) -> str:
    connections = LOGIN_CONNECTIONS if args.scenario == "login" else CONNECTIONS
    per_round = f"2 x {args.seconds:g} s each"
    columns = [
        *(f"{label} req/s" for label in labels),
        *(f"{label} p99 ms" for label in labels),
        *(f"{label} CPU µs/req" for label in labels),
        f"errors {'/'.join(labels)}",
    ]
    lines = [
        f"{title}, {args.backend} {args.scenario}, "
        f"{args.rounds} rounds of {per_round}, wrk -t{THREADS} -c{connections}"
        + (f", servers capped at {args.cpu_limit:g} core" if args.cpu_limit else ""),
        "",
        "| round | " + " | ".join(columns) + " |",
        "|---:|" + "---:|" * len(columns),
    ]
    for number, samples in enumerate(rounds, 1):
        cells = [
            *(f"{s.rps:,.0f}" for s in samples),
            *(f"{s.p99_ms:.1f}" for s in samples),
            *(f"{s.cpu_us:.0f}" for s in samples),
            "/".join(str(s.errors) for s in samples),
        ]
        lines.append(f"| {number} | " + " | ".join(cells) + " |")
    lines.append("")
    for index, label in enumerate(labels[1:], 1):
        ratio = f"{label}/{labels[0]}"
        lines += [
            f"- {ratio} req/s, median of rounds: {_median_ratio(rounds, 'rps', index)}",
            f"- {ratio} p99: {_median_ratio(rounds, 'p99_ms', index)}",
            f"- {ratio} server CPU per request: {_median_ratio(rounds, 'cpu_us', index)}",
        ]
    return "\n".join(lines)


def _describe(labels: list[str], samples: list[Sample]) -> str:
    return " | ".join(
        f"{label} {s.rps:,.0f} req/s p99 {s.p99_ms:.1f} ms {s.cpu_us:.0f} µs/req"
        for label, s in zip(labels, samples, strict=True)
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--base", default="HEAD", help="git revision for A (default HEAD)")
    parser.add_argument(
        "--algorithms",
        type=algorithms_argument,
        metavar="ALG,ALG[,...]",
        help="compare JWT_ALGORITHM settings of the working tree instead (the first is A); --base unused",
    )
    parser.add_argument("--backend", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--scenario", choices=SCENARIOS, default="refresh")
    parser.add_argument(
        "--rounds",
        type=int,
        help="default 8; with --algorithms the smallest multiple of their number from 8",
    )
    parser.add_argument("--seconds", type=float, default=4.0, help="per measurement; 4 per round")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument(
        "--cpu-limit", type=cores_argument, metavar="CORES", help="cap every server (perf.cpucap)"
    )
    args = parser.parse_args(argv)
    backend_name: BackendName = args.backend
    workdir = Path(tempfile.mkdtemp(prefix="refreshd-ab-work-"))
    keys = database.Secrets.generate()
    variants: list[Variant]
    base = ""
    if args.algorithms:
        variants = [algorithm_variant(name, workdir) for name in args.algorithms]
    else:
        base = subprocess.run(
            ["git", "rev-parse", "--short", args.base],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        variants = [Variant("A", ready="/healthz"), Variant("B")]
    count = len(variants)
    if args.rounds is None:
        args.rounds = 8 if count == 2 else -(-8 // count) * count
    labels = [variant.label for variant in variants]
    backend = database.create(backend_name, workdir)
    database.seed_users(backend, args.users)
    loads = Loads(args.scenario, backend, keys, args.users)
    rotation = args.scenario == "refresh-rotation"
    rounds: list[list[Sample]] = []
    codes: list[
        str
    ] = []  # the code each round's servers ran: others may commit while a run goes on
    with contextlib.ExitStack() as stack:
        try:
            cap = None if args.cpu_limit is None else stack.enter_context(cpu_cap(args.cpu_limit))
        except CapUnavailable as exc:
            print(exc, file=sys.stderr)
            return 2
        if base:
            tree = stack.enter_context(worktree(base))
            variants[0] = Variant("A", root=tree, ready="/healthz")
        for number in range(args.rounds):
            # Fresh processes every round: two processes of the same code can differ by several per cent for
            # the whole of their lives (memory layout, hash seeds), which would pass for a difference of code.
            with contextlib.ExitStack() as servers:
                started = [
                    servers.enter_context(
                        running(
                            backend,
                            keys,
                            workdir,
                            variant.label.lower(),
                            rotation=rotation,
                            env=variant.env,
                            root=variant.root,
                            cap=cap,
                            ready=variant.ready,
                        )
                    )
                    for variant in variants
                ]
                codes += [
                    code for code in dict.fromkeys(s.code for s in started) if code not in codes
                ]
                if number == 0:
                    print(
                        "; ".join(
                            f"{v.label}: {s.code}" + (f" from {v.root}" if v.root != ROOT else "")
                            for v, s in zip(variants, started, strict=True)
                        ),
                        flush=True,
                    )
                for variant, server in zip(variants, started, strict=True):  # warm-up, not recorded
                    measure(server, loads.next(variant), 2.0, workdir / "warm.txt")
                # ABBA, then BAAB (and their rotations for more variants): each server is measured first, second,
                # third and last equally often, so neither drift over a round nor a position's own advantage leans
                # on one side.
                measured: list[list[Sample]] = [[] for _ in variants]
                for index in round_order(count, number):
                    measured[index].append(
                        measure(
                            started[index],
                            loads.next(variants[index]),
                            args.seconds,
                            workdir / "wrk.txt",
                        )
                    )
                samples = [_mean(values) for values in measured]
            rounds.append(samples)
            print(f"round {number + 1}: {_describe(labels, samples)}", flush=True)
    if base:
        title = f"A/B `{base}` (A) vs the working tree (B)"
    else:
        title = (
            f"{' vs '.join(f'`JWT_ALGORITHM={label}`' for label in labels)} "
            f"({labels[0]} is A), the working tree at {', then '.join(codes)}"
        )
    print()
    print(report(args, title, labels, rounds))
    if backend_name == "postgresql":
        asyncio.run(database.drop_postgres())
    shutil.rmtree(workdir, ignore_errors=True)
    shutil.rmtree(loads.workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
