"""Helpers for the rate-limit tests: budget assertions, addresses behind a trusted proxy, a Redis of their own."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import coredis
import httpx

from tests.api.helpers import error_of
from tests.servers import free_port

# The test transport's peer (tests.conftest.Harness); trusted as a proxy, it lets one app see many clients.
PROXY = "203.0.113.7"
LIMITED = {
    "status": 429,
    "name": "RateLimitError",
    "message": "Too many requests, please try again later.",
    "details": {},
}


def from_address(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


def assert_budget(
    response: httpx.Response, remaining: int, *, now: float, limit: int = 10, window: int = 60
) -> None:
    """``now``: epoch seconds on the store's clock (the app's clock in memory, real time in Redis)."""
    assert response.headers["x-ratelimit-limit"] == str(limit)
    assert response.headers["x-ratelimit-remaining"] == str(remaining)
    reset = int(response.headers["x-ratelimit-reset"])
    assert now - 1 <= reset <= now + window + 1


def assert_limited(response: httpx.Response, *, limit: int = 10, longest: int = 60) -> int:
    """A 429 in Strapi's envelope with every header; returns its Retry-After."""
    assert response.status_code == 429, response.text
    assert error_of(response) == LIMITED
    assert response.headers["x-ratelimit-limit"] == str(limit)
    assert response.headers["x-ratelimit-remaining"] == "0"
    assert int(response.headers["x-ratelimit-reset"]) > 0
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= longest
    return retry_after


def metric(text: str, name: str) -> float:
    """The value of one unlabelled sample in a Prometheus exposition."""
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not exported"
    return float(match.group(1))


def labelled_metric(text: str, name: str, labels: str) -> float:
    match = re.search(rf"^{re.escape(name)}\{{{re.escape(labels)}\}} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


@dataclass
class RedisServer:
    """A redis-server of the test's own on a free port: stopping it never touches the machine's Redis."""

    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is needed for this test"
        self.process = subprocess.Popen(
            [
                *(binary, "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--daemonize", "no"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:  # waits for a real process to listen; the app's time is not involved
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                assert self.process.poll() is None, "redis-server exited"
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.02)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer(free_port())
    server.start()
    try:
        yield server
    finally:
        server.kill()


async def keys_in(url: str) -> list[str]:
    redis: coredis.Redis[str] = coredis.Redis.from_url(url, decode_responses=True)
    return sorted(await redis.keys("*"))
