"""ES256 and RS256 access tokens through the real app: the JWK Set, tokens other services can verify, a key file
changed under a running app, hostile tokens, and the starts that are refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi import FastAPI
from jose import jwk as jose_jwk
from jose import jws
from jose import jwt as jose_jwt

from app.main import create_app
from app.security.keys import generate_key
from app.services.key_file import KeyFileWatcher
from app.services.key_rotation import KeyFile, RotationPolicy
from app.settings import Settings
from tests.api.helpers import bearer, error_of, registered_with_refresh
from tests.conftest import Harness
from tests.support import T0, FakeClock

JWKS = "/.well-known/jwks.json"
POLICY = RotationPolicy(timedelta(minutes=15), timedelta(seconds=10), timedelta(minutes=5))


def key_file(tmp_path: Path, algorithm: str, *kids: str) -> KeyFile:
    keys = KeyFile(tmp_path / "signing-keys.json", POLICY)
    for kid in kids:
        keys.generate(algorithm, T0, kid)
    return keys


def header_of(token: str) -> dict[str, Any]:
    return dict(jose_jwt.get_unverified_header(token))


def watcher_of(app: FastAPI) -> KeyFileWatcher:
    watcher: KeyFileWatcher = app.state.key_watcher
    return watcher


async def me(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get("/api/users/me", headers=bearer(token))


def verify_with_jwks(token: str, published: dict[str, Any], algorithm: str) -> dict[str, Any]:
    """What a resource server does: the key named by the token's kid, from the published set, alg pinned."""
    (entry,) = [k for k in published["keys"] if k["kid"] == header_of(token)["kid"]]
    claims: dict[str, Any] = json.loads(
        jws.verify(token, jose_jwk.construct(entry, algorithm), [algorithm])
    )
    return claims


async def test_hs256_publishes_an_empty_key_set(client: httpx.AsyncClient) -> None:
    response = await client.get(JWKS)
    assert response.status_code == 200
    assert response.json() == {"keys": []}
    assert response.headers["cache-control"] == "public, max-age=300"
    assert response.headers["etag"].startswith('"')


@pytest.mark.parametrize("algorithm", ["ES256", "RS256"])
async def test_tokens_verify_with_the_published_keys(
    harness: Harness, settings_factory: Callable[..., Settings], tmp_path: Path, algorithm: str
) -> None:
    keys = key_file(tmp_path, algorithm, "k1")
    client = await harness.client(
        settings_factory(jwt_algorithm=algorithm, jwt_signing_keys_file=keys.path)
    )
    response = await client.get(JWKS)
    published = response.json()
    assert [(k["kid"], k["alg"], k["use"]) for k in published["keys"]] == [("k1", algorithm, "sig")]
    assert "d" not in published["keys"][0]
    body = await registered_with_refresh(client)
    assert header_of(body["jwt"]) == {"alg": algorithm, "kid": "k1", "typ": "JWT"}
    claims = verify_with_jwks(body["jwt"], published, algorithm)
    assert (claims["id"], claims["sub"], claims["type"]) == (1, "1", "access")
    assert (await me(client, body["jwt"])).json()["username"] == "alice"
    # Refresh tokens stay HMAC: nobody else verifies them.
    assert header_of(body["refreshToken"]) == {"alg": "HS256", "typ": "JWT"}
    refreshed = await client.post("/api/auth/refresh", json={"refreshToken": body["refreshToken"]})
    assert header_of(refreshed.json()["jwt"])["kid"] == "k1"


