"""The image, built and run for real: buildah builds the repository's Dockerfile unchanged and runs it.

No Docker engine runs here. Debian's buildah builds the Dockerfile (``buildah bud --isolation chroot``) on a
stand-in for python:3.11-slim that ``docker/base-image.sh`` makes with debootstrap, and runs the built image with
``buildah run --isolation chroot`` (which shares this machine's network, so the container reaches the suite's
PostgreSQL at 127.0.0.1 and serves on a port of this machine). The command, user, environment and volume all
come from the built image's own configuration, as ``docker run`` would take them.

These tests need root, buildah and podman, and build for minutes: they are ``.ci/run``'s container step, run
with ``CONTAINER_TESTS=1`` (README, "Container"); ``make test`` skips them.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest

from app.migrations_info import SCHEMA_HEAD
from tests.support import TEST_REDIS_URL, asyncpg_dsn, recreate_postgres_database
from tests.system.test_compose import refreshd_environment
from tests.system.test_migration_lock import MIGRATION_LOCK_KEY, WAITERS

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("CONTAINER_TESTS") != "1",
        reason="the container step of .ci/run: CONTAINER_TESTS=1 (root, buildah, podman; README)",
    ),
]

ROOT = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("CONTAINER_IMAGE", "localhost/refreshd:test")
BASE_IMAGE = "localhost/python:3.11-slim"
# The package proxy is trusted through this machine's CA bundle; the stand-in base image points at it.
CA_MOUNT = "/etc/ssl/certs:/etc/ssl/certs:ro"
BUILD_TIMEOUT = 900.0
START_TIMEOUT = 90.0
STOP_LIMIT = 10.0  # what an orchestrator waits after SIGTERM before SIGKILL (docker stop's default)
SERVICE_UID = 10001
RUNTIME_BUDGET = 120 * 2**20  # bytes the image may add to its base
JWT_SECRET = "container-access-secret-" + "a" * 40
REFRESH_JWT_SECRET = "container-refresh-secret-" + "b" * 40
PASSWORD = "Container-pass-123"
# Never in the runtime venv: python-jose's pure-Python key backends (docker/install.sh trims them; it signs
# with cryptography's), the HTTP client only the tests use, and the libraries' own test suites (trimmed).
TRIMMED_MODULES = [
    "ecdsa",
    "rsa",
    "pyasn1",
    "httpx",
    "httpcore",
    "sqlalchemy.testing",
    "alembic.testing",
    "sqlalchemy.dialects.postgresql.provision",
]


@dataclass(frozen=True)
class BuiltImage:
    name: str
    user: str
    cmd: list[str]
    env: dict[str, str]
    volumes: list[str]
    healthcheck: list[str]
    size: int


def run(*command: str, timeout: float = 120.0) -> str:
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def report(config: pytest.Config, line: str) -> None:
    """A line on the terminal even though pytest captures output: the build's time and the image's size."""
    capture = config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\n[container] {line}", flush=True)


@pytest.fixture(scope="module")
def image(request: pytest.FixtureRequest) -> BuiltImage:
    for tool in ("buildah", "podman"):
        assert shutil.which(tool), f"{tool} is not installed (apt-get install buildah podman)"
    exists = subprocess.run(["podman", "image", "exists", BASE_IMAGE], check=False)
    assert exists.returncode == 0, f"{BASE_IMAGE} is missing: run sh docker/base-image.sh first"

    started = time.monotonic()
    # The Dockerfile as it is; --layers reuses unchanged steps on a second build.
    run(
        "buildah", "bud", "--isolation", "chroot", "--layers", "--format", "docker",
        "-v", CA_MOUNT, "-t", IMAGE, "-f", str(ROOT / "Dockerfile"), str(ROOT),
        timeout=BUILD_TIMEOUT,
    )  # fmt: skip
    seconds = time.monotonic() - started
    (inspected,) = json.loads(run("podman", "image", "inspect", IMAGE))
    (base,) = json.loads(run("podman", "image", "inspect", BASE_IMAGE))
    config = inspected["Config"]
    size = int(inspected["Size"])
    added = size - int(base["Size"])
    report(
        request.config,
        f"built {IMAGE} in {seconds:.0f} s; image size {size / 2**20:.1f} MiB, "
        f"of which {added / 2**20:.1f} MiB over {BASE_IMAGE}",
    )
    # The runtime layers are the venv, migrations and the entrypoint (105 MiB when measured): a build tool
    # or a dependency of the tests that slips in shows here.
    assert added < RUNTIME_BUDGET, f"the image adds {added / 2**20:.1f} MiB to its base"
    healthcheck = inspected.get("Healthcheck") or {}
    return BuiltImage(
        name=IMAGE,
        user=str(config.get("User", "")),
        cmd=[str(word) for word in config["Cmd"]],
        env=dict(str(item).split("=", 1) for item in config.get("Env", [])),
        volumes=sorted(config.get("Volumes") or {}),
        healthcheck=[str(word) for word in healthcheck.get("Test", [])],
        size=size,
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # The parent's pid follows the command name, which is in parentheses and may hold spaces.
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def descendants(pid: int) -> list[int]:
    found, pending = [], [pid]
    while pending:
        for child in children(pending.pop()):
            found.append(child)
            pending.append(child)
    return found


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


@dataclass
class Container:
    """A running ``buildah run`` of the image."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    port: int

    def exec(self, *command: str) -> str:
        """Another process in the same container (``docker exec``)."""
        return run("buildah", "run", "--isolation", "chroot", self.name, "--", *command)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def main_process(self) -> int:
        """The process a container runtime would call PID 1: the entrypoint, exec'd into uvicorn."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            for pid in descendants(self.process.pid):
                if any(word.endswith("uvicorn") for word in cmdline(pid)):
                    return pid
            assert self.process.poll() is None, f"exited early:\n{self.output()}"
            time.sleep(0.05)
        pytest.fail(f"no uvicorn process within {START_TIMEOUT} s:\n{self.output()}")

    def wait_ready(self, client: httpx.Client) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"exited with {self.process.returncode} before ready:\n{self.output()}")
            try:
                if client.get(self.url("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        pytest.fail(f"/readyz was not 200 within {START_TIMEOUT} s:\n{self.output()}")

    def stop(self) -> float:
        """SIGTERM to the main process, as ``docker stop`` sends it: it must end cleanly within the
        grace period. Returns the seconds it took."""
        main = self.main_process()
        started = time.monotonic()
        os.kill(main, signal.SIGTERM)
        try:
            code = self.process.wait(timeout=STOP_LIMIT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {STOP_LIMIT} s after SIGTERM:\n{self.output()}")
        seconds = time.monotonic() - started
        output = self.output()
        # uvicorn finishes the lifespan, then re-raises the signal it caught. As a container's PID 1 that
        # is a no-op (exit 0); without a PID namespace the process ends by SIGTERM, which buildah reports
        # as "exited on terminated" with status 1. Any other failure is neither.
        assert code == 0 or (code == 1 and "subprocess exited on terminated" in output), output
        assert "Application shutdown complete." in output, output
        assert "Traceback" not in output, output
        return seconds


@contextmanager
def container(
    image: BuiltImage, log: Path, env: dict[str, str], volume: Path | None = None
) -> Iterator[Container]:
    """``docker run`` of the image: its own CMD and user, ``env`` added, ``volume`` at the image's VOLUME."""
    name = f"refreshd-test-{uuid.uuid4().hex[:12]}"
    run("buildah", "from", "--name", name, image.name)
    try:
        port = free_port()
        for key, value in {"PORT": str(port), **env}.items():
            run("buildah", "config", "--env", f"{key}={value}", name)
        mounts = []
        if volume is not None:
            # buildah gives a VOLUME of the image a scratch directory that goes with the run, over any
            # -v there; an engine mounts the named volume instead. Drop the declaration, then bind.
            run("buildah", "config", "--volume", f"{image.volumes[0]}-", name)
            mounts = ["-v", f"{volume}:{image.volumes[0]}"]
        with log.open("wb") as sink:
            process = subprocess.Popen(
                ["buildah", "run", "--isolation", "chroot", *mounts, name, "--", *image.cmd],
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            yield Container(name, process, log, port)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
    finally:
        subprocess.run(["buildah", "rm", name], capture_output=True, check=False)


def volume_dir(tmp_path: Path) -> Path:
    """A bind mount keeps the host's owner: give it to the service user, as a named volume would be."""
    path = tmp_path / "data"
    path.mkdir()
    os.chown(path, SERVICE_UID, SERVICE_UID)
    return path


def secrets() -> dict[str, str]:
    return {"JWT_SECRET": JWT_SECRET, "REFRESH_JWT_SECRET": REFRESH_JWT_SECRET}


def register_and_login(client: httpx.Client, base: str, name: str) -> dict[str, str]:
    registered = client.post(
        f"{base}/api/auth/local/register",
        json={"username": name, "email": f"{name}@example.com", "password": PASSWORD},
    )
    assert registered.status_code == 200, registered.text
    return login(client, base, name)


def login(client: httpx.Client, base: str, name: str) -> dict[str, str]:
    logged_in = client.post(
        f"{base}/api/auth/local",
        json={"identifier": name, "password": PASSWORD, "requestRefresh": True},
    )
    assert logged_in.status_code == 200, logged_in.text
    body = logged_in.json()
    assert body["user"]["username"] == name
    return {"jwt": body["jwt"], "refreshToken": body["refreshToken"]}


def refresh(client: httpx.Client, base: str, token: str) -> dict[str, str]:
    refreshed = client.post(f"{base}/api/auth/local/refresh", json={"refreshToken": token})
    assert refreshed.status_code == 200, refreshed.text
    body = refreshed.json()
    me = client.get(f"{base}/api/users/me", headers={"Authorization": f"Bearer {body['jwt']}"})
    assert me.status_code == 200, me.text
    return dict(body)


def postgres_tables(url: str) -> set[str]:
    async def read() -> set[str]:
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            return {row["tablename"] for row in rows}
        finally:
            await conn.close()

    return asyncio.run(read())


def test_the_image_is_configured_as_documented(image: BuiltImage) -> None:
    assert image.user == f"{SERVICE_UID}:{SERVICE_UID}"
    assert image.env["ENVIRONMENT"] == "production"
    assert image.volumes == ["/data"]
    assert image.cmd == ["/app/docker/entrypoint.sh"]
    assert image.healthcheck[:1] == ["CMD"], image.healthcheck


def test_against_postgresql_it_migrates_serves_and_stops_on_sigterm(
    image: BuiltImage, tmp_path: Path, pytestconfig: pytest.Config
) -> None:
    """compose.yaml's environment for refreshd, its services' host names being this machine's."""
    url = recreate_postgres_database("container_image")
    env = refreshd_environment({"POSTGRES_PASSWORD": "unused", **secrets()})
    assert env["DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert env["REDIS_URL"].startswith("redis://")
    env.update(DATABASE_URL=url, REDIS_URL=TEST_REDIS_URL)
    with (
        container(image, tmp_path / "container.log", env, volume_dir(tmp_path)) as running,
        httpx.Client(timeout=10, trust_env=False) as client,
    ):
        running.wait_ready(client)
        main = running.main_process()
        status = Path(f"/proc/{main}/status").read_text()
        uids = next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1:]
        assert uids == [str(SERVICE_UID)] * 4, status  # real, effective, saved, filesystem
        ready = client.get(running.url("/readyz")).json()
        assert ready == {"status": "ok", "database": "ok", "migrations": SCHEMA_HEAD}

        base = running.url("")
        tokens = register_and_login(client, base, "pguser")
        refreshed = refresh(client, base, tokens["refreshToken"])
        # Rotation (on by default): a successor, and the presented token is retired.
        assert refreshed["refreshToken"] != tokens["refreshToken"]

        # The image's HEALTHCHECK, run inside the container as the engine would.
        running.exec(*image.healthcheck[1:])

        seconds = running.stop()

    report(pytestconfig, f"stopped {seconds:.2f} s after SIGTERM")
    assert seconds < STOP_LIMIT
    assert {"users", "sessions", "alembic_version"} <= postgres_tables(url)


def test_settings_are_checked_before_migrating(image: BuiltImage, tmp_path: Path) -> None:
    url = recreate_postgres_database("container_unset")
    with container(image, tmp_path / "container.log", {"DATABASE_URL": url}) as running:
        try:
            code = running.process.wait(timeout=START_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"started without secrets:\n{running.output()}")
        output = running.output()

    assert code != 0, output
    assert "refreshd: invalid configuration" in output, output
    assert "JWT_SECRET" in output, output
    assert "Traceback" not in output, output
    assert postgres_tables(url) == set()  # it stopped before touching the database


def test_a_restart_keeps_its_data_on_the_volume(image: BuiltImage, tmp_path: Path) -> None:
    volume = volume_dir(tmp_path)
    with httpx.Client(timeout=10, trust_env=False) as client:
        with container(image, tmp_path / "first.log", secrets(), volume) as first:
            first.wait_ready(client)
            tokens = register_and_login(client, first.url(""), "volumeuser")
            first.stop()

        database = volume / "refreshd.db"  # the image's default DATABASE_URL
        assert database.stat().st_uid == SERVICE_UID
        # Production never generates secrets.
        assert not (volume / ".refreshd-secrets.json").exists()

        with container(image, tmp_path / "second.log", secrets(), volume) as second:
            second.wait_ready(client)
            base = second.url("")
            refresh(client, base, tokens["refreshToken"])  # the session survived
            login(client, base, "volumeuser")  # and so did the account
            second.stop()


def test_two_containers_starting_at_once_take_turns_on_the_migration(
    image: BuiltImage, tmp_path: Path
) -> None:
    """The test holds the migration lock until both containers wait on it, then lets go."""
    url = recreate_postgres_database("container_race")
    database = url.rsplit("/", 1)[1]
    env = {**secrets(), "DATABASE_URL": url}

    async def hold() -> asyncpg.Connection:
        conn = await asyncpg.connect(asyncpg_dsn(url))
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        return conn

    async def waiting(conn: asyncpg.Connection) -> int:
        high, low = MIGRATION_LOCK_KEY >> 32, MIGRATION_LOCK_KEY & 0xFFFFFFFF
        return int(await conn.fetchval(WAITERS, database, high, low))

    loop = asyncio.new_event_loop()
    holder = loop.run_until_complete(hold())
    try:
        with (
            container(image, tmp_path / "a.log", env) as first,
            container(image, tmp_path / "b.log", env) as second,
            httpx.Client(timeout=10, trust_env=False) as client,
        ):
            deadline = time.monotonic() + START_TIMEOUT
            while loop.run_until_complete(waiting(holder)) < 2:
                for running in (first, second):
                    assert running.process.poll() is None, running.output()
                assert time.monotonic() < deadline, first.output() + second.output()
                time.sleep(0.05)
            loop.run_until_complete(holder.execute("SELECT pg_advisory_unlock_all()"))
            for running in (first, second):
                running.wait_ready(client)
            head = loop.run_until_complete(
                holder.fetchval("SELECT version_num FROM alembic_version")
            )
            assert head == SCHEMA_HEAD
            for running in (first, second):
                running.stop()
    finally:
        loop.run_until_complete(holder.close())
        loop.close()


def test_the_runtime_layer_holds_only_what_the_service_imports(image: BuiltImage) -> None:
    name = f"refreshd-test-{uuid.uuid4().hex[:12]}"
    run("buildah", "from", "--name", name, image.name)
    try:
        probe = (
            "import importlib.util, json;"
            f"print(json.dumps([m for m in {TRIMMED_MODULES!r} if importlib.util.find_spec(m)]))"
        )
        found = run("buildah", "run", "--isolation", "chroot", name, "--", "python", "-c", probe)
        assert json.loads(found) == []
        # The service and its command line still import whole.
        run(
            "buildah", "run", "--isolation", "chroot", name, "--",
            "python", "-c", "import app.main, app.cli, alembic.command",
        )  # fmt: skip
    finally:
        subprocess.run(["buildah", "rm", name], capture_output=True, check=False)
