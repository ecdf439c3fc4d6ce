"""The interop verifiers (tests/interop/verifiers.py) against a static JWKS served here, before they are pointed at
refreshd: fresh tokens pass, key rotation is seen after a refetch and only then, removed keys last as long as the
cache, a foreign alg, a forged signature and an expired token are refused. Time moves by ``advance``, never by
sleeping; the server's own request count checks each verifier's ``fetches()``."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tests.interop.verifiers import NodeJoseVerifier, PyJwtVerifier, Verifier

pytestmark = pytest.mark.slow  # starts node processes (and may run npm ci)

JWKS_PATH = "/.well-known/jwks.json"
CACHE_MAX_AGE = 300.0
COOLDOWN = 30.0
# Real time passes between a step and its check too: every boundary is crossed or kept by this much.
MARGIN = 10.0

VerifierFactory = Callable[..., Verifier]
FACTORIES: dict[str, VerifierFactory] = {"pyjwt": PyJwtVerifier, "jose": NodeJoseVerifier}
OTHER_ALG = {"ES256": "RS256", "RS256": "ES256"}
# Each library's name for each refusal.
ERRORS = {
    "pyjwt": {
        "no key": "PyJWKClientError",
        "alg": "InvalidAlgorithmError",
        "signature": "InvalidSignatureError",
        "expired": "ExpiredSignatureError",
    },
    "jose": {
        "no key": "ERR_JWKS_NO_MATCHING_KEY",
        "alg": "ERR_JOSE_ALG_NOT_ALLOWED",
        "signature": "ERR_JWS_SIGNATURE_VERIFICATION_FAILED",
        "expired": "ERR_JWT_EXPIRED",
    },
}


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    private_key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

    @property
    def jwk(self) -> dict[str, Any]:
        public: dict[str, Any]
        if isinstance(self.private_key, ec.EllipticCurvePrivateKey):
            public = dict(ECAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True))
        else:
            public = dict(RSAAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True))
        return {**public, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def sign(self, lifetime: int = 900, **claims: Any) -> str:
        now = int(time.time())
        payload = {"sub": "user-1", "iat": now, "exp": now + lifetime, **claims}
        return jwt.encode(payload, self.private_key, algorithm=self.alg, headers={"kid": self.kid})


def new_key(kid: str, alg: str) -> SigningKey:
    if alg == "ES256":
        return SigningKey(kid, alg, ec.generate_private_key(ec.SECP256R1()))
    assert alg == "RS256"
    return SigningKey(kid, alg, rsa.generate_private_key(public_exponent=65537, key_size=2048))


class JwksServer:
    """Serves the JWK Set of ``serve``'s keys at ``url`` and counts the requests for it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._body = b'{"keys": []}'
        self._requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != JWKS_PATH:
                    self.send_error(HTTPStatus.NOT_FOUND)
                    return
                with outer._lock:
                    outer._requests += 1
                    body = outer._body
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        # Bound and listening once constructed: no readiness to wait for.
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}{JWKS_PATH}"

    def serve(self, *keys: SigningKey) -> None:
        body = json.dumps({"keys": [key.jwk for key in keys]}).encode()
        with self._lock:
            self._body = body

    @property
    def requests(self) -> int:
        with self._lock:
            return self._requests

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def keys() -> dict[str, list[SigningKey]]:
    """Three keys per alg (made once: RSA keys take a while)."""
    return {
        alg: [new_key(f"{alg.lower()}-{n}", alg) for n in range(3)] for alg in ("ES256", "RS256")
    }