async def test_the_key_set_is_revalidated_with_its_etag(
    harness: Harness, settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    keys = key_file(tmp_path, "ES256", "k1")
    client = await harness.client(
        settings_factory(jwt_algorithm="ES256", jwt_signing_keys_file=keys.path, jwks_max_age="1h")
    )
    first = await client.get(JWKS)
    assert first.headers["cache-control"] == "public, max-age=3600"
    etag = first.headers["etag"]
    again = await client.get(JWKS, headers={"If-None-Match": etag})
    assert (again.status_code, again.content) == (304, b"")
    assert again.headers["etag"] == etag
    assert (await client.get(JWKS, headers={"If-None-Match": f'"x", W/{etag}'})).status_code == 304
    assert (await client.get(JWKS, headers={"If-None-Match": "*"})).status_code == 304
    other = await client.get(JWKS, headers={"If-None-Match": '"other"'})
    assert other.status_code == 200
    assert other.headers["access-control-allow-origin"] == "*"


async def test_staged_rotation_in_a_running_app_logs_nobody_out(
    harness: Harness, settings_factory: Callable[..., Settings], tmp_path: Path, clock: FakeClock
) -> None:
    keys = key_file(tmp_path, "ES256", "k1")
    client = await harness.client(
        settings_factory(jwt_algorithm="ES256", jwt_signing_keys_file=keys.path)
    )
    watcher = watcher_of(harness.apps[-1])
    body = await registered_with_refresh(client)
    old_token = body["jwt"]

    keys.generate("ES256", clock(), "k2")  # published, not signing
    assert await watcher.check()
    assert [k["kid"] for k in (await client.get(JWKS)).json()["keys"]] == ["k1", "k2"]
    refreshed = (await client.post("/api/auth/refresh", json=body)).json()
    assert header_of(refreshed["jwt"])["kid"] == "k1"
    body["refreshToken"] = refreshed["refreshToken"]

    clock.advance(timedelta(minutes=6))
    keys.promote("k2", clock())
    assert await watcher.check()
    assert not await watcher.check()  # the same bytes: nothing to do
    assert [k["kid"] for k in (await client.get(JWKS)).json()["keys"]] == ["k2", "k1"]
    exposition = (await client.get("/metrics")).text
    assert 'refreshd_signing_key_info{kid="k2"} 1.0' in exposition
    assert 'kid="k1"' not in exposition
    assert 'refreshd_signing_key_reloads_total{outcome="loaded"} 2.0' in exposition
    refreshed = (await client.post("/api/auth/refresh", json=body)).json()
    body["refreshToken"] = refreshed["refreshToken"]
    assert header_of(refreshed["jwt"])["kid"] == "k2"
    assert (await me(client, old_token)).status_code == 200  # k1 still verifies

    clock.advance(timedelta(minutes=16))
    keys.retire("k1", clock())
    assert await watcher.check()
    assert [k["kid"] for k in (await client.get(JWKS)).json()["keys"]] == ["k2"]
    refused = await me(client, old_token)
    assert refused.status_code == 401
    assert error_of(refused)["details"]["code"] == "TOKEN_MALFORMED"
    fresh = (await client.post("/api/auth/refresh", json=body)).json()["jwt"]
    assert header_of(fresh)["kid"] == "k2"
    assert (await me(client, fresh)).status_code == 200


async def test_a_file_that_does_not_load_leaves_the_keys_in_use(
    harness: Harness,
    settings_factory: Callable[..., Settings],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    keys = key_file(tmp_path, "ES256", "k1")
    client = await harness.client(
        settings_factory(jwt_algorithm="ES256", jwt_signing_keys_file=keys.path)
    )
    watcher = watcher_of(harness.apps[-1])
    token = (await registered_with_refresh(client))["jwt"]
    before = (await client.get(JWKS)).content
    good = keys.path.read_bytes()
    other = generate_key("RS256", T0, "r1")
    for broken in (
        b'{"keys": [{"kid": "k1", "kty": "EC"',  # half written
        b'{"keys": []}',
        json.dumps({"keys": [dict(other.source)]}).encode(),  # another algorithm
    ):
        keys.path.write_bytes(broken)
        assert not await watcher.check()
        assert (await client.get(JWKS)).content == before
        assert (await me(client, token)).status_code == 200
    assert "signing keys not reloaded, the keys in use stay" in caplog.text
    keys.path.unlink()
    assert not await watcher.check()
    assert not await watcher.check()  # the same problem: logged and counted once
    keys.path.write_bytes(good)
    assert not await watcher.check()  # back to what is in use
    exposition = (await client.get("/metrics")).text
    assert 'refreshd_signing_key_reloads_total{outcome="refused"} 4.0' in exposition
    assert 'refreshd_signing_key_reloads_total{outcome="loaded"} 0.0' in exposition
    assert 'refreshd_signing_key_info{kid="k1"} 1.0' in exposition
    assert caplog.text.count("does not exist") == 1


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


NONE_HEADER = b'{"alg":"none","kid":"k1"}'


def _forge_hs256(public_secret: bytes, claims: dict[str, Any], kid: str) -> str:
    signing_input = (
        f"{_b64(json.dumps({'alg': 'HS256', 'kid': kid, 'typ': 'JWT'}).encode())}."
        f"{_b64(json.dumps(claims).encode())}"
    )
    mac = hmac.new(public_secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


async def test_hostile_tokens_are_refused_over_http(
    harness: Harness, settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    keys = key_file(tmp_path, "ES256", "k1")
    client = await harness.client(
        settings_factory(jwt_algorithm="ES256", jwt_signing_keys_file=keys.path)
    )
    genuine = (await registered_with_refresh(client))["jwt"]
    claims = jose_jwt.get_unverified_claims(genuine)
    (entry,) = (await client.get(JWKS)).json()["keys"]
    pem = jose_jwk.construct(entry, "ES256").to_pem()
    stranger = generate_key("ES256", T0, "k1")
    hostile = {
        "hs256-with-public-pem": _forge_hs256(pem, claims, "k1"),
        "hs256-with-public-jwk": _forge_hs256(json.dumps(entry).encode(), claims, "k1"),
        "alg-none": f"{_b64(NONE_HEADER)}.{genuine.split('.')[1]}.",
        "unknown-kid": jose_jwt.encode(
            claims, dict(stranger.source), algorithm="ES256", headers={"kid": "k9"}
        ),
        "our-kid-their-key": jose_jwt.encode(
            claims, dict(stranger.source), algorithm="ES256", headers={"kid": "k1"}
        ),
        "embedded-jwk": jose_jwt.encode(
            claims,
            dict(stranger.source),
            algorithm="ES256",
            headers={"kid": "k1", "jwk": dict(stranger.public_jwk)},
        ),
    }
    for name, token in hostile.items():
        response = await me(client, token)
        assert response.status_code == 401, name
        assert error_of(response)["details"]["code"] == "TOKEN_MALFORMED", name
    assert (await me(client, genuine)).status_code == 200


async def test_switching_from_hs256_to_es256_keeps_every_session(
    harness: Harness, settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    before = await harness.client(settings_factory())
    body = await registered_with_refresh(before)
    keys = key_file(tmp_path, "ES256", "k1")
    after = await harness.client(
        settings_factory(jwt_algorithm="ES256", jwt_signing_keys_file=keys.path)
    )
    assert (await me(after, body["jwt"])).status_code == 401  # an HS256 access token: refresh it
    refreshed = await after.post("/api/auth/refresh", json={"refreshToken": body["refreshToken"]})
    assert refreshed.status_code == 200, refreshed.text
    assert header_of(refreshed.json()["jwt"])["alg"] == "ES256"
    assert (await me(after, refreshed.json()["jwt"])).status_code == 200


def _refusal(settings: Settings) -> str:
    with pytest.raises(SystemExit) as caught:
        create_app(settings)
    return str(caught.value)


def test_starts_refused_for_unusable_keys(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    path = tmp_path / "signing-keys.json"
    assert "JWT_ALGORITHM=ES256 needs JWT_SIGNING_KEYS_FILE" in _refusal(
        settings_factory(jwt_algorithm="ES256")
    )
    es256 = settings_factory(jwt_algorithm="ES256", jwt_signing_keys_file=path)
    assert f"JWT_SIGNING_KEYS_FILE: {path} does not exist" in _refusal(es256)
    path.write_text("{}")
    assert 'not a JWK Set: {"keys": [...]}' in _refusal(es256)
    one = json.loads(json.dumps(dict(generate_key("ES256", T0, "k1").source)))
    two = json.loads(json.dumps(dict(generate_key("ES256", T0, "k1").source)))
    path.write_text(json.dumps({"keys": [one, two]}))
    assert "two keys have the kid 'k1'" in _refusal(es256)
    path.write_text(json.dumps({"keys": [one]}))
    rs256 = settings_factory(jwt_algorithm="RS256", jwt_signing_keys_file=path)
    assert "key 'k1' is a ES256 key; JWT_ALGORITHM is RS256" in _refusal(rs256)
    public = {k: v for k, v in one.items() if k != "d"}
    path.write_text(json.dumps({"keys": [public]}))
    assert "key 'k1' has no private part" in _refusal(es256)


def test_production_refuses_a_key_file_others_may_read(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    keys = key_file(tmp_path, "ES256", "k1")
    production = settings_factory(
        environment="production", jwt_algorithm="ES256", jwt_signing_keys_file=keys.path
    )
    for mode in (0o644, 0o604, 0o660, 0o666):
        os.chmod(keys.path, mode)
        assert f"has mode {mode:04o}: others may read or change the private keys" in _refusal(
            production
        )
    for mode in (0o600, 0o640, 0o400, 0o440):
        os.chmod(keys.path, mode)
        create_app(production)  # builds: nothing connects before the lifespan


def test_a_refused_start_never_shows_a_private_part(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    path = tmp_path / "signing-keys.json"
    key = dict(generate_key("ES256", T0, "k1").source)
    forged = key | {"d": dict(generate_key("ES256", T0, "k2").source)["d"]}
    path.write_text(json.dumps({"keys": [forged]}))
    message = _refusal(settings_factory(jwt_algorithm="ES256", jwt_signing_keys_file=path))
    assert "key 'k1' is not a valid EC private key" in message
    assert forged["d"] not in message
    assert key["d"] not in message


def test_pem_of_the_private_key_is_not_needed(tmp_path: Path) -> None:
    """The file is JWK only; a PEM dropped in its place is refused with the reason, not parsed as a key."""
    pem = generate_key("ES256", T0, "k1").public.prepared_key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    path = tmp_path / "signing-keys.json"
    path.write_bytes(pem)
    settings = Settings(
        _env_file=None, jwt_algorithm="ES256", jwt_signing_keys_file=path, environment="test"
    )
    assert "the key set is not JSON" in _refusal(settings)


async def test_moving_from_hs512_keeps_sessions_with_refresh_jwt_algorithm(
    harness: Harness, settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    before = await harness.client(settings_factory(jwt_algorithm="HS512"))
    body = await registered_with_refresh(before)
    assert header_of(body["refreshToken"])["alg"] == "HS512"
    keys = key_file(tmp_path, "ES256", "k1")
    es256 = {"jwt_algorithm": "ES256", "jwt_signing_keys_file": keys.path}
    forgetting = await harness.client(settings_factory(**es256))
    refused = await forgetting.post(
        "/api/auth/refresh", json={"refreshToken": body["refreshToken"]}
    )
    assert error_of(refused)["details"]["code"] == "REFRESH_TOKEN_INVALID"  # HS256 expected
    keeping = await harness.client(settings_factory(**es256, refresh_jwt_algorithm="HS512"))
    refreshed = await keeping.post("/api/auth/refresh", json={"refreshToken": body["refreshToken"]})
    assert refreshed.status_code == 200, refreshed.text
    assert header_of(refreshed.json()["jwt"])["alg"] == "ES256"
    assert header_of(refreshed.json()["refreshToken"])["alg"] == "HS512"


def test_the_documented_key_set_holds_real_public_keys() -> None:
    from app.api.openapi_examples import success_examples

    example = success_examples("getJwks")["es256"]["value"]
    for entry in example["keys"]:
        jose_jwk.construct(entry, "ES256")  # raises for a point that is not on P-256


def test_a_key_file_that_is_not_a_regular_file_is_refused(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    fifo = tmp_path / "signing-keys.json"
    os.mkfifo(fifo)
    settings = settings_factory(jwt_algorithm="ES256", jwt_signing_keys_file=fifo)
    assert f"{fifo} is not a regular file" in _refusal(settings)
