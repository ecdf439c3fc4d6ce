"""A staged key rotation on two real server processes sharing one key file, watched by verifiers written by others
(PyJWT's ``PyJWKClient``, Node's ``jose``): no request fails at any step, both clients pick the promoted key up
from the JWK Set without a restart, and both refuse a token of the retired key once it is gone.

Each step is made with the ``refreshd keys`` command line, then reaches one server (SIGHUP), is exercised in that
mixed state (a token of one server used at the other), then reaches the other. The waits the runbook asks for
between steps (JWKS_MAX_AGE for resource servers' caches, JWT_EXPIRES_IN before retiring) are the verifiers' and
the client's clocks moved forward, never a sleep.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import jwt
import pytest

from tests.cli_support import run_cli
from tests.interop.verifiers import NodeJoseVerifier, PyJwtVerifier, Verifier
from tests.servers import Server, running_servers
from tests.support import migrate, recreate_postgres_database

pytestmark = pytest.mark.slow

JWKS = "/.well-known/jwks.json"
PASSWORD = "Secret-pass-123"
INTROSPECTION_TOKEN = "introspection-" + "i" * 40
USERS = 3
ROUNDS_PER_STATE = 2
# The verifiers' JWK Set caches; the servers' access tokens live longer than any clock moved here.
CLIENT_CACHE = 60.0
WAIT_TIMEOUT = 30.0


@pytest.fixture(scope="module")
def shared_postgres() -> str:
    url = recreate_postgres_database("key_rotation")
    migrate(url)
    return url


def keys_cli(key_file: Path, *args: str) -> str:
    result = run_cli("sqlite:///unused.db", "keys", *args, "--file", str(key_file))
    assert result.returncode == 0, result.stderr
    return result.stdout


def published(server: Server) -> list[str]:
    response = httpx.get(f"{server.url}{JWKS}", timeout=5)
    assert response.status_code == 200
    return [key["kid"] for key in response.json()["keys"]]


def reload(server: Server, expected: list[str]) -> None:
    """SIGHUP, then wait until the server publishes ``expected`` (polling a condition, not sleeping for time)."""
    server.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + WAIT_TIMEOUT
    while published(server) != expected:
        assert time.monotonic() < deadline, f"{server.url} still publishes {published(server)}"
        time.sleep(0.05)


def kid_of(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


@dataclass
class Traffic:
    """Users refreshing at one server and using the access token at the other, every token checked by both
    verifiers and by introspection. Any refusal is recorded, with its step."""

    servers: list[Server]
    verifiers: list[Verifier]
    client: httpx.Client
    refresh_tokens: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    requests: int = 0
    kids: set[str] = field(default_factory=set)

    def sign_up(self) -> None:
        for index in range(USERS):
            response = self.client.post(
                f"{self.servers[index % 2].url}/api/auth/local/register",
                json={
                    "username": f"user{index}",
                    "email": f"user{index}@example.com",
                    "password": PASSWORD,
                },
            )
            assert response.status_code == 200, response.text
            login = self.client.post(
                f"{self.servers[index % 2].url}/api/auth/local",
                json={"identifier": f"user{index}", "password": PASSWORD, "requestRefresh": True},
            )
            assert login.status_code == 200, login.text
            self.refresh_tokens.append(login.json()["refreshToken"])

    def rounds(self, step: str) -> None:
        for number in range(ROUNDS_PER_STATE):
            for index in range(USERS):
                issuer = self.servers[(number + index) % 2]
                user = self.servers[(number + index + 1) % 2]
                self._use(step, index, issuer, user)

    def _use(self, step: str, index: int, issuer: Server, user: Server) -> None:
        refreshed = self.client.post(
            f"{issuer.url}/api/auth/refresh", json={"refreshToken": self.refresh_tokens[index]}
        )
        self.requests += 1
        if refreshed.status_code != 200:
            self.failures.append(f"{step}: refresh at {issuer.url}: {refreshed.text}")
            return
        body = refreshed.json()
        self.refresh_tokens[index] = body["refreshToken"]
        token = body["jwt"]
        self.kids.add(kid_of(token))
        me = self.client.get(
            f"{user.url}/api/users/me", headers={"Authorization": f"Bearer {token}"}
        )
        introspected = self.client.post(
            f"{user.url}/api/auth/introspect",
            data={"token": token},
            headers={"Authorization": f"Bearer {INTROSPECTION_TOKEN}"},
        )
        self.requests += 2
        if me.status_code != 200:
            self.failures.append(f"{step}: /users/me at {user.url}: {me.text}")
        if introspected.json().get("active") is not True:
            self.failures.append(f"{step}: introspect at {user.url}: {introspected.text}")
        for verifier in self.verifiers:
            verdict = verifier.verify(token)
            if not verdict.ok:
                self.failures.append(f"{step}: {type(verifier).__name__}: {verdict.error}")


@pytest.fixture
def two_servers(shared_postgres: str, tmp_path: Path) -> Iterator[tuple[list[Server], Path]]:
    key_file = tmp_path / "signing-keys.json"
    keys_cli(key_file, "generate", "--alg", "ES256", "--kid", "k1")
    with running_servers(
        shared_postgres,
        2,
        tmp_path,
        JWT_ALGORITHM="ES256",
        JWT_SIGNING_KEYS_FILE=str(key_file),
        # Only SIGHUP reloads here, so that each step reaches each server exactly when the test says.
        JWT_SIGNING_KEYS_RELOAD_INTERVAL="1d",
        JWT_EXPIRES_IN="1h",
        INTROSPECTION_TOKEN=INTROSPECTION_TOKEN,
        RATE_LIMIT_ENABLED="false",
    ) as servers:
        yield servers, key_file


def test_a_staged_rotation_across_two_servers_fails_no_request(
    two_servers: tuple[list[Server], Path],
) -> None:
    servers, key_file = two_servers
    a, b = servers
    with (
        PyJwtVerifier(f"{a.url}{JWKS}", "ES256", cache_max_age=CLIENT_CACHE) as pyjwt,
        NodeJoseVerifier(f"{b.url}{JWKS}", "ES256", cache_max_age=CLIENT_CACHE) as node,
        httpx.Client(timeout=10) as client,
    ):
        verifiers: list[Verifier] = [pyjwt, node]
        traffic = Traffic(servers, verifiers, client)
        traffic.sign_up()
        traffic.rounds("before")
        assert traffic.kids == {"k1"}
        old_token = client.post(
            f"{a.url}/api/auth/refresh", json={"refreshToken": traffic.refresh_tokens[0]}
        ).json()
        traffic.refresh_tokens[0] = old_token["refreshToken"]
        old_token = old_token["jwt"]

        # 1. Publish k2: it signs nothing yet.
        keys_cli(key_file, "generate", "--alg", "ES256", "--kid", "k2")
        reload(a, ["k1", "k2"])
        traffic.rounds("k2 published on A only")
        reload(b, ["k1", "k2"])
        traffic.rounds("k2 published")
        assert traffic.kids == {"k1"}
        for verifier in verifiers:  # JWKS_MAX_AGE passes: every cache is stale
            verifier.advance(CLIENT_CACHE + 1)

        # 2. Promote k2: it signs, k1 still verifies.
        keys_cli(key_file, "promote", "k2", "--force")
        reload(a, ["k2", "k1"])
        traffic.rounds("k2 signing on A only")
        reload(b, ["k2", "k1"])
        traffic.kids.clear()
        traffic.rounds("k2 signing")
        assert traffic.kids == {"k2"}
        assert client.get(
            f"{b.url}/api/users/me", headers={"Authorization": f"Bearer {old_token}"}
        ).is_success

        # 3. Retire k1, once its last token would have expired (the traffic holds only k2 tokens by now).
        keys_cli(key_file, "retire", "k1", "--force")
        reload(a, ["k2"])
        traffic.rounds("k1 retired on A only")
        reload(b, ["k2"])
        traffic.rounds("k1 retired")

        assert traffic.failures == []
        assert traffic.requests >= 7 * USERS * ROUNDS_PER_STATE * 3

        # A token of the retired key: refused by both servers, and by both clients once their cache is renewed.
        for server in servers:
            refused = client.get(
                f"{server.url}/api/users/me", headers={"Authorization": f"Bearer {old_token}"}
            )
            assert refused.status_code == 401
        introspected = client.post(
            f"{a.url}/api/auth/introspect",
            data={"token": old_token},
            headers={"Authorization": f"Bearer {INTROSPECTION_TOKEN}"},
        )
        assert introspected.json() == {"active": False}
        for verifier in verifiers:
            verifier.advance(CLIENT_CACHE + 1)
        refusals = {type(v).__name__: v.verify(old_token).error for v in verifiers}
        assert refusals == {
            "PyJwtVerifier": "PyJWKClientError",
            "NodeJoseVerifier": "ERR_JWKS_NO_MATCHING_KEY",
        }
        assert node.fetches() >= 3
        assert pyjwt.fetches() >= 3


def test_a_changed_file_is_picked_up_without_a_signal(shared_postgres: str, tmp_path: Path) -> None:
    """A mounted secret changes behind the process's back: the file is watched."""
    key_file = tmp_path / "signing-keys.json"
    keys_cli(key_file, "generate", "--alg", "RS256", "--kid", "r1")
    with running_servers(
        shared_postgres,
        2,
        tmp_path,
        JWT_ALGORITHM="RS256",
        JWT_SIGNING_KEYS_FILE=str(key_file),
        JWT_SIGNING_KEYS_RELOAD_INTERVAL="1s",
        RATE_LIMIT_ENABLED="false",
    ) as servers:
        assert [published(server) for server in servers] == [["r1"], ["r1"]]
        keys_cli(key_file, "generate", "--alg", "RS256", "--kid", "r2")
        deadline = time.monotonic() + WAIT_TIMEOUT
        while any(published(server) != ["r1", "r2"] for server in servers):
            assert time.monotonic() < deadline, [published(server) for server in servers]
            time.sleep(0.05)  # polling for the change, not waiting out a time
