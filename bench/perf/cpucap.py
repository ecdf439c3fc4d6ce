"""A CPU cap on the server under test, to emulate a slower machine than this one.

The issue's absolute targets were set on a machine where a bare FastAPI endpoint served about 4,500 req/s; the
machines these runs get differ from it by up to 1.7x, and latency under a fixed 64-connection load scales with the
server's CPU speed. A cgroup CPU quota (the kernel's CFS bandwidth control) holds the server's processes to a
fraction of a core, so that /healthz runs at the reference figure and every other scenario can be read as if on
the reference machine (``bench/run.py --cpu-limit reference``).

What it emulates and what it does not: the quota limits the *sum* of the CPU time the server's threads use, in
every 10 ms period. One event-loop thread capped at 0.7 core behaves like a slower core, plus pauses of at most
the unspent part of a period (3 ms at 0.7) when the quota runs out; the database, wrk and the kernel's loopback
work stay at this machine's speed. Several busy threads (the hashing pool under login load) or workers would share
one quota instead of getting a slower core each, so the scenarios that rely on them refuse a cap. On cgroup v2 the
cpu controller is enabled for the root's children if it was not (and left so).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shlex
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# 10 ms: shorter periods than the kernel's bandwidth slice (sched_cfs_bandwidth_slice_us, 5 ms) waste quota
# (a 2 ms period at 0.73 core gave the server 0.57); longer ones stall the event loop for longer at a time.
PERIOD_US = 10_000
MIN_CORES = 0.1  # the kernel refuses quotas under 1 ms
_V1 = Path("/sys/fs/cgroup/cpu")
_V2 = Path("/sys/fs/cgroup")


class CapUnavailable(RuntimeError):
    """No writable cgroup CPU controller here (not root, or a container without one)."""


@dataclass
class CpuCap:
    """A cgroup of its own; ``cores`` None means no quota."""

    path: Path
    v2: bool
    cores: float | None = None

    def limit(self, cores: float | None) -> None:
        """Cap every process in the group at ``cores`` (None: no cap), from the next period on."""
        check_cores(cores)
        quota = -1 if cores is None else round(cores * PERIOD_US)
        try:
            if self.v2:
                (self.path / "cpu.max").write_text(f"{'max' if quota < 0 else quota} {PERIOD_US}")
            else:
                (self.path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
                (self.path / "cpu.cfs_quota_us").write_text(str(quota))
        except OSError as exc:
            raise CapUnavailable(f"cannot set a CPU quota of {cores} cores: {exc}") from exc
        self.cores = cores

    def wrap(self, command: list[str]) -> list[str]:
        """``command`` run by a shell that first moves itself into the group, then becomes the command (same
        process): everything the command runs and starts is capped from its first instruction."""
        procs = shlex.quote(str(self.path / "cgroup.procs"))
        return ["sh", "-c", f'echo $$ > {procs} && exec "$@"', "sh", *command]

    def describe(self) -> str:
        if self.cores is None:
            return "no cap"
        return (
            f"{self.cores:.2f} core (cgroup CPU quota of {self.cores * PERIOD_US / 1000:.1f} ms "
            f"per {PERIOD_US / 1000:.0f} ms)"
        )


def check_cores(cores: float | None) -> None:
    if cores is not None and not MIN_CORES <= cores <= (os.cpu_count() or 1):
        raise ValueError(
            f"a CPU cap of {cores} cores is out of range ({MIN_CORES}-{os.cpu_count()})"
        )


def cores_argument(value: str) -> float:
    """``--cpu-limit CORES`` on a command line: a number of cores in range."""
    try:
        cores = float(value)
        check_cores(cores)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"a number of cores: {exc}") from None
    return cores


def _create(name: str) -> tuple[Path, bool]:
    if (_V1 / "cpu.cfs_quota_us").exists():
        path = _V1 / name
        path.mkdir()
        return path, False
    controllers = _V2 / "cgroup.controllers"
    if controllers.exists() and "cpu" in controllers.read_text().split():
        subtree = _V2 / "cgroup.subtree_control"
        if "cpu" not in subtree.read_text().split():
            subtree.write_text("+cpu")
        path = _V2 / name
        path.mkdir()
        return path, True
    raise CapUnavailable("no cgroup CPU controller under /sys/fs/cgroup")


@contextlib.contextmanager
def cpu_cap(cores: float | None = None) -> Iterator[CpuCap]:
    """A fresh cgroup with ``cores`` as its quota, removed at the end (once its processes have exited)."""
    try:
        path, v2 = _create(f"refreshd-bench-{os.getpid()}-{secrets.token_hex(3)}")
    except OSError as exc:
        raise CapUnavailable(f"cannot create a cgroup for a CPU cap: {exc}") from exc
    cap = CpuCap(path, v2)
    try:
        cap.limit(cores)
        yield cap
    finally:
        for _ in range(50):  # the last server may still be exiting
            try:
                path.rmdir()
                break
            except OSError:
                time.sleep(0.1)
        else:
            left = (path / "cgroup.procs").read_text().split()
            print(f"cgroup {path} not removed; processes still in it: {left}", file=sys.stderr)
