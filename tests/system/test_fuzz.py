"""Schemathesis against the service's own OpenAPI document, on a real server process (SQLite, no rate limits).

Stateless (``test_every_operation_conforms``, one test per operation): the document's examples, boundary values
("coverage") and random data, positive and negative, each request with a valid bearer token. Stateful
(``test_linked_sequences_conform``): OpenAPI links added to the same document (register → login → refresh →
refresh → logout, login → change password, sessions → end one, ...) so that sequences reach what random data never
does: a live refresh token, its successor, a replayed one, a revoked session.

Every response must not be a 5xx, have a documented status code, content type, body and headers, and refuse
data the document says is invalid. In sequences, a session once ended must stay ended. Each failure is a bug in
the service or in its document; the ones found are fixed and pinned by the regression tests at the end, and
excluded from the fuzzing checks by exactly their own shape, nothing wider.

``FUZZ_EXAMPLES=400 FUZZ_SCENARIOS=400`` runs a longer, randomised (not derandomised) search.
"""

from __future__ import annotations

import copy
import logging
import os
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import jsonschema_rs
import pytest
import schemathesis
from jose import jwt as jose_jwt
from schemathesis import Case, CheckContext, Response
from schemathesis.checks import CheckFunction

from app.main import create_app
from tests.servers import running_servers
from tests.support import make_settings, migrate

pytestmark = pytest.mark.slow

# The account of the document's own examples: its login and change-password examples then succeed, and the
# variations generated from them reach the code behind a valid password.
USERNAME = "alice"
EMAIL = "alice@example.com"
PASSWORD = "Secret-pass-123"

MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "50"))  # per operation, random phase
STATEFUL_SCENARIOS = int(os.environ.get("FUZZ_SCENARIOS", "60"))
STATEFUL_STEPS = 10
DERANDOMIZE = not (os.environ.get("FUZZ_EXAMPLES") or os.environ.get("FUZZ_SCENARIOS"))

LOGIN = "POST /api/auth/local"
REGISTER = "POST /api/auth/local/register"
REFRESH_PLUGIN = "POST /api/auth/local/refresh"
REFRESH = "POST /api/auth/refresh"
INTROSPECT = "POST /api/auth/introspect"
INTROSPECTION_TOKEN = "fuzz-introspection-" + "i" * 40
LOGOUT = "POST /api/auth/logout"
CHANGE_PASSWORD = "POST /api/auth/change-password"
ME = "GET /api/users/me"
SESSIONS = "GET /api/auth/sessions"
DELETE_SESSION = "DELETE /api/auth/sessions/{session_id}"
NEEDS_USER = {ME, SESSIONS, DELETE_SESSION, CHANGE_PASSWORD}

# (operation, status) of every request sent; printed when the module's server stops (pytest -s shows it).
STATUSES: Counter[tuple[str, int]] = Counter()


# --- the service --------------------------------------------------------------------------------------------


@dataclass
class Account:
    """The fuzzer's account and a bearer token for it, renewed when a request ended its session."""

    base_url: str
    password: str = PASSWORD
    _token: str | None = None

    def token(self) -> str:
        if self._token is None:
            response = httpx.post(
                f"{self.base_url}/api/auth/local",
                json={"identifier": USERNAME, "password": self.password},
                timeout=10,
            )
            assert response.status_code == 200, response.text
            self._token = str(response.json()["jwt"])
        return self._token

    def forget(self) -> None:
        self._token = None

    def observe(self, case: Case[Any], response: Response) -> None:
        """Follow what a request did to the account: a new password, or an ended session."""
        label = case.operation.label
        if response.status_code == 200 and label == CHANGE_PASSWORD and isinstance(case.body, dict):
            self.password = str(case.body["password"])
            self._token = str(response.json()["jwt"])
        elif (response.status_code == 200 and label in (LOGOUT, DELETE_SESSION)) or (
            response.status_code == 401
        ):
            self._token = None  # log in again before the next request


@dataclass
class Service:
    url: str
    account: Account


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    workdir = tmp_path_factory.mktemp("fuzz")
    database_url = f"sqlite+aiosqlite:///{workdir / 'fuzz.db'}"
    migrate(database_url)
    with running_servers(
        database_url,
        1,
        workdir,
        RATE_LIMIT_ENABLED="false",
        INTROSPECTION_TOKEN=INTROSPECTION_TOKEN,
    ) as [server]:
        registered = httpx.post(
            f"{server.url}/api/auth/local/register",
            json={"username": USERNAME, "email": EMAIL, "password": PASSWORD},
            timeout=10,
        )
        assert registered.status_code == 200, registered.text
        yield Service(server.url, Account(server.url))
    for (label, status), count in sorted(STATUSES.items()):
        print(f"{label:55} {status} x{count}")


