"""Summaries of py-spy's raw (collapsed-stack) output: where the server's samples go."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

# Functions worth knowing the inclusive share of on the event-loop thread (prefix of "name (file"), by role.
KEY_FUNCTIONS: tuple[tuple[str, str], ...] = (
    ("HTTP parsing and writing (uvicorn httptools)", "HttpToolsProtocol.data_received"),
    ("  response send path", "RequestResponseCycle.send"),
    ("RequestIdMiddleware (whole request below it)", "RequestIdMiddleware.__call__"),
    ("  uuid4 request ids", "uuid4"),
    ("FastAPI dependency resolution", "solve_dependencies"),
    ("  sync dependencies sent to the thread pool", "run_in_threadpool"),
    ("request body parsing and validation", "request_body_to_args"),
    ("route: refresh", "refresh (app/api/routers/auth.py"),
    ("  sessions.refresh (token check + UPDATE)", "refresh (app/services/sessions.py"),
    ("  refresh-token decode (python-jose)", "decode_refresh_token"),
    ("  access-token encode (python-jose)", "issue_access_token"),
    ("  audit row (ORM add)", "record (app/services/audit.py"),
    ("get_principal (access token + session/user query)", "get_principal"),
    ("  access-token decode (python-jose)", "read_access_token"),
    ("  authenticated_user query", "authenticated_user"),
    ("Database.write (gate, BEGIN, commit)", "Database.write"),
    ("SQLAlchemy AsyncSession.execute / scalars", "AsyncSession.execute"),
    ("SQLAlchemy AsyncSession.scalars", "AsyncSession.scalars"),
    ("SQLAlchemy ORM flush (audit INSERT)", "Session.flush"),
    ("SQLAlchemy statement compile/cache", "ClauseElement._compile_w_cache"),
    ("SQLAlchemy commit", "AsyncSession.commit"),
    ("SQLAlchemy transaction exit (commit)", "AsyncSessionTransaction.__aexit__"),
    ("SQLAlchemy session close (connection reset)", "AsyncSession.close"),
    ("greenlet bridge (await_ inside sync SQLAlchemy)", "await_"),
    ("aiosqlite cursor calls (thread hops)", "AsyncAdapt_aiosqlite_cursor"),
    ("asyncpg protocol calls", "AsyncAdapt_asyncpg_cursor"),
    ("response serialization", "serialize_response"),
    ("JSONResponse render", "JSONResponse.render"),
    ("Prometheus metrics observe", "MetricsMiddleware._observe"),
    ("logging", "Logger."),
)


@dataclass(frozen=True)
class Summary:
    samples: int
    main_samples: int
    by_thread: list[tuple[str, int]]
    by_package: list[tuple[str, int]]  # self time on the event-loop thread, by top-level package
    key_functions: list[tuple[str, int]]  # inclusive on the event-loop thread
    self_time: list[tuple[str, int]]


def _frame(frame: str) -> tuple[str, str]:
    """``func (path/to/module.py:123)`` → (``func``, short path)."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return name, path


def _package(path: str) -> str:
    if path.startswith("app/"):
        return "app (refreshd)"
    if "/" not in path and path.endswith(".py"):
        return "stdlib: " + path.removesuffix(".py")
    head = path.split("/", 1)[0]
    if head.startswith("<"):
        return "interpreter"
    return head


MAIN_THREAD = "MainThread (event loop)"


def _thread_kind(name: str) -> str:
    if name.startswith("MainThread"):
        return MAIN_THREAD
    if "_connection_worker_thread" in name:
        return "aiosqlite connection threads (one per connection)"
    if name.startswith("AnyIO worker thread"):
        return "AnyIO worker threads (FastAPI's sync dependencies)"
    if name.startswith("refreshd-hash"):
        return "password hashing pool"
    return name


def summarize(raw: Path, top: int = 25) -> Summary:
    threads: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    keys: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    total = main = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        thread = "?"
        if frames and frames[0].startswith("thread ("):
            thread = _thread_kind(frames[0].split(": ", 1)[-1])
            frames = frames[1:]
        threads[thread] += count
        parsed = [_frame(f) for f in frames if not f.startswith("process ")]
        if not parsed:
            continue
        name, path = parsed[-1]
        self_time[f"{name} ({path})"] += count
        if thread == MAIN_THREAD:
            main += count
            packages[_package(path)] += count
            labels = [f"{n} ({p}" for n, p in parsed]
            for label, prefix in KEY_FUNCTIONS:
                if any(item.startswith(prefix) for item in labels):
                    keys[label] += count
    return Summary(
        samples=total,
        main_samples=main,
        by_thread=threads.most_common(),
        by_package=packages.most_common(15),
        key_functions=[(label, keys[label]) for label, _ in KEY_FUNCTIONS if keys[label]],
        self_time=self_time.most_common(top),
    )


def markdown(title: str, summary: Summary) -> str:
    def pct(n: int, of: int) -> str:
        return f"{100 * n / of:.1f} %" if of else "-"

    lines = [
        f"# {title}",
        "",
        f"{summary.samples:,} samples of non-idle threads (py-spy, 200 Hz), {summary.main_samples:,} of them "
        "on the event-loop thread. A thread's share of samples is its share of the process's busy time.",
        "",
        "## By thread",
        "",
        "| thread | share of samples |",
        "|---|---:|",
    ]
    lines += [f"| `{name}` | {pct(n, summary.samples)} |" for name, n in summary.by_thread]
    lines += [
        "",
        "## Event-loop thread: self time by package",
        "",
        "`asyncio` self time is the event loop's native code (selectors, sockets, callbacks, wake-ups).",
        "",
        "| package | share of event-loop samples |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {pct(n, summary.main_samples)} |" for name, n in summary.by_package]
    lines += [
        "",
        "## Event-loop thread: inclusive time of key functions",
        "",
        "| what | share of event-loop samples |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {pct(n, summary.main_samples)} |" for name, n in summary.key_functions]
    lines += ["", "## All threads: self time", "", "| function | share |", "|---|---:|"]
    lines += [f"| `{name}` | {pct(n, summary.samples)} |" for name, n in summary.self_time]
    return "\n".join(lines) + "\n"
