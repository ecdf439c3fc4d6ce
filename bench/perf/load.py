"""wrk runs: command lines, per-thread token files, and the numbers out of the scripts' ``done()`` line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from perf import ROOT, WRK_SCRIPTS

TIMEOUT_S = 10  # wrk's default is 2 s; a longer one keeps slow responses in the latency figures


@dataclass(frozen=True)
class WrkResult:
    command: str
    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    non_2xx: int  # wrk's "Non-2xx or 3xx responses"
    n5xx: int
    socket_errors: int  # connect, read, write
    timeouts: int
    starved: int  # chain.lua: requests sent with no live token left
    missing: int  # chain.lua: 200s without a successor token
    cpu_seconds: float  # wrk's own user + system CPU

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        """Everything that is not a good answer: non-2xx, socket errors, timeouts."""
        return self.non_2xx + self.socket_errors + self.timeouts

    @property
    def cores(self) -> float:
        return self.cpu_seconds / self.seconds if self.seconds else 0.0


def write_thread_files(directory: Path, prefix: str, values: list[str], threads: int) -> Path:
    """Deal ``values`` round-robin into ``<prefix>-1.txt`` ... ``<prefix>-<threads>.txt``; returns the prefix path."""
    directory.mkdir(parents=True, exist_ok=True)
    base = directory / prefix
    for thread in range(threads):
        part = values[thread::threads]
        (directory / f"{prefix}-{thread + 1}.txt").write_text("\n".join(part) + "\n")
    return base


@dataclass
class WrkRun:
    """A running wrk; ``finish`` waits for it (or stops it early with SIGINT: wrk then reports as usual)."""

    process: subprocess.Popen[bytes]
    command: list[str]
    output: Path

    def finish(self, *, interrupt: bool = False) -> WrkResult:
        if interrupt and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        _, status, usage = os.wait4(self.process.pid, 0)
        self.process.returncode = os.waitstatus_to_exitcode(status)
        text = self.output.read_text()
        if self.process.returncode != 0:
            raise RuntimeError(f"wrk failed ({self.process.returncode}):\n{text}")
        line = next((ln for ln in text.splitlines() if ln.startswith("BENCH_JSON ")), None)
        if line is None:
            raise RuntimeError(f"wrk printed no BENCH_JSON line:\n{text}")
        data = json.loads(line.removeprefix("BENCH_JSON "))
        return WrkResult(
            command=display(self.command),
            requests=int(data["requests"]),
            seconds=data["duration_us"] / 1e6,
            p50_ms=data["p50_us"] / 1000,
            p90_ms=data["p90_us"] / 1000,
            p99_ms=data["p99_us"] / 1000,
            p999_ms=data["p999_us"] / 1000,
            max_ms=data["max_us"] / 1000,
            non_2xx=int(data["status"]),
            n5xx=int(data["n5xx"]),
            socket_errors=int(data["connect"] + data["read"] + data["write"]),
            timeouts=int(data["timeout"]),
            starved=int(data["starved"]),
            missing=int(data["missing"]),
            cpu_seconds=usage.ru_utime + usage.ru_stime,
        )


def display(command: list[str]) -> str:
    """The command as one would type it from the repository root."""
    parts = []
    for part in command:
        if part.startswith(str(ROOT) + "/"):
            part = os.path.relpath(part, ROOT)
        parts.append(part)
    return " ".join(parts)


def start(
    url: str,
    script: str,
    *,
    args: list[str],
    threads: int,
    connections: int,
    duration_s: float,
    output: Path,
) -> WrkRun:
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        f"--timeout={TIMEOUT_S}s",
        "--latency",
        "-s",
        str(WRK_SCRIPTS / script),
        url,
    ]
    if args:
        command += ["--", *args]
    with output.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    return WrkRun(process, command, output)


@dataclass(frozen=True)
class MachineLoad:
    """CPU use of the whole machine over a window, in cores (of ``os.cpu_count()``)."""

    busy_cores: float
    seconds: float


class CpuWindow:
    """Machine-wide busy CPU between ``__init__`` and ``stop``."""

    def __init__(self) -> None:
        self._start = psutil.cpu_times()
        self._t0 = time.monotonic()

    def stop(self) -> MachineLoad:
        end = psutil.cpu_times()
        seconds = time.monotonic() - self._t0
        busy = sum(
            getattr(end, f) - getattr(self._start, f)
            for f in ("user", "nice", "system", "irq", "softirq", "steal")
            if hasattr(end, f)
        )
        return MachineLoad(busy / seconds if seconds else 0.0, seconds)