def _config() -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "generation": {
                "mode": "all",
                "max-examples": MAX_EXAMPLES,
                "deterministic": DERANDOMIZE,
                "database": "none",  # nothing written into the checkout
            },
            "suppress-health-check": ["all"],
            "output": {"sanitization": {"enabled": False}},  # show the real request in a failure
        }
    )


@contextmanager
def _logging_untouched() -> Iterator[None]:
    """Undo what building an app does to logging (its handler on the root logger), so that importing this module
    changes nothing for the rest of the test session."""
    loggers = [logging.getLogger()] + [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    saved = [(logger, list(logger.handlers), logger.level, logger.propagate) for logger in loggers]
    try:
        yield
    finally:
        for logger, handlers, level, propagate in saved:
            for handler in [h for h in logger.handlers if h not in handlers]:
                logger.removeHandler(handler)
            for handler in [h for h in handlers if h not in logger.handlers]:
                logger.addHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate


# Built in-process so that pytest knows the operations when it collects (schemathesis' fixture-based loader,
# ``schemathesis.pytest.from_fixture``, fails on pytest 9: it reads ``Function._nodeid``, which pytest 9 no
# longer has). ``test_the_served_document_is_the_fuzzed_one`` proves it is exactly what the server serves.
with _logging_untouched():
    # Only the document is built here: no database is opened (and an in-memory one is refused).
    DOCUMENT: dict[str, Any] = create_app(
        make_settings(f"sqlite+aiosqlite:///{Path(tempfile.gettempdir()) / 'fuzz-document.db'}")
    ).openapi()
schema = schemathesis.openapi.from_dict(copy.deepcopy(DOCUMENT), config=_config())


def test_the_served_document_is_the_fuzzed_one(service: Service) -> None:
    response = httpx.get(f"{service.url}/openapi.json", timeout=10)
    assert response.status_code == 200
    assert response.json() == DOCUMENT


# --- checks -------------------------------------------------------------------------------------------------


def missing_required_header(ctx: CheckContext, response: Response, case: Case[Any]) -> bool | None:
    """Schemathesis' check, knowing that Strapi answers a missing bearer token with 403 "Forbidden", not 401
    (CONTRACT §1): that is a rejection too."""
    if (
        response.status_code == 403
        and response.json().get("error", {}).get("name") == "ForbiddenError"
    ):
        return None
    return schemathesis.checks.missing_required_header(ctx, response, case)  # type: ignore[no-any-return]


CHECKS: list[CheckFunction] = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.status_code_conformance,
    schemathesis.checks.content_type_conformance,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.response_headers_conformance,
    schemathesis.checks.unsupported_method,
    schemathesis.checks.allow_header_conformance,
    missing_required_header,
    schemathesis.checks.negative_data_rejection,
]
STATEFUL_CHECKS: list[CheckFunction] = [
    schemathesis.checks.use_after_free,
    schemathesis.checks.ensure_resource_availability,
]


# --- stateless: every operation -----------------------------------------------------------------------------


@schema.parametrize()
def test_every_operation_conforms(case: Case[Any], service: Service) -> None:
    # Introspection is for resource servers, with their own credential; every other operation, the user's token.
    credential = (
        INTROSPECTION_TOKEN if case.operation.label == INTROSPECT else service.account.token()
    )
    headers = {"Authorization": f"Bearer {credential}"}
    response = case.call(base_url=service.url, headers=headers, timeout=30)
    STATUSES[(case.operation.label, response.status_code)] += 1
    service.account.observe(case, response)
    case.validate_response(response, checks=CHECKS, headers=headers)


# --- stateful: sequences that follow links ------------------------------------------------------------------


def _operation_id(document: dict[str, Any], label: str) -> str:
    method, path = label.split(" ", 1)
    return str(document["paths"][path][method.lower()]["operationId"])


