"""The served OpenAPI document, checked by the tools integrators use (``tools/openapi/``, pinned in its lock file):
Redocly's lint finds no error and no warning, and a client generated from it (openapi-typescript's types,
openapi-fetch's calls, compiled with ``tsc --strict``) logs in, refreshes and reads /users/me on a real server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import Server, running_servers
from tests.support import ROOT, migrate

pytestmark = pytest.mark.slow

TOOLS = ROOT / "tools" / "openapi"
BIN = TOOLS / "node_modules" / ".bin"
# No update checks or usage reports from the tools: the run stays the same offline.
QUIET = {"REDOCLY_TELEMETRY": "off", "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true", "CI": "true"}
PASSWORD = "Secret-pass-123"
TIMEOUT = 300


def _run(*command: str | Path, succeeds: bool = True) -> subprocess.CompletedProcess[str]:
    """A command in tools/openapi; with ``succeeds``, its exit code must be 0."""
    result = subprocess.run(
        [str(part) for part in command],
        cwd=TOOLS,
        env={**os.environ, **QUIET},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    if succeeds:
        assert result.returncode == 0, f"{command}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def tools() -> Path:
    """The pinned tools, installed from the lock file if CI has not done it yet."""
    npm = shutil.which("npm")
    assert npm is not None, "Node.js and npm are needed (CI installs them)"
    if not (BIN / "redocly").exists():
        _run(npm, "ci", "--no-audit", "--no-fund")
    return BIN


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("openapi-tools")
    url = f"sqlite+aiosqlite:///{workdir}/refreshd.db"
    migrate(url)
    with running_servers(url, 1, workdir, RATE_LIMIT_ENABLED="false") as (server,):
        yield server


@pytest.fixture(scope="module")
def served_document(server: Server) -> Path:
    """The document exactly as the server serves it, where the tools' scripts look for it."""
    response = httpx.get(f"{server.url}/openapi.json", timeout=10)
    assert response.status_code == 200
    path = TOOLS / "openapi.json"
    path.write_bytes(response.content)
    return path


def test_redocly_finds_no_error_and_no_warning(tools: Path, served_document: Path) -> None:
    result = _run(
        tools / "redocly",
        "lint",
        served_document,
        "--config",
        "redocly.yaml",
        "--format",
        "json",
        succeeds=False,  # the problems are the message
    )
    report: dict[str, Any] = json.loads(result.stdout)
    problems = [
        f"{p['severity']} {p['ruleId']}: {p['message']} at {p['location'][0]['pointer']}"
        for p in report["problems"]
    ]
    assert report["totals"]["errors"] == 0, problems
    assert report["totals"]["warnings"] == 0, problems
    assert result.returncode == 0, result.stderr


def test_a_generated_client_logs_in_refreshes_and_reads_me(
    tools: Path, served_document: Path, server: Server
) -> None:
    registered = httpx.post(
        f"{server.url}/api/auth/local/register",
        json={"username": "generated", "email": "generated@example.com", "password": PASSWORD},
        timeout=10,
    )
    assert registered.status_code == 200, registered.text
    generated = TOOLS / "generated"
    shutil.rmtree(generated, ignore_errors=True)
    _run(tools / "openapi-typescript", served_document, "--output", generated / "schema.d.ts")
    _run(
        tools / "tsc", "--project", "tsconfig.json"
    )  # strict: the calls must fit the document's types
    node = shutil.which("node")
    assert node is not None
    result = _run(node, generated / "client.mjs", server.url, "generated", PASSWORD)
    outcome = json.loads(result.stdout)
    assert outcome["login"] == {"user": "generated", "hasRefreshToken": True}
    assert outcome["refresh"] == {"status": 200, "rotated": True}
    assert outcome["me"]["username"] == "generated"
    assert outcome["me"]["createdAt"].endswith("Z")
    assert outcome["refused"] == {
        "status": 401,
        "code": "REFRESH_TOKEN_INVALID",
        "advice": "log in again",
    }
