"""Independent verifiers of refreshd's access tokens and JWKS, for tests: PyJWT's ``PyJWKClient`` and Node's
``jose`` (``createRemoteJWKSet`` and ``jwtVerify``), each with a clock the test moves instead of sleeping.

Both have one interface (``Verifier``), so a test can be parametrized over them:

    with PyJwtVerifier(jwks_url, "ES256") as verifier:  # or NodeJoseVerifier(...)
        assert verifier.verify(token).ok
        verifier.advance(verifier.cache_max_age + 1)  # the cached key set is now stale
        assert verifier.fetches() == 1

A refusal is a ``Verdict`` with ``ok=False`` and ``error`` the library's own name for it: jose's ``err.code``
(``ERR_JWKS_NO_MATCHING_KEY``, ``ERR_JWT_EXPIRED``, ...), PyJWT's exception class (``PyJWKClientError``,
``ExpiredSignatureError``, ...). A fault of the harness itself (a stuck or dead node process) raises instead.
"""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

import jwt
from jwt.api_jwk import PyJWKSet
from jwt.jwk_set_cache import JWKSetCache

NODE_DIR = Path(__file__).resolve().parent / "node"
REQUEST_TIMEOUT = 30.0  # seconds for one reply of the node process: a stuck process fails the test, never hangs it
NPM_TIMEOUT = 300.0


@dataclass(frozen=True)
class Verdict:
    ok: bool
    kid: str | None
    payload: dict[str, Any] | None
    error: str | None


class Verifier(Protocol):
    name: str
    alg: str
    cache_max_age: float  # seconds a fetched JWK Set is used before it is fetched again
    cooldown: float  # seconds after a fetch before an unknown kid may trigger another

    def verify(self, token: str) -> Verdict: ...
    def advance(self, seconds: float) -> None: ...
    def fetches(self) -> int: ...
    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class _ContextManager:
    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------------- Node's jose

_npm_lock = threading.Lock()
_npm_done = False