def _linked(document: dict[str, Any]) -> dict[str, Any]:
    """The document plus OpenAPI links from each 200 to what a client does next with it."""
    refresh_body = {"refreshToken": "$response.body#/refreshToken"}
    links: dict[str, dict[str, dict[str, Any]]] = {
        REGISTER: {
            "LogIn": {
                "target": LOGIN,
                "requestBody": {
                    "identifier": "$request.body#/username",
                    "password": "$request.body#/password",
                    "requestRefresh": True,
                },
            },
            "ListSessions": {"target": SESSIONS},
        },
        LOGIN: {
            "Refresh": {"target": REFRESH, "requestBody": refresh_body},
            "RefreshPlugin": {"target": REFRESH_PLUGIN, "requestBody": refresh_body},
            "LogOutWithRefreshToken": {"target": LOGOUT, "requestBody": refresh_body},
            "Me": {"target": ME},
            "ListSessions": {"target": SESSIONS},
            "ChangePassword": {
                "target": CHANGE_PASSWORD,
                "requestBody": {"currentPassword": "$request.body#/password"},
            },
        },
        REFRESH: {
            "RefreshAgain": {"target": REFRESH, "requestBody": refresh_body},
            "RefreshPlugin": {"target": REFRESH_PLUGIN, "requestBody": refresh_body},
            "LogOutWithRefreshToken": {"target": LOGOUT, "requestBody": refresh_body},
            "ListSessions": {"target": SESSIONS},
            "Me": {"target": ME},
        },
        REFRESH_PLUGIN: {
            "RefreshAgain": {"target": REFRESH_PLUGIN, "requestBody": refresh_body},
            "Refresh": {"target": REFRESH, "requestBody": refresh_body},
            "LogOutWithRefreshToken": {"target": LOGOUT, "requestBody": refresh_body},
        },
        SESSIONS: {  # the current session comes first
            "EndCurrentSession": {
                "target": DELETE_SESSION,
                "parameters": {"path.session_id": "$response.body#/data/0/id"},
            },
            "EndAnotherSession": {
                "target": DELETE_SESSION,
                "parameters": {"path.session_id": "$response.body#/data/1/id"},
            },
        },
    }
    linked = copy.deepcopy(document)
    for source, named in links.items():
        method, path = source.split(" ", 1)
        linked["paths"][path][method.lower()]["responses"]["200"]["links"] = {
            name: {
                "operationId": _operation_id(document, link["target"]),
                **{key: value for key, value in link.items() if key != "target"},
            }
            for name, link in named.items()
        }
    return linked


def _identity(token: object) -> tuple[str, str] | None:
    """(user, session) named by a token of the service, read without verifying it (the server verified it)."""
    if not isinstance(token, str):
        return None
    try:
        claims = jose_jwt.get_unverified_claims(token)
    except Exception:
        return None
    user, session = claims.get("sub"), claims.get("sid")
    return (str(user), str(session)) if user is not None and session is not None else None


@dataclass
class Sessions:
    """What a scenario has seen of sessions: which exist per user, and which were certainly ended."""

    known: dict[str, set[str]] = field(default_factory=dict)
    ended: set[str] = field(default_factory=set)

    def saw(self, identity: tuple[str, str] | None) -> None:
        if identity is not None:
            self.known.setdefault(identity[0], set()).add(identity[1])

    def end_others(self, user: str, keep: str) -> None:
        self.ended |= self.known.get(user, set()) - {keep}


