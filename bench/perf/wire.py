"""The server's response times as the loopback interface saw them: a second opinion beside wrk's own figures.

wrk times a request from its own clock, in its own threads: from just before it writes the request to when it has
parsed the response. On a two-core machine whose other core runs the server, a wrk thread that is runnable but not
running adds its wait to every response it reads late. The packets say when each request reached the server and
when the server's answer left it, whatever the client does with it.

``tcpdump`` (Debian's package; it needs root or CAP_NET_RAW) captures the headers of the measured run's packets on
``lo``. Afterwards ``tcpdump -r`` decodes them and, per client connection (wrk never pipelines), a request starts
with the client's first data segment after the previous answer and ends with the server's last data segment before
the client's next request. tcpdump's own CPU counts in the rows' *machine busy* column.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

READY_TIMEOUT_S = 10.0
# "1764330000.123456 IP 127.0.0.1.45678 > 127.0.0.1.8000: tcp 199" (tcpdump -nn -tt -q)
_LINE = re.compile(r"^(\d+\.\d+) IP6? \S+?\.(\d+) > \S+?\.(\d+): tcp (\d+)")
_DROPPED = re.compile(r"(\d+) packets? dropped by kernel")


@dataclass(frozen=True)
class WireLatency:
    requests: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    # Packets the kernel dropped from the capture: non-zero makes the figures incomplete.
    dropped: int


def available() -> bool:
    return shutil.which("tcpdump") is not None and os.geteuid() == 0


class Capture:
    """``tcpdump`` on the loopback interface for one server port, from ``start()`` until ``stop()``."""

    def __init__(self, port: int, path: Path) -> None:
        self.port = port
        self.path = path
        self._log = path.with_suffix(".log")
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = ["tcpdump", "-i", "lo", "-nn", "-s", "96", "-B", "65536", "-w", str(self.path)]
        command += ["tcp", "port", str(self.port)]
        with self._log.open("wb") as log:
            self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while "listening on" not in self._log.read_text(errors="replace"):
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"tcpdump did not start: {self._log.read_text(errors='replace')}"
                )
            time.sleep(0.05)

    def stop(self) -> WireLatency:
        assert self._process is not None, "start() first"
        self._process.send_signal(signal.SIGINT)
        self._process.wait(timeout=30)
        dropped = _DROPPED.search(self._log.read_text(errors="replace"))
        decoded = subprocess.run(
            ["tcpdump", "-r", str(self.path), "-nn", "-tt", "-q"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return summarize(
            latencies(decoded.splitlines(), self.port), int(dropped[1]) if dropped else 0
        )


def latencies(lines: list[str], server_port: int) -> list[float]:
    """Seconds from each request's first segment to its answer's last one, from ``tcpdump -nn -tt -q`` lines."""
    started: dict[int, float] = {}  # client port -> when its current request reached the server
    answered: dict[int, float] = {}  # client port -> the last answer segment of that request so far
    found: list[float] = []
    for line in lines:
        match = _LINE.match(line)
        if match is None or int(match[4]) == 0:
            continue  # not TCP over IP, or no payload (handshake, ACKs)
        at, source, destination = float(match[1]), int(match[2]), int(match[3])
        if destination == server_port:  # the client speaks
            if source in answered:  # ... after an answer: that request is complete
                found.append(answered.pop(source) - started[source])
                started[source] = at
            started.setdefault(source, at)
        elif source == server_port and destination in started:
            answered[destination] = at
    found.extend(answered[port] - started[port] for port in answered)
    return found


def summarize(found: list[float], dropped: int) -> WireLatency:
    ordered = sorted(found)
    if not ordered:
        return WireLatency(0, 0.0, 0.0, 0.0, dropped)

    def at(share: float) -> float:
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000

    return WireLatency(len(ordered), at(0.50), at(0.99), ordered[-1] * 1000, dropped)