def ensure_node_modules() -> None:
    """``npm ci`` in tests/interop/node once per process, when jose is not installed there. Fails, never skips."""
    global _npm_done
    with _npm_lock:
        if _npm_done or (NODE_DIR / "node_modules" / "jose").is_dir():
            _npm_done = True
            return
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("Node.js and npm are needed for tests/interop (npm is not on PATH)")
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT,
            check=False,
        )
        if result.returncode != 0 or not (NODE_DIR / "node_modules" / "jose").is_dir():
            raise RuntimeError(
                f"npm ci in {NODE_DIR} failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        _npm_done = True


class NodeJoseVerifier(_ContextManager):
    """jose's ``createRemoteJWKSet`` (one for the process's life) and ``jwtVerify`` in a ``node verifier.mjs``
    process. Its clock is ``Date.now`` shifted by ``advance``; see node/verifier.mjs."""

    name = "jose"

    def __init__(
        self, jwks_url: str, alg: str, *, cache_max_age: float = 600.0, cooldown: float = 30.0
    ) -> None:
        self.alg = alg
        self.cache_max_age = (
            cache_max_age  # jose's own defaults: cacheMaxAge 10 min, cooldownDuration 30 s
        )
        self.cooldown = cooldown
        ensure_node_modules()
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("Node.js is needed for tests/interop (node is not on PATH)")
        self._process = subprocess.Popen(
            [
                node,
                str(NODE_DIR / "verifier.mjs"),
                jwks_url,
                alg,
                str(round(cache_max_age * 1000)),
                str(round(cooldown * 1000)),
            ],
            cwd=NODE_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._replies: queue.Queue[str | None] = queue.Queue()
        self._stderr: deque[str] = deque(maxlen=200)
        self._threads = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        self.returncode: int | None = None

    def _read_stdout(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._replies.put(line)
        self._replies.put(None)

    def _read_stderr(self) -> None:
        assert self._process.stderr is not None
        for line in self._process.stderr:
            self._stderr.append(line)

    def _fault(self, what: str) -> RuntimeError:
        return RuntimeError(f"node verifier.mjs {what}; its stderr:\n{''.join(self._stderr)}")

    def _request(self, message: dict[str, Any]) -> dict[str, Any]:
        if self._process.poll() is not None or self._process.stdin is None:
            raise self._fault(f"is not running (exit {self._process.returncode})")
        self._process.stdin.write(json.dumps(message) + "\n")
        self._process.stdin.flush()
        try:
            line = self._replies.get(timeout=REQUEST_TIMEOUT)
        except queue.Empty:
            self._process.kill()
            raise self._fault(f"gave no reply to {message['op']} in {REQUEST_TIMEOUT} s") from None
        if line is None:
            raise self._fault(
                f"exited (exit {self._process.wait()}) before replying to {message['op']}"
            )
        reply = json.loads(line)
        if not isinstance(reply, dict):
            raise self._fault(f"replied with something other than an object: {line!r}")
        return reply

    def verify(self, token: str) -> Verdict:
        reply = self._request({"op": "verify", "token": token})
        if reply["ok"]:
            return Verdict(ok=True, kid=reply["kid"], payload=reply["payload"], error=None)
        return Verdict(ok=False, kid=None, payload=None, error=str(reply["error"]))

    def _command(self, message: dict[str, Any]) -> dict[str, Any]:
        reply = self._request(message)
        if not reply["ok"]:
            raise self._fault(f"refused {message}: {reply}")
        return reply

    def advance(self, seconds: float) -> None:
        self._command({"op": "advance", "seconds": seconds})

    def fetches(self) -> int:
        return int(self._command({"op": "fetches"})["fetches"])

    def close(self) -> None:
        """Ends stdin, which ends the process (exit 0, kept in ``returncode``); kills it if it lingers."""
        if self._process.stdin is not None and not self._process.stdin.closed:
            self._process.stdin.close()
        try:
            self.returncode = self._process.wait(timeout=REQUEST_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self.returncode = self._process.wait()
        for thread in self._threads:
            thread.join(timeout=REQUEST_TIMEOUT)
        for stream in (self._process.stdout, self._process.stderr):
            if stream is not None:
                stream.close()


# ---------------------------------------------------------------------------------------------------- PyJWT


class _Clock:
    """Real time plus an offset that only ``advance`` moves: one for monotonic readings, one for the wall clock."""

    def __init__(self) -> None:
        self.offset = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def time(self) -> float:
        return time.time() + self.offset


class _ClockedJWKSetCache(JWKSetCache):
    """PyJWT's JWK Set cache (``PyJWKClient.jwk_set_cache``), its age read from the verifier's clock instead of
    ``time.monotonic()``: the same expiry rule as ``JWKSetCache.is_expired``, on the injected clock."""

    def __init__(self, lifespan: float, clock: _Clock) -> None:
        super().__init__(lifespan)
        self._clock = clock

    def put(self, jwk_set: PyJWKSet | dict[str, Any] | None) -> None:
        super().put(jwk_set)
        if self.jwk_set_with_timestamp is not None:
            self.jwk_set_with_timestamp.timestamp = self._clock.monotonic()

    def is_expired(self) -> bool:
        return (
            self.jwk_set_with_timestamp is not None
            and self.lifespan > -1
            and self._clock.monotonic()
            > self.jwk_set_with_timestamp.get_timestamp() + self.lifespan
        )


class _CountingPyJWKClient(jwt.PyJWKClient):
    def __init__(self, uri: str, *, lifespan: float, cooldown: float, clock: _Clock) -> None:
        super().__init__(uri, cache_jwk_set=True, lifespan=lifespan, cooldown_duration=cooldown)
        self.jwk_set_cache = _ClockedJWKSetCache(lifespan, clock)
        self.fetch_count = 0
        # The refetch cooldown for an unknown kid has no hook: PyJWKClient compares time.monotonic() with
        # _last_successful_fetch, a time.monotonic() reading it takes at each fetch. advance() moves that reading
        # back by the same amount instead, which is the same comparison on the injected clock. Fail loudly if
        # PyJWT changes this, rather than let a cooldown silently run on real time.
        if not hasattr(self, "_last_successful_fetch"):
            raise RuntimeError(
                f"PyJWT {jwt.__version__}'s PyJWKClient has no _last_successful_fetch: "
                "tests/interop/verifiers.py needs to learn how this version times its cooldown"
            )

    def fetch_data(self) -> Any:
        self.fetch_count += 1  # every request for the JWK Set, as jose's count (a failed one too)
        return super().fetch_data()

    def age_cooldown(self, seconds: float) -> None:
        with self._client_lock:
            if self._last_successful_fetch is not None:
                self._last_successful_fetch -= seconds


class PyJwtVerifier(_ContextManager):
    """PyJWT's ``PyJWKClient`` (JWK Set cache on) and ``jwt.decode``, with an injected clock for the cache's age, the
    refetch cooldown and the time claims."""

    name = "pyjwt"

    def __init__(
        self, jwks_url: str, alg: str, *, cache_max_age: float = 300.0, cooldown: float = 30.0
    ) -> None:
        self.alg = alg
        self.cache_max_age = (
            cache_max_age  # PyJWT's own defaults: lifespan 300 s, cooldown_duration 30 s
        )
        self.cooldown = cooldown
        self._clock = _Clock()
        self._client = _CountingPyJWKClient(
            jwks_url, lifespan=cache_max_age, cooldown=cooldown, clock=self._clock
        )

    def verify(self, token: str) -> Verdict:
        try:
            signing_key = self._client.get_signing_key_from_jwt(token)
            # jwt.decode checks exp, nbf and iat against datetime.now(), which no option redirects (its leeway is
            # one number for all three, so it cannot stand for a moved clock). It verifies the signature, the
            # alg and the other claims here; the three time claims are checked just below, by PyJWT's own rules
            # (api_jwt.PyJWT._validate_exp/_nbf/_iat, leeway 0) on the injected clock.
            decoded = jwt.decode_complete(
                token,
                signing_key,
                algorithms=[self.alg],
                options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
            )
            payload: dict[str, Any] = decoded["payload"]
            _check_time_claims(payload, self._clock.time())
        except jwt.PyJWTError as error:
            return Verdict(ok=False, kid=None, payload=None, error=type(error).__name__)
        kid = decoded["header"].get("kid")
        return Verdict(
            ok=True, kid=kid if isinstance(kid, str) else None, payload=payload, error=None
        )

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("advance: seconds must be >= 0")
        self._clock.offset += seconds
        self._client.age_cooldown(seconds)

    def fetches(self) -> int:
        return self._client.fetch_count

    def close(self) -> None:
        """Nothing to release (PyJWKClient opens a connection per fetch); here for the shared interface."""


def _check_time_claims(payload: dict[str, Any], now: float) -> None:
    """PyJWT's checks of iat, nbf and exp, in its order, with its errors (jwt/api_jwt.py, leeway 0), at ``now``
    of the injected clock."""
    if "iat" in payload:
        try:
            iat = int(payload["iat"])
        except (ValueError, TypeError, OverflowError):
            raise jwt.InvalidIssuedAtError("Issued At claim (iat) must be an integer.") from None
        if iat > now:
            raise jwt.ImmatureSignatureError("The token is not yet valid (iat)")
    if "nbf" in payload:
        try:
            nbf = int(payload["nbf"])
        except (ValueError, TypeError, OverflowError):
            raise jwt.DecodeError("Not Before claim (nbf) must be an integer.") from None
        if nbf > now:
            raise jwt.ImmatureSignatureError("The token is not yet valid (nbf)")
    if "exp" in payload:
        try:
            exp = int(payload["exp"])
        except (ValueError, TypeError, OverflowError):
            raise jwt.DecodeError("Expiration Time claim (exp) must be an integer.") from None
        if exp <= now:
            raise jwt.ExpiredSignatureError("Signature has expired")
