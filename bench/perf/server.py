"""The service as a real server process: uvicorn with production settings, over loopback."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from perf import ROOT
from perf.cpucap import CpuCap
from perf.database import Backend, Secrets

START_TIMEOUT = 90.0
LOCKED = "database is locked"
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([0-9.eE+-]+|NaN)$")


def code_version(root: Path = ROOT) -> str:
    """The service code a server starts with: HEAD, plus a digest of uncommitted changes to app/ and migrations/
    (others may be editing while the suite runs: each server records what it ran)."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=False
        ).stdout

    head = git("rev-parse", "--short", "HEAD").strip()
    changes = git("status", "--porcelain", "--", "app", "migrations")
    if not changes.strip():
        return head
    digest = hashlib.sha1(  # noqa: S324 - a label, not security
        (changes + git("diff", "HEAD", "--", "app", "migrations")).encode()
    ).hexdigest()[:7]
    return f"{head}+dirty.{digest}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(backend: Backend, keys: Secrets, *, rotation: bool) -> dict[str, str]:
    """Production settings, rate limits off, warnings only."""
    return {
        **os.environ,
        "ENVIRONMENT": "production",
        "DATABASE_URL": backend.url,
        "JWT_SECRET": keys.access,
        "REFRESH_JWT_SECRET": keys.refresh,
        "REFRESH_TOKEN_ROTATION": "true" if rotation else "false",
        "RATE_LIMIT_ENABLED": "false",
        "LOG_LEVEL": "WARNING",
        # Scenarios read /metrics, which production serves only when asked (METRICS_ENABLED, METRICS_TOKEN).
        "METRICS_ENABLED": "true",
    }


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    workers: int
    command: list[str]
    idle_rss_mb: float = 0.0  # resident set of a worker once ready, before any load
    code: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def worker_processes(self) -> list[psutil.Process]:
        """The processes that serve requests: uvicorn itself, or its workers under ``--workers``."""
        main = psutil.Process(self.process.pid)
        if self.workers == 1:
            return [main]
        return [
            child
            for child in main.children()
            if "resource_tracker" not in " ".join(child.cmdline())
        ]

    def _status_mb(self, field: str) -> float:
        """The largest ``field`` (VmHWM, VmRSS) of /proc/<pid>/status among the workers, in MB."""
        values = []
        for process in self.worker_processes():
            status = Path(f"/proc/{process.pid}/status").read_text()
            match = re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE)
            if match:
                values.append(int(match.group(1)) / 1024)
        return max(values, default=0.0)

    def peak_rss_mb(self) -> float:
        """The largest VmHWM (peak resident set) among the workers, in MB."""
        return self._status_mb("VmHWM")

    def rss_mb(self) -> float:
        return self._status_mb("VmRSS")

    def cpu_seconds(self) -> float:
        """User + system CPU of the server and all its processes so far."""
        main = psutil.Process(self.process.pid)
        total = 0.0
        for process in [main, *main.children(recursive=True)]:
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    def log_count(self, needle: str) -> int:
        return self.log.read_text(errors="replace").count(needle)

    def log_errors(self) -> int:
        """Lines logged at ERROR or worse, and tracebacks."""
        text = self.log.read_text(errors="replace")
        return sum(
            1
            for line in text.splitlines()
            if '"levelname": "ERROR"' in line
            or '"levelname": "CRITICAL"' in line
            or line.startswith("Traceback")
            or " ERROR " in line
        )

    def metrics(self) -> dict[str, float]:
        """The Prometheus samples of /metrics (of one worker), keyed by ``name{labels}``."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        samples: dict[str, float] = {}
        for line in text.splitlines():
            match = _SAMPLE.match(line)
            if match:
                samples[match.group(1) + (match.group(2) or "")] = float(match.group(3))
        return samples


def metric_sum(samples: dict[str, float], name: str, **labels: str) -> float:
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    return sum(
        value
        for key, value in samples.items()
        if (key == name or key.startswith(name + "{")) and all(w in key for w in wanted)
    )


def _wait_ready(server: Server, ready: str = "/readyz") -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.log.read_text()}")
        try:
            if httpx.get(f"{server.url}{ready}", timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"server not ready in {START_TIMEOUT}s:\n{server.log.read_text()}")


def _wait_workers(server: Server) -> None:
    """Under --workers, /readyz answers as soon as one worker is up: wait for all of them."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        text = server.log.read_text(errors="replace")
        if text.count("Application startup complete") >= server.workers:
            return
        time.sleep(0.1)
    raise RuntimeError(f"not all {server.workers} workers started:\n{server.log.read_text()}")


def server_command(port: int | str, workers: int) -> list[str]:
    """One worker: uvicorn as the container runs it. Several: ``refreshd serve --workers N``, the supported way to
    run more than one (uvicorn's own ``--workers`` leaves Nagle's algorithm on: see app/serving.py)."""
    if workers > 1:
        return [
            sys.executable,
            "-m",
            "app.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ]
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "app.main:create_app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--no-proxy-headers",
        "--loop",
        "asyncio",
    ]


@contextmanager
def running(
    backend: Backend,
    keys: Secrets,
    workdir: Path,
    name: str,
    *,
    rotation: bool,
    workers: int = 1,
    env: Mapping[str, str] | None = None,
    root: Path = ROOT,
    cap: CpuCap | None = None,
    ready: str = "/readyz",
) -> Iterator[Server]:
    """One uvicorn server (``workers`` processes), ready on ``ready`` (/readyz: up, and the database at this
    code's schema head); stopped with SIGTERM on exit. ``env`` overrides settings for this server; ``root`` is
    the checkout whose code it runs; under ``cap`` it runs in that cgroup (perf.cpucap), joined before the
    server's program starts."""
    port = free_port()
    code = code_version(root)
    log = workdir / f"server-{backend.name}-{name}.log"
    command = server_command(port, workers)
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command if cap is None else cap.wrap(command),
            cwd=root,
            env={**server_env(backend, keys, rotation=rotation), **(env or {})},
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(process, port, log, workers, command, code=code)
    try:
        _wait_ready(server, ready)
        if workers > 1:
            _wait_workers(server)
        server.idle_rss_mb = server.rss_mb()
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
