"""The results file: one markdown section per run, appended to ``bench/results/<date>.md``."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import version
from pathlib import Path

from perf.hashlimit import HashLimit
from perf.scenarios import (
    STRAPI_LOGIN_RPS,
    STRAPI_ME_RPS,
    STRAPI_REFRESH_RPS,
    Check,
    Outcome,
    Row,
)


@dataclass
class RunInfo:
    started: datetime
    finished: datetime
    command: str
    quick: bool
    duration: float
    warmup: float
    bulk_rows: int
    users: int
    load_start: tuple[float, float, float]
    load_end: tuple[float, float, float]
    database_versions: list[str]
    server_command: str
    hash_limit: HashLimit | None
    hash_limit_end: HashLimit | None
    cpu_cap: str | None = None  # perf.cpucap's description of the servers' CPU quota


def machine() -> str:
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        kb = int(meminfo.read_text().split()[1])
        memory = f", {kb / 1024 / 1024:.0f} GiB RAM"
    return f"{os.cpu_count()} CPUs ({model}){memory}, Linux {platform.release()}"


def versions() -> str:
    packages = (
        "fastapi",
        "uvicorn",
        "sqlalchemy",
        "asyncpg",
        "aiosqlite",
        "python-jose",
        "argon2-cffi",
    )
    found = ", ".join(f"{name} {version(name)}" for name in packages)
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    wrk_version = (wrk.stdout + wrk.stderr).split("\n", 1)[0].split(" Copyright")[0].strip()
    return f"Python {platform.python_version()}, {found}, {wrk_version}"


def code_line(outcome: Outcome) -> str:
    """Which service code the servers ran (HEAD, and a digest of uncommitted app/ changes)."""
    versions = list(dict.fromkeys(row.code for row in outcome.rows))
    if not versions:
        return "no server started"
    if len(versions) == 1:
        return f"`{versions[0]}` for every server"
    return (
        "changed during the run (others were committing): "
        + ", ".join(f"`{v}`" for v in versions)
        + "; the *code* column says which server ran which"
    )


def _strapi(row: Row) -> str:
    if row.scenario == "generator":
        return ""
    if "login" in row.label and "refresh" not in row.label:
        base = STRAPI_LOGIN_RPS
    elif "/users/me" in row.label:
        base = STRAPI_ME_RPS
    else:
        base = STRAPI_REFRESH_RPS
    return f"{row.wrk.rps / base:.1f}x"


def _table(rows: list[Row], with_code: bool) -> list[str]:
    cores = os.cpu_count() or 1
    lines = [
        "| scenario | load | conns | req/s | x Strapi | p50 ms | p90 ms | p99 ms | max ms | wire p50 / p99 ms "
        "| non-2xx | 5xx | socket err. | `locked` | RSS MB idle → peak | server CPU | wrk CPU | machine busy |"
        + (" code |" if with_code else ""),
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        + ("---|" if with_code else ""),
    ]
    for r in rows:
        w = r.wrk
        rss = f"{r.idle_rss_mb:.0f} → {r.rss_mb:.0f}" + (" (per worker)" if r.workers > 1 else "")
        lines.append(
            f"| {r.scenario} | {r.label} | {r.connections} | {w.rps:,.0f} | {_strapi(r)} | {w.p50_ms:.1f} "
            f"| {w.p90_ms:.1f} | {w.p99_ms:.1f} | {w.max_ms:.0f} | {_wire(r)} | {w.non_2xx} | {w.n5xx} "
            f"| {w.socket_errors + w.timeouts} | {r.locked} | {rss} | {r.server_cores:.2f} "
            f"| {w.cores:.2f} | {r.machine_cores:.2f} / {cores} |"
            + (f" `{r.code}` |" if with_code else "")
        )
    return lines


def _wire(row: Row) -> str:
    if row.wire is None:
        return "-"
    incomplete = f" ({row.wire.dropped:,} packets dropped)" if row.wire.dropped else ""
    return f"{row.wire.p50_ms:.1f} / {row.wire.p99_ms:.1f}{incomplete}"


def _mark(ok: bool | None) -> str:
    return {True: "✅ met", False: "❌ missed", None: "-"}[ok]


def global_checks(outcome: Outcome, backends: list[str]) -> list[Check]:
    """Targets over every scenario of a backend: no 5xx or lock errors, peak RSS."""
    checks = []
    for backend in backends:
        rows = [r for r in outcome.rows if r.backend == backend]
        if not rows:
            continue
        n5xx = sum(r.wrk.n5xx for r in rows)
        locked = max(r.locked for r in rows)
        logged = max(r.logged_errors for r in rows)
        checks.append(
            Check(
                backend,
                "never a 5xx or `database is locked` (all scenarios)",
                f"{n5xx} 5xx, {locked} `database is locked` in server logs, {logged} error lines logged",
                n5xx == 0 and locked == 0,
            )
        )
        peak = max(r.rss_mb for r in rows)
        checks.append(
            Check(backend, "peak RSS of a worker < 150 MB", f"{peak:.0f} MB (VmHWM)", peak < 150)
        )
    return checks


def render(info: RunInfo, outcome: Outcome, backends: list[str]) -> str:
    title = info.started.strftime("%Y-%m-%d %H:%M UTC") + (" (--quick)" if info.quick else "")
    elapsed = (info.finished - info.started).total_seconds()
    load = f"{info.load_start[0]:.2f} / {info.load_end[0]:.2f}"
    lines = [
        f"## Run {title}",
        "",
        "> **Provisional.** Measured on a shared machine while other processes (test suites of concurrent "
        "sessions) were using the CPU: the *machine busy* column shows the whole machine's CPU use during each "
        "measurement; whatever exceeds *server* + *wrk* CPU was PostgreSQL and other tenants. Re-run on an idle "
        "machine before quoting these figures.",
        "",
        f"- Date: {info.started:%Y-%m-%d %H:%M:%S} - {info.finished:%H:%M:%S} UTC ({elapsed / 60:.1f} min)",
        f"- Machine: {machine()}; 1-minute load average at start / end: {load}",
        f"- Versions: {versions()}; {'; '.join(info.database_versions)}",
        f"- Code: {code_line(outcome)}",
        f"- Command: `{info.command}`",
        f"- Server: `{info.server_command}` with `ENVIRONMENT=production`, two distinct 48-character secrets, "
        "`RATE_LIMIT_ENABLED=false`, `LOG_LEVEL=WARNING`, `REFRESH_TOKEN_ROTATION` per scenario, other settings "
        "at their defaults (argon2id m=19456 KiB t=2 p=1, hashing pool = one thread per core)",
        f"- Load: wrk, 2 threads, 64 connections (login: 16), `--timeout 10s`, {info.duration:g} s per "
        f"measurement after a {info.warmup:g} s warm-up that is not recorded; {info.users:,} users; "
        f"bulk scenarios use {info.bulk_rows:,} rows",
    ]
    if info.cpu_cap is not None:
        lines.append(
            f"- CPU cap (`--cpu-limit`): every server ran under {info.cpu_cap}, to emulate a slower machine; "
            "the database, wrk and the kernel ran uncapped (bench/perf/cpucap.py says what this emulates)"
        )
    if info.hash_limit is not None:
        h = info.hash_limit
        end = info.hash_limit_end
        again = f", {end.per_second:.1f} when measured again at the end" if end else ""
        lines.append(
            f"- Hash limit: **{h.per_second:.1f} verifies/s** ({h.threads} threads x argon2id "
            f"m={h.params.memory_cost} t={h.params.time_cost} p={h.params.parallelism}, {h.verifies} verifies "
            f"in {h.seconds:.1f} s, measured before the servers started{again}: how much the machine's speed "
            "drifted; each login row is judged against the limit measured right around it)"
        )
    with_code = len({row.code for row in outcome.rows}) > 1
    for backend in backends:
        rows = [r for r in outcome.rows if r.backend == backend]
        if rows:
            lines += ["", f"### {backend}", "", *_table(rows, with_code)]
    order = {backend: index for index, backend in enumerate(backends)}
    checks = sorted(
        [*outcome.checks, *global_checks(outcome, backends)],
        key=lambda c: order.get(c.backend, len(order)),
    )
    if checks:
        lines += ["", "### Targets", "", "| backend | target | measured | |", "|---|---|---|---|"]
        lines += [f"| {c.backend} | {c.target} | {c.measured} | {_mark(c.ok)} |" for c in checks]
    if outcome.notes:
        lines += ["", "### Notes", ""]
        lines += [f"- {note}" for note in outcome.notes]
    if outcome.commands:
        lines += ["", "### Load commands", "", "```sh"]
        lines += list(dict.fromkeys(outcome.commands))
        lines += ["```"]
    return "\n".join(lines) + "\n"


def write(path: Path, section: str) -> None:
    """Append the run to the day's file (created with a heading when new)."""
    if path.exists():
        text = path.read_text().rstrip("\n") + "\n\n" + section
    else:
        text = f"# HTTP benchmark results, {path.stem}\n\nSee `bench/README.md` for what each scenario means.\n\n"
        text += section
    path.write_text(text)
