"""The container image, without Docker: the Dockerfile's own install and start scripts, run here.

The Dockerfile is read, not restated: the files its COPY lines bring in (and when), the install
commands of its RUN lines, its ENV, CMD and HEALTHCHECK all come from it, so this test cannot drift
from the image. Each stage's filesystem is a temporary folder; container paths map into it.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from string import Template

import httpx
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
# The commands the builder stage runs, in order; the test runs them too.
INSTALL_COMMANDS = ["sh docker/install.sh deps", "sh docker/install.sh project"]
VENV_IN_IMAGE = "/opt/venv"
# What python:3.11-slim sets before the Dockerfile's own ENV.
BASE_IMAGE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}
# Left out of the build context by .dockerignore.
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.db", "*.db-*")
INSTALL_TIMEOUT = 600.0
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
JWT_SECRET = "container-access-secret-" + "a" * 40
REFRESH_JWT_SECRET = "container-refresh-secret-" + "b" * 40


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str


@dataclass(frozen=True)
class Stage:
    name: str | None
    instructions: list[Instruction]

    def args(self, keyword: str) -> list[str]:
        return [i.args for i in self.instructions if i.keyword == keyword]


def parse_dockerfile(text: str) -> list[Stage]:
    """Instructions per stage: comments dropped, continuation lines joined."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        if pending.strip():
            logical.append(pending.strip())
        pending = ""
    assert not pending.strip(), "the Dockerfile ends in a line continuation"

    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(name, []))
        elif keyword != "ARG" or stages:  # ARGs before the first FROM only parameterize FROM lines
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append(Instruction(keyword, args))
    return stages


def split_flags(args: str) -> tuple[dict[str, str], list[str]]:
    """`--from=builder --chmod=0755 a b` -> ({"from": "builder", "chmod": "0755"}, ["a", "b"])."""
    words = shlex.split(args)
    flags: dict[str, str] = {}
    while words and words[0].startswith("--"):
        name, _, value = words.pop(0)[2:].partition("=")
        flags[name] = value
    return flags, words


def exec_form(args: str) -> list[str]:
    command = json.loads(args)
    assert isinstance(command, list), f"expected the exec (JSON) form: {args}"
    return [str(word) for word in command]


def container_path(workdir: PurePosixPath, path: str) -> PurePosixPath:
    return workdir / path  # an absolute path replaces the working directory


def on_host(rootfs: Path, path: PurePosixPath) -> Path:
    return rootfs / path.relative_to("/")


def docker_copy(sources: list[str], dest: str, workdir: PurePosixPath, rootfs: Path) -> None:
    """COPY from the build context (the repository) with Docker's rules for files and folders."""
    target = on_host(rootfs, container_path(workdir, dest))
    into_folder = dest.endswith("/") or len(sources) > 1
    for source in sources:
        origin = ROOT / source
        assert origin.exists(), f"COPY {source}: not in the repository"
        if origin.is_dir():  # a folder's contents, not the folder itself
            shutil.copytree(origin, target, ignore=IGNORED, dirs_exist_ok=True)
        else:
            path = target / origin.name if into_folder else target
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, path)


@dataclass(frozen=True)
class Image:
    """The final stage, as folders on this machine."""

    venv: Path
    rootfs: Path
    workdir: Path
    env: dict[str, str]
    volume: str
    cmd: list[str]
    healthcheck: list[str]

    def environment(self, volume_dir: Path, **overrides: str) -> dict[str, str]:
        """The image's ENV with container paths moved here: the venv, and the volume."""
        env = dict(self.env)
        env["PATH"] = env["PATH"].replace(VENV_IN_IMAGE, str(self.venv))
        for name in ("DATABASE_URL", "DEV_SECRETS_FILE"):
            assert f"{self.volume}/" in env[name], f"{name} should point into {self.volume}"
            env[name] = env[name].replace(f"{self.volume}/", f"{volume_dir}/")
        env["HOME"] = "/nonexistent"  # the service user's
        env.update(overrides)
        return env


