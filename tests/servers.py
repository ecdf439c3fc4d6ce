"""Real server processes for tests that need more than one (uvicorn, started as the README starts it)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support import ACCESS_SECRET, REFRESH_SECRET, ROOT

START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _wait_ready(server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.log.read_text()}")
        try:
            if httpx.get(f"{server.url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)  # polling for readiness, not controlling time
    raise RuntimeError(f"server not ready in {START_TIMEOUT}s:\n{server.log.read_text()}")


@contextmanager
def running_servers(
    database_url: str, count: int, workdir: Path, **env: str
) -> Iterator[list[Server]]:
    """``count`` uvicorn processes on one database, stopped (and reaped) on exit."""
    with _running([free_port() for _ in range(count)], database_url, workdir, env) as servers:
        yield servers


@contextmanager
def running_server_at(port: int, database_url: str, workdir: Path, **env: str) -> Iterator[Server]:
    """One server on a port chosen before it starts, for settings that name the server's own URL."""
    with _running([port], database_url, workdir, env) as (server,):
        yield server


@contextmanager
def _running(
    ports: list[int], database_url: str, workdir: Path, env: dict[str, str]
) -> Iterator[list[Server]]:
    base_env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "DATABASE_URL": database_url,
        "JWT_SECRET": ACCESS_SECRET,
        "REFRESH_JWT_SECRET": REFRESH_SECRET,
        "LOG_LEVEL": "WARNING",
        **env,
    }
    servers: list[Server] = []
    try:
        for index, port in enumerate(ports):
            log = workdir / f"server-{index}.log"
            with log.open("wb") as sink:
                process = subprocess.Popen(
                    [
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
                        "--loop",
                        "asyncio",
                    ],
                    cwd=ROOT,
                    env=base_env,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            servers.append(Server(process, port, log))
        for server in servers:
            _wait_ready(server)
        yield servers
    finally:
        for server in servers:
            if server.process.poll() is None:
                server.process.send_signal(signal.SIGTERM)
        for server in servers:
            try:
                server.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.process.pid, signal.SIGKILL)
                server.process.wait()
