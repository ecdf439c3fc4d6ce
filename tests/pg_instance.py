"""A private PostgreSQL server for fault tests: its own data folder and port, so stopping it hurts no one else."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.servers import free_port


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(f"{name} not found: PostgreSQL server binaries are required")
    return found[-1]


def _as_postgres(*command: str) -> list[str]:
    # initdb and postgres refuse to run as root.
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return list(command)


@dataclass
class PostgresInstance:
    data: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        subprocess.run(
            _as_postgres(
                _bin("pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off",
                "-l",
                str(self.data / "server.log"),
                "-w",
                "-t",
                "60",
                "start",
            ),
            check=True,
            capture_output=True,
        )

    def stop(self, mode: str = "immediate") -> None:
        subprocess.run(
            _as_postgres(_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"),
            check=True,
            capture_output=True,
        )


@contextmanager
def postgres_instance() -> Iterator[PostgresInstance]:
    root = Path(tempfile.mkdtemp(prefix="refreshd-pg-"))
    data = root / "data"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        shutil.chown(data, "postgres", "postgres")
    subprocess.run(
        _as_postgres(_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"),
        check=True,
        capture_output=True,
    )
    instance = PostgresInstance(data, free_port())
    instance.start()
    try:
        yield instance
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped by the test
            instance.stop()
        shutil.rmtree(root, ignore_errors=True)
