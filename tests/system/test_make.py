"""`make run` on a fresh copy of the checkout, with the machine's own Python and no uv on PATH, as on a stock Debian
12 or Ubuntu 24.04: that Python refuses `pip install` (PEP 668), so uv goes into a venv of the checkout's own, and
`make run` installs the runtime only, migrates and serves."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.servers import free_port
from tests.support import ROOT

SYSTEM_PYTHON = Path("/usr/bin/python3")
# What the environment needs to reach the package index (this network's proxy needs its CA bundle).
PASSED_ON = ("HOME", "SSL_CERT_FILE", "SSL_CERT_DIR", "PIP_CERT", "UV_INDEX_URL", "PIP_INDEX_URL")


def _externally_managed() -> bool:
    if not SYSTEM_PYTHON.exists():
        return False
    probe = "import sys, sysconfig, os; print(os.path.exists(os.path.join(sysconfig.get_path('stdlib'), 'EXTERNALLY-MANAGED')))"
    found = subprocess.run(
        [str(SYSTEM_PYTHON), "-c", probe], capture_output=True, text=True, check=False
    )
    return found.stdout.strip() == "True"


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not _externally_managed() or shutil.which("make") is None,
        reason="needs make and a PEP 668 system Python at /usr/bin/python3 (Debian 12, Ubuntu 24.04)",
    ),
]


def _checkout_copy(target: Path) -> None:
    """The tracked files as they are in the working tree: what a fresh clone of this commit holds."""
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, files):
        source = ROOT / os.fsdecode(name)
        if source.is_file():
            destination = target / os.fsdecode(name)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)


def test_make_run_without_uv_on_a_pep_668_python(tmp_path: Path) -> None:
    checkout = tmp_path / "refreshd"
    _checkout_copy(checkout)
    env = {name: os.environ[name] for name in PASSED_ON if name in os.environ}
    env["PATH"] = "/usr/bin:/bin"  # no uv, no pyenv: the system's python3
    assert shutil.which("uv", path=env["PATH"]) is None
    refused = subprocess.run(
        [str(SYSTEM_PYTHON), "-m", "pip", "install", "--dry-run", "uv"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert refused.returncode != 0  # what the old `make setup` ran into
    port = free_port()
    server = subprocess.Popen(
        ["make", "run", f"PORT={port}"],
        cwd=checkout,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # make, uv and uvicorn: one group to stop
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and server.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)  # polling for the server, which is installing first
        else:
            output = server.stdout.read() if server.poll() is not None and server.stdout else ""
            pytest.fail(f"make run did not serve: {output}")
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    assert (checkout / ".tools" / "bin" / "uv").exists()
    # The runtime only: no test tools in the environment `make run` made.
    listed = subprocess.run(
        [
            str(checkout / ".tools" / "bin" / "uv"),
            "pip",
            "list",
            "--python",
            str(checkout / ".venv"),
        ],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.lower()
    assert "fastapi" in listed
    for tool in ("pytest", "mypy", "ruff", "playwright", "httpx"):
        assert f"\n{tool} " not in listed, tool