@pytest.fixture(params=["ES256", "RS256"])
def alg(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture(params=sorted(FACTORIES))
def library(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
def verifier(library: str, alg: str, jwks_server: JwksServer) -> Iterator[Verifier]:
    with FACTORIES[library](
        jwks_server.url, alg, cache_max_age=CACHE_MAX_AGE, cooldown=COOLDOWN
    ) as made:
        yield made


def assert_fetches(verifier: Verifier, server: JwksServer, expected: int) -> None:
    assert (verifier.fetches(), server.requests) == (expected, expected)


def test_a_fresh_token_is_accepted_and_the_key_set_cached(
    verifier: Verifier, jwks_server: JwksServer, keys: dict[str, list[SigningKey]], alg: str
) -> None:
    key = keys[alg][0]
    jwks_server.serve(key)
    token = key.sign(role="reader")

    for _ in range(2):
        verdict = verifier.verify(token)
        assert verdict.ok, verdict
        assert verdict.kid == key.kid
        assert verdict.payload is not None
        assert (verdict.payload["sub"], verdict.payload["role"]) == ("user-1", "reader")
        assert verdict.error is None
    assert_fetches(verifier, jwks_server, 1)


def test_a_new_kid_is_accepted_once_the_cooldown_allows_a_refetch(
    verifier: Verifier,
    library: str,
    jwks_server: JwksServer,
    keys: dict[str, list[SigningKey]],
    alg: str,
) -> None:
    old, new = keys[alg][0], keys[alg][1]
    jwks_server.serve(old)
    assert verifier.verify(old.sign()).ok
    jwks_server.serve(old, new)
    token = new.sign()

    # Just fetched: the unknown kid may not trigger a refetch yet.
    verdict = verifier.verify(token)
    assert (verdict.ok, verdict.error) == (False, ERRORS[library]["no key"])
    assert_fetches(verifier, jwks_server, 1)

    verifier.advance(
        verifier.cooldown + MARGIN
    )  # past the cooldown, well inside the cache's lifetime
    verdict = verifier.verify(token)
    assert verdict.ok, verdict
    assert verdict.kid == new.kid
    assert_fetches(verifier, jwks_server, 2)
    assert verifier.verify(old.sign()).ok
    assert_fetches(verifier, jwks_server, 2)


def test_a_removed_kid_lasts_as_long_as_the_cached_key_set(
    verifier: Verifier,
    library: str,
    jwks_server: JwksServer,
    keys: dict[str, list[SigningKey]],
    alg: str,
) -> None:
    kept, removed = keys[alg][0], keys[alg][2]
    jwks_server.serve(kept, removed)
    token = removed.sign(lifetime=int(2 * CACHE_MAX_AGE))
    assert verifier.verify(token).ok
    jwks_server.serve(kept)

    verifier.advance(verifier.cache_max_age - MARGIN)
    verdict = verifier.verify(token)
    assert verdict.ok, verdict
    assert_fetches(verifier, jwks_server, 1)

    verifier.advance(2 * MARGIN)  # the cached set is stale: refetched, and the kid is gone from it
    verdict = verifier.verify(token)
    assert (verdict.ok, verdict.error) == (False, ERRORS[library]["no key"])
    assert_fetches(verifier, jwks_server, 2)
    assert verifier.verify(kept.sign()).ok


def test_a_token_of_another_alg_is_refused(
    verifier: Verifier,
    library: str,
    jwks_server: JwksServer,
    keys: dict[str, list[SigningKey]],
    alg: str,
) -> None:
    pinned, foreign = keys[alg][0], keys[OTHER_ALG[alg]][0]
    jwks_server.serve(pinned, foreign)  # the foreign key is published too: only the pin refuses it
    assert verifier.verify(pinned.sign()).ok

    verdict = verifier.verify(foreign.sign())
    assert (verdict.ok, verdict.kid, verdict.payload, verdict.error) == (
        False,
        None,
        None,
        ERRORS[library]["alg"],
    )


def test_a_forged_signature_is_refused(
    verifier: Verifier,
    library: str,
    jwks_server: JwksServer,
    keys: dict[str, list[SigningKey]],
    alg: str,
) -> None:
    published, impostor = keys[alg][0], keys[alg][1]
    jwks_server.serve(published)
    forged = SigningKey(published.kid, alg, impostor.private_key).sign()

    verdict = verifier.verify(forged)
    assert (verdict.ok, verdict.error) == (False, ERRORS[library]["signature"])
    assert verifier.verify(published.sign()).ok


def test_a_token_is_refused_once_the_clock_passes_its_exp(
    verifier: Verifier,
    library: str,
    jwks_server: JwksServer,
    keys: dict[str, list[SigningKey]],
    alg: str,
) -> None:
    key = keys[alg][0]
    jwks_server.serve(key)
    token = key.sign(lifetime=60)
    assert verifier.verify(token).ok

    verifier.advance(60 - MARGIN)
    assert verifier.verify(token).ok
    verifier.advance(2 * MARGIN)
    verdict = verifier.verify(token)
    assert (verdict.ok, verdict.error) == (False, ERRORS[library]["expired"])
    assert verifier.verify(
        key.sign(lifetime=900)
    ).ok  # a token issued now is valid: the key set is fine
    assert_fetches(verifier, jwks_server, 1)


def test_the_node_verifier_survives_bad_requests_and_exits_0_at_end_of_input(
    jwks_server: JwksServer,
) -> None:
    with NodeJoseVerifier(jwks_server.url, "ES256") as verifier:
        verdict = verifier.verify("not.a.jwt")
        assert (verdict.ok, verdict.error) == (False, "ERR_JWS_INVALID")
        assert verifier.fetches() == 0
    assert verifier.returncode == 0
