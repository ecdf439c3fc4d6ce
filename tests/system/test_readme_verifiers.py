"""The README's "Verifying tokens in your API" snippets, run as written against a real ES256 server: PyJWT's and
Node jose's verify functions accept its access token and refuse its refresh token."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cli_support import run_cli
from tests.interop.verifiers import NODE_DIR, ensure_node_modules
from tests.servers import Server, running_servers
from tests.support import ROOT, migrate

pytestmark = pytest.mark.slow

PLACEHOLDER = "https://auth.example.com"


def snippet(name: str) -> str:
    """The fenced code block right after ``<!-- snippet: NAME ... -->`` in the README."""
    readme = (ROOT / "README.md").read_text()
    match = re.search(rf"<!-- snippet: {name}\b[^>]*-->\n```\w+\n(.*?)\n```", readme, re.DOTALL)
    assert match is not None, f"README has no snippet {name}"
    return match.group(1)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    workdir = tmp_path_factory.mktemp("readme-verifiers")
    database = f"sqlite+aiosqlite:///{workdir / 'refreshd.db'}"
    migrate(database)
    key_file = workdir / "signing-keys.json"
    result = run_cli(database, "keys", "generate", "--alg", "ES256", "--file", str(key_file))
    assert result.returncode == 0, result.stderr
    with running_servers(
        database,
        1,
        workdir,
        JWT_ALGORITHM="ES256",
        JWT_SIGNING_KEYS_FILE=str(key_file),
        RATE_LIMIT_ENABLED="false",
    ) as (one,):
        yield one


@pytest.fixture(scope="module")
def tokens(server: Server) -> dict[str, str]:
    response = httpx.post(
        f"{server.url}/api/auth/local/register",
        json={"username": "alice", "email": "alice@example.com", "password": "Secret-pass-123"},
    )
    assert response.status_code == 200, response.text
    login = httpx.post(
        f"{server.url}/api/auth/local",
        json={"identifier": "alice", "password": "Secret-pass-123", "requestRefresh": True},
    )
    body: dict[str, str] = login.json()
    return body


def test_the_python_snippet(server: Server, tokens: dict[str, str]) -> None:
    import jwt

    namespace: dict[str, Any] = {}
    exec(snippet("verify-pyjwt").replace(PLACEHOLDER, server.url), namespace)  # noqa: S102 - the README's code
    claims = namespace["verify"](tokens["jwt"])
    assert (claims["sub"], claims["id"], claims["type"]) == ("1", 1, "access")
    with pytest.raises(jwt.PyJWTError):
        namespace["verify"](tokens["refreshToken"])  # HS256, no kid: never accepted
    with pytest.raises(jwt.PyJWTError):
        namespace["verify"](tokens["jwt"][:-4] + "AAAA")


def test_the_node_snippet(server: Server, tokens: dict[str, str], tmp_path: Path) -> None:
    ensure_node_modules()
    node = shutil.which("node")
    assert node is not None, "Node.js is needed (node is not on PATH)"
    module = (
        NODE_DIR / f"readme-snippet-{tmp_path.name}.mjs"
    )  # beside node_modules, so that jose resolves
    module.write_text(
        snippet("verify-jose").replace(PLACEHOLDER, server.url)
        + "\n\nfor (const token of process.argv.slice(2)) {\n"
        + "  try { console.log(JSON.stringify({ ok: true, payload: await verify(token) })); }\n"
        + "  catch (error) { console.log(JSON.stringify({ ok: false, error: error.code ?? error.message })); }\n"
        + "}\n"
    )
    try:
        result = subprocess.run(
            [node, str(module), tokens["jwt"], tokens["refreshToken"]],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        module.unlink()
    assert result.returncode == 0, result.stderr
    accepted, refused = (json.loads(line) for line in result.stdout.splitlines())
    assert accepted["ok"] is True
    assert (accepted["payload"]["sub"], accepted["payload"]["type"]) == ("1", "access")
    assert refused["ok"] is False