def test_linked_sequences_conform(service: Service) -> None:
    stateful = schemathesis.openapi.from_dict(_linked(DOCUMENT), config=_config())
    stateful.config.update(base_url=service.url)
    # Negative data is the stateless test's job; here every step is meant to be a client's real next move.
    stateful.config.generation.update(modes=[schemathesis.GenerationMode.POSITIVE])

    class Workflow(stateful.as_state_machine()):  # type: ignore[misc]
        """Each scenario starts signed in as a new account of its own: no state is shared between scenarios,
        which Hypothesis needs to replay one. The latest access token any step obtained is the one sent."""

        jwt = ""
        presented: str | None = None
        sessions: Sessions

        def setup(self) -> None:
            name = f"s{uuid.uuid4().hex[:16]}"
            registered = httpx.post(
                f"{service.url}/api/auth/local/register",
                json={"username": name, "email": f"{name}@example.com", "password": name},
                timeout=10,
            )
            assert registered.status_code == 200, registered.text
            self.jwt = str(registered.json()["jwt"])
            self.sessions = Sessions()
            self.sessions.saw(_identity(self.jwt))

        def before_call(self, case: Case[Any]) -> None:
            if case.operation.label == REGISTER:
                # Random data almost never registers: give the sequence a fresh, valid account.
                name = f"u{uuid.uuid4().hex[:16]}"
                case.body = {"username": name, "email": f"{name}@example.com", "password": name}
            elif case.operation.label == CHANGE_PASSWORD and isinstance(case.body, dict):
                # Reach the success path too: the confirmation matches the generated new password.
                case.body["passwordConfirmation"] = case.body.get("password")

        def get_call_kwargs(self, case: Case[Any]) -> dict[str, Any]:
            label = case.operation.label
            body = case.body if isinstance(case.body, dict) else {}
            token = body.get("refreshToken")
            if label in NEEDS_USER or (label == LOGOUT and not token):
                self.presented = self.jwt
                return {"headers": {"Authorization": f"Bearer {self.jwt}"}}
            in_body = (REFRESH, REFRESH_PLUGIN, LOGOUT)
            self.presented = token if isinstance(token, str) and label in in_body else None
            return {}

        def after_call(self, response: Response, case: Case[Any]) -> None:
            super().after_call(response, case)
            label, status = case.operation.label, response.status_code
            STATUSES[(f"stateful {label}", status)] += 1
            who = _identity(self.presented)
            if who is not None and who[1] in self.sessions.ended and label != LOGOUT:
                assert status != 200, f"{label} answered 200 for session {who[1]}, which had ended"
                STATUSES[
                    (f"stateful: credential of an ended session refused by {label}", status)
                ] += 1
            if status != 200:
                return
            payload = response.json()
            if isinstance(payload, dict) and isinstance(payload.get("jwt"), str):
                self.jwt = payload["jwt"]
                self.sessions.saw(_identity(self.jwt))
            body = case.body if isinstance(case.body, dict) else {}
            if label == LOGOUT and who is not None and body.get("scope", "local") != "others":
                # "local" ends the session; so does "all" (all of them if the credential was live).
                self.sessions.ended.add(who[1])
            elif label == DELETE_SESSION and case.path_parameters:
                self.sessions.ended.add(str(case.path_parameters["session_id"]))
            elif label == CHANGE_PASSWORD and who is not None:
                self.sessions.end_others(*who)

        def validate_response(
            self,
            response: Response,
            case: Case[Any],
            additional_checks: list[CheckFunction] | None = None,
            **kwargs: Any,
        ) -> None:
            case.validate_response(
                response,
                checks=[*CHECKS, *STATEFUL_CHECKS],
                transport_kwargs=kwargs or None,
                recorder=self.recorder,
            )

    Workflow.run(
        settings=hypothesis.settings(
            max_examples=STATEFUL_SCENARIOS,
            stateful_step_count=STATEFUL_STEPS,
            derandomize=DERANDOMIZE,
            database=None,
            deadline=None,
            phases=[hypothesis.Phase.generate],
            suppress_health_check=list(hypothesis.HealthCheck),
        )
    )


# --- the findings, pinned -----------------------------------------------------------------------------------


def _documented(component: str, instance: object) -> bool:
    """Whether the document's schema ``component`` admits ``instance``."""
    definition = {
        **DOCUMENT["components"]["schemas"][component],
        "components": DOCUMENT["components"],
    }
    return bool(jsonschema_rs.validator_for(definition).is_valid(instance))


@pytest.mark.parametrize("value", [0, 1, "false", "yes", 1.0])
def test_login_refuses_a_non_boolean_request_refresh(service: Service, value: object) -> None:
    body = {"identifier": USERNAME, "password": service.account.password, "requestRefresh": value}
    response = httpx.post(f"{service.url}/api/auth/local", json=body, timeout=10)
    # The service refuses it and the document agrees: loosening either one alone fails.
    assert response.status_code == 400, response.text
    assert response.json()["error"]["name"] == "ValidationError", response.text
    assert not _documented("LoginRequest", body)


@pytest.mark.parametrize("value", [{}, [], 5, True])
def test_logout_documents_the_refresh_token_it_accepts(service: Service, value: object) -> None:
    body = {"scope": "local", "refreshToken": value}
    headers = {"Authorization": f"Bearer {service.account.token()}"}
    response = httpx.post(f"{service.url}/api/auth/logout", json=body, headers=headers, timeout=10)
    service.account.forget()  # that session may be over
    # The service refuses it and the document agrees: loosening either one alone fails.
    assert response.status_code == 400, response.text
    assert response.json()["error"]["name"] == "ValidationError", response.text
    assert not _documented("LogoutRequest", body)