def build_image(tmp: Path) -> Image:
    builder, final = parse_dockerfile(DOCKERFILE.read_text())

    # The builder stage: copy and install in the Dockerfile's order, so that the dependencies
    # layer is shown to need no more than the files copied before it.
    build_root = tmp / "builder"
    venv = on_host(build_root, PurePosixPath(VENV_IN_IMAGE))
    uv = shutil.which("uv")
    assert uv, "uv is not on PATH"
    major, minor = sys.version_info[:2]
    install_env = {
        key: value for key, value in os.environ.items() if key not in ("VIRTUAL_ENV", "UV_PYTHON")
    }
    install_env.update(
        PATH=f"{Path(uv).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        UV_PROJECT_ENVIRONMENT=str(venv),
        UV_PYTHON_DOWNLOADS="never",
        # The interpreter running the suite (the image has its own Python 3.11).
        UV_PYTHON=str(Path(sys.base_prefix) / "bin" / f"python{major}.{minor}"),
    )
    workdir = PurePosixPath("/")
    ran: list[str] = []
    for instruction in builder.instructions:
        if instruction.keyword == "WORKDIR":
            workdir = container_path(workdir, instruction.args)
        elif instruction.keyword == "COPY":
            flags, words = split_flags(instruction.args)
            assert "from" not in flags
            docker_copy(words[:-1], words[-1], workdir, build_root)
        elif instruction.keyword == "RUN":
            _, words = split_flags(instruction.args)
            command = shlex.join(words)
            if "docker/install.sh" not in command:
                continue  # installing uv itself: the test uses the uv it has
            cwd = on_host(build_root, workdir)
            done = subprocess.run(
                ["/bin/sh", "-c", command],
                cwd=cwd,
                env=install_env,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT,
                check=False,
            )
            assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
            ran.append(command)
    assert ran == INSTALL_COMMANDS
    assert (venv / "bin" / "uvicorn").exists()

    # The final stage: what it copies, its environment and how it starts.
    rootfs = tmp / "final"
    workdir = PurePosixPath("/")
    env = dict(BASE_IMAGE_ENV)
    for instruction in final.instructions:
        if instruction.keyword == "WORKDIR":
            workdir = container_path(workdir, instruction.args)
            on_host(rootfs, workdir).mkdir(parents=True, exist_ok=True)
        elif instruction.keyword == "COPY":
            flags, words = split_flags(instruction.args)
            if "from" in flags:
                assert (flags["from"], words) == (builder.name, [VENV_IN_IMAGE, VENV_IN_IMAGE])
                continue  # the venv stays where it was built: its scripts name their interpreter
            docker_copy(words[:-1], words[-1], workdir, rootfs)
            if "chmod" in flags:
                on_host(rootfs, container_path(workdir, words[-1])).chmod(int(flags["chmod"], 8))
        elif instruction.keyword == "ENV":
            for word in shlex.split(instruction.args):
                name, equals, value = word.partition("=")
                assert equals, f"use ENV NAME=value: {instruction.args}"
                env[name] = Template(value).safe_substitute(env)

    (volume,) = exec_form(final.args("VOLUME")[0])
    (cmd,) = final.args("CMD")
    _, healthcheck = final.args("HEALTHCHECK")[0].split(" CMD ", 1)
    entrypoint, *arguments = exec_form(cmd)
    program = on_host(rootfs, container_path(workdir, entrypoint))
    return Image(
        venv=venv,
        rootfs=rootfs,
        workdir=on_host(rootfs, workdir),
        env=env,
        volume=volume,
        cmd=[str(program), *arguments],
        healthcheck=exec_form(healthcheck),
    )


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    return build_image(tmp_path_factory.mktemp("image"))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Container:
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def running(image: Image, env: dict[str, str], log: Path) -> Iterator[Container]:
    """Runs the image's CMD like `docker run` would, and kills whatever is left of it at the end."""
    with log.open("wb") as sink:
        process = subprocess.Popen(
            image.cmd,
            cwd=image.workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, killed as a whole if need be
        )
    try:
        yield Container(process, log)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=STOP_TIMEOUT)


def wait_until_healthy(container: Container, client: httpx.Client) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if container.process.poll() is not None:
            pytest.fail(
                f"exited with {container.process.returncode} before serving:\n{container.output()}"
            )
        try:
            if client.get("/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"/healthz did not answer within {START_TIMEOUT}s:\n{container.output()}")


def test_the_image_migrates_serves_and_stops_cleanly(image: Image, tmp_path: Path) -> None:
    volume = tmp_path / "data"
    volume.mkdir()
    port = free_port()
    env = image.environment(
        volume,
        PORT=str(port),
        JWT_SECRET=JWT_SECRET,
        REFRESH_JWT_SECRET=REFRESH_JWT_SECRET,
    )
    assert env["ENVIRONMENT"] == "production"
    with (
        running(image, env, tmp_path / "container.log") as container,
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10, trust_env=False) as client,
    ):
        wait_until_healthy(container, client)
        registered = client.post(
            "/api/auth/local/register",
            json={
                "username": "container",
                "email": "container@example.com",
                "password": "Container-pass-123",
            },
        )
        assert registered.status_code == 200, registered.text
        jwt = registered.json()["jwt"]
        me = client.get("/api/users/me", headers={"Authorization": f"Bearer {jwt}"})
        assert me.status_code == 200, me.text
        assert me.json()["username"] == "container"

        health = subprocess.run(
            image.healthcheck, env=env, capture_output=True, text=True, timeout=30, check=False
        )
        assert health.returncode == 0, health.stderr

        container.process.send_signal(signal.SIGTERM)
        returncode = container.process.wait(timeout=STOP_TIMEOUT)
        output = container.output()

    # A graceful shutdown: uvicorn finishes the lifespan, then re-raises the signal it caught, so
    # the status is "killed by SIGTERM" (as PID 1 in a container, where that is a no-op, it is 0).
    assert returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete." in output, output
    assert "Traceback" not in output, output
    assert (volume / "refreshd.db").exists()  # the database lives in the volume
    assert not (volume / ".refreshd-secrets.json").exists()  # production never generates secrets


def test_the_image_refuses_production_without_secrets(image: Image, tmp_path: Path) -> None:
    volume = tmp_path / "data"
    volume.mkdir()
    env = image.environment(volume, PORT=str(free_port()))
    assert env["ENVIRONMENT"] == "production"
    assert "JWT_SECRET" not in env
    assert "REFRESH_JWT_SECRET" not in env
    with running(image, env, tmp_path / "container.log") as container:
        returncode = container.process.wait(timeout=START_TIMEOUT)
        output = container.output()

    assert returncode != 0, output
    assert "JWT_SECRET" in output, output
