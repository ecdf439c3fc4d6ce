"""Metrics, request ids, access lines and log redaction, on a small app of the test's own (no database)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Response
from prometheus_client.parser import text_string_to_metric_families

from app.observability import (
    HASH_BUCKETS,
    LOGIN_OUTCOMES,
    REDACTED,
    REFRESH_OUTCOME_BY_CODE,
    REFRESH_OUTCOMES,
    REQUEST_BUCKETS,
    REVOCATION_REASONS,
    Metrics,
    MetricsMiddleware,
    RedactSecrets,
    RequestIdFilter,
    RequestIdMiddleware,
    configure_logging,
    request_id_var,
)

PEER = ("203.0.113.9", 51000)
JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpZCI6MSwic2lkIjoiYWJjIn0.c2lnbmF0dXJlLV9hYmM"
SESSION_ROUTE = "/api/auth/sessions/{session_id}"
handler_logger = logging.getLogger("refreshd.tests.handler")


def build_app(metrics: Metrics) -> FastAPI:
    """Routes with path parameters (one behind a prefix given to include_router), one that raises."""
    app = FastAPI()
    sessions = APIRouter(prefix="/api/auth/sessions")

    @sessions.get("/{session_id}")
    async def get_session(session_id: str) -> dict[str, str | None]:
        handler_logger.info("looking up session %s", session_id, extra={"session": session_id})
        return {"id": session_id, "request_id": request_id_var.get()}

    @sessions.delete("/{session_id}")
    async def delete_session(session_id: str) -> Response:
        return Response(status_code=204)

    items = APIRouter()

    @items.get("/items/{item_id}")
    async def get_item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    app.include_router(sessions)
    app.include_router(items, prefix="/v1")

    @app.get("/confirm")
    async def confirm(confirmation: str) -> dict[str, bool]:
        return {"ok": bool(confirmation)}

    @app.get("/own-id")
    async def own_id() -> Response:
        return Response(headers={"X-Request-ID": "set-by-the-route"})

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError(f"boom with {JWT}")

    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(RequestIdMiddleware)
    return app


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def client(metrics: Metrics) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=build_app(metrics), client=PEER, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state: put it back after the test."""
    names = ["", "uvicorn", "uvicorn.error", "uvicorn.access"]
    saved = {
        name: (
            list(logging.getLogger(name).handlers),
            logging.getLogger(name).level,
            logging.getLogger(name).propagate,
        )
        for name in names
    }
    try:
        yield
    finally:
        for name, (handlers, level, propagate) in saved.items():
            logger = logging.getLogger(name)
            for handler in list(logger.handlers):
                if handler not in handlers:
                    logger.removeHandler(handler)
                    handler.close()
            for handler in handlers:
                if handler not in logger.handlers:
                    logger.addHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate


def sample_values(
    metrics: Metrics, sample: str, labels: tuple[str, ...]
) -> dict[tuple[str, ...], float]:
    """Every sample called ``sample`` in the exposition, keyed by the values of ``labels`` (in that order)."""
    body, _ = metrics.render()
    values: dict[tuple[str, ...], float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            if s.name == sample:
                assert set(s.labels) == set(labels), s
                values[tuple(s.labels[name] for name in labels)] = s.value
    return values


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "refreshd.access"]


# --- Metrics ------------------------------------------------------------------------------------------------------


async def test_requests_are_counted_by_route_template_and_final_status(
    client: httpx.AsyncClient, metrics: Metrics
) -> None:
    for path in ("/api/auth/sessions/a1", "/api/auth/sessions/a1", "/api/auth/sessions/b2"):
        assert (await client.get(path)).status_code == 200
    assert (await client.delete("/api/auth/sessions/a1")).status_code == 204
    assert (await client.post("/api/auth/sessions/a1")).status_code == 405
    assert (await client.get("/v1/items/42")).status_code == 200
    assert (await client.get("/v1/items/not-a-number")).status_code == 422
    assert (await client.get("/confirm?confirmation=x")).status_code == 200
    assert (await client.get("/nope/1")).status_code == 404
    assert (await client.get("/nope/2")).status_code == 404
    assert (await client.request("BREW", "/nope/3")).status_code == 404
    assert (await client.get("/boom")).status_code == 500

    requests = sample_values(metrics, "refreshd_http_requests_total", ("method", "route", "status"))
    assert requests == {
        ("GET", SESSION_ROUTE, "200"): 3,
        ("DELETE", SESSION_ROUTE, "204"): 1,
        ("POST", SESSION_ROUTE, "405"): 1,
        ("GET", "/v1/items/{item_id}", "200"): 1,
        ("GET", "/v1/items/{item_id}", "422"): 1,
        ("GET", "/confirm", "200"): 1,
        ("GET", "<unmatched>", "404"): 2,
        ("OTHER", "<unmatched>", "404"): 1,
        ("GET", "/boom", "500"): 1,
    }
    durations = sample_values(
        metrics, "refreshd_http_request_duration_seconds_count", ("method", "route")
    )
    assert durations == {
        ("GET", SESSION_ROUTE): 3,
        ("DELETE", SESSION_ROUTE): 1,
        ("POST", SESSION_ROUTE): 1,
        ("GET", "/v1/items/{item_id}"): 2,
        ("GET", "/confirm"): 1,
        ("GET", "<unmatched>"): 2,
        ("OTHER", "<unmatched>"): 1,
        ("GET", "/boom"): 1,
    }
    buckets = sample_values(
        metrics, "refreshd_http_request_duration_seconds_bucket", ("method", "route", "le")
    )
    assert {float(le) for method, route, le in buckets if route == "/boom"} == {
        *REQUEST_BUCKETS,
        float("inf"),
    }
    assert buckets[("GET", SESSION_ROUTE, "+Inf")] == 3


async def test_domain_counters_start_at_zero_and_count(metrics: Metrics) -> None:
    metrics.count_login("success")
    metrics.count_login("success")
    metrics.logins_total.labels(outcome="rate_limited").inc()
    metrics.count_refresh("rotated")
    metrics.count_refresh(REFRESH_OUTCOME_BY_CODE["REFRESH_TOKEN_REUSED"])
    metrics.count_revoked("logout_all", 3)
    metrics.count_revoked("logout", 0)
    metrics.count_revoked("reuse_detected")
    metrics.observe_password_hash("verify", 0.03)
    metrics.observe_password_hash("hash", 0.2)

    logins = sample_values(metrics, "refreshd_logins_total", ("outcome",))
    assert logins == {
        **{(outcome,): 0 for outcome in LOGIN_OUTCOMES},
        ("success",): 2,
        ("rate_limited",): 1,
    }
    refreshes = sample_values(metrics, "refreshd_refreshes_total", ("outcome",))
    assert refreshes == {
        **{(outcome,): 0 for outcome in REFRESH_OUTCOMES},
        ("rotated",): 1,
        ("reused",): 1,
    }
    revoked = sample_values(metrics, "refreshd_sessions_revoked_total", ("reason",))
    assert revoked == {
        **{(reason,): 0 for reason in REVOCATION_REASONS},
        ("logout_all",): 3,
        ("reuse_detected",): 1,
    }
    hashing = sample_values(metrics, "refreshd_password_hash_seconds_bucket", ("operation", "le"))
    assert {float(le) for op, le in hashing if op == "verify"} == {*HASH_BUCKETS, float("inf")}
    assert hashing[("verify", "0.025")] == 0
    assert hashing[("verify", "0.05")] == 1
    assert hashing[("hash", "0.15")] == 0
    assert hashing[("hash", "0.25")] == 1
    assert sample_values(metrics, "refreshd_password_hash_seconds_count", ("operation",)) == {
        ("verify",): 1,
        ("hash",): 1,
    }


def test_refresh_codes_cover_every_refusal() -> None:
    assert set(REFRESH_OUTCOME_BY_CODE.values()) <= set(REFRESH_OUTCOMES)
    assert len(REFRESH_OUTCOME_BY_CODE) == 6


def test_each_app_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()  # would raise "Duplicated timeseries" on a shared registry
    first.count_login("blocked")
    assert sample_values(first, "refreshd_logins_total", ("outcome",))[("blocked",)] == 1
    assert sample_values(second, "refreshd_logins_total", ("outcome",))[("blocked",)] == 0
    body, content_type = first.render()
    assert content_type.startswith("text/plain; version=0.0.4")
    assert b"process_resident_memory_bytes" in body or b"python_info" in body


# --- Request ids --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sent",
    ["abc-123", "Req.42:retry_1", "0f" * 16, "x" * 128],
    ids=["dashes", "dots-colons", "hex", "128-chars"],
)
async def test_a_sane_request_id_is_echoed(client: httpx.AsyncClient, sent: str) -> None:
    response = await client.get("/api/auth/sessions/1", headers={"X-Request-ID": sent})
    assert response.headers["X-Request-ID"] == sent
    assert response.json()["request_id"] == sent


@pytest.mark.parametrize(
    "sent",
    ["x" * 129, "two words", "a/b", "<script>", "id;rm", "é", ""],
    ids=["too-long", "space", "slash", "angle", "semicolon", "non-ascii", "empty"],
)
async def test_an_insane_request_id_is_replaced(client: httpx.AsyncClient, sent: str) -> None:
    response = await client.get(
        "/api/auth/sessions/1", headers=[(b"X-Request-ID", sent.encode("utf-8"))]
    )
    generated = response.headers["X-Request-ID"]
    assert generated != sent
    assert len(generated) == 32
    assert int(generated, 16) >= 0
    assert response.json()["request_id"] == generated


async def test_a_request_id_is_generated_when_absent(client: httpx.AsyncClient) -> None:
    first = await client.get("/api/auth/sessions/1")
    second = await client.get("/api/auth/sessions/1")
    ids = {first.headers["X-Request-ID"], second.headers["X-Request-ID"]}
    assert len(ids) == 2
    assert all(len(i) == 32 for i in ids)
    assert request_id_var.get() is None  # nothing left behind once the request is done


async def test_the_response_carries_one_request_id_even_if_the_route_set_one(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/own-id", headers={"X-Request-ID": "from-client"})
    assert response.headers.get_list("X-Request-ID") == ["from-client"]


async def test_records_inside_the_handler_and_the_access_line_carry_the_request_id(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.handler.addFilter(RequestIdFilter())
    with caplog.at_level(logging.INFO, logger="refreshd"):
        await client.get("/api/auth/sessions/s1", headers={"X-Request-ID": "trace-1"})
        await client.get("/api/auth/sessions/s2")
    inside = [r for r in caplog.records if r.name == handler_logger.name]
    assert [r.getMessage() for r in inside] == ["looking up session s1", "looking up session s2"]
    assert getattr(inside[0], "request_id", None) == "trace-1"
    generated = getattr(inside[1], "request_id", None)
    assert isinstance(generated, str)
    assert len(generated) == 32
    lines = access_records(caplog)
    assert [getattr(r, "request_id", None) for r in lines] == ["trace-1", generated]


async def test_one_access_line_per_request_with_the_path_but_not_the_query(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="refreshd.access"):
        await client.get(
            "/confirm?confirmation=s3cr3t-code&x=1", headers={"X-Request-ID": "confirm-1"}
        )
        await client.get("/nope/%0Aforged")
        await client.get("/boom", headers={"X-Request-ID": "boom-1"})
    confirm, missing, boom = access_records(caplog)
    assert confirm.levelno == logging.INFO
    fields = {
        key: getattr(confirm, key, None)
        for key in ("method", "path", "route", "status", "client_ip", "request_id")
    }
    assert fields == {
        "method": "GET",
        "path": "/confirm",
        "route": "/confirm",
        "status": 200,
        "client_ip": PEER[0],
        "request_id": "confirm-1",
    }
    assert isinstance(getattr(confirm, "duration_ms", None), float)
    assert confirm.getMessage().startswith("GET /confirm 200 ")
    # The service's records only: the test's own httpx client logs its request line (redacted) once another
    # test has set the root logger to INFO.
    service = [r for r in caplog.records if not r.name.startswith("httpx")]
    assert not any("s3cr3t" in r.getMessage() or "?" in r.getMessage() for r in service)
    # A decoded newline in the path cannot start a line of its own.
    assert "\n" not in missing.getMessage()
    assert getattr(missing, "path", None) == "/nope/\\x0aforged"
    assert (getattr(missing, "route", None), getattr(missing, "status", None)) == (
        "<unmatched>",
        404,
    )
    assert (getattr(boom, "route", None), getattr(boom, "status", None)) == ("/boom", 500)
    assert getattr(boom, "request_id", None) == "boom-1"


# --- Logging setup ------------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("restore_logging")
async def test_json_lines_parse_and_carry_the_request_id(metrics: Metrics) -> None:
    stream = io.StringIO()
    configure_logging(json=True, level="INFO", stream=stream)
    transport = httpx.ASGITransport(app=build_app(metrics), client=PEER)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        await http.get("/api/auth/sessions/j1", headers={"X-Request-ID": "json-1"})
    logging.getLogger("refreshd.tests").warning(
        "outside %s", "a request", extra={"body": '{"password": "hunter2"}', "attempt": 2}
    )
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    by_logger = {line["logger"]: line for line in lines}
    inside = by_logger[handler_logger.name]
    assert list(inside)[:5] == ["timestamp", "level", "logger", "message", "request_id"]
    assert inside["level"] == "INFO"
    assert inside["message"] == "looking up session j1"
    assert inside["request_id"] == "json-1"
    assert inside["session"] == "j1"
    assert inside["timestamp"].endswith("+00:00")
    access = by_logger["refreshd.access"]
    assert {k: access[k] for k in ("method", "path", "route", "status", "request_id")} == {
        "method": "GET",
        "path": "/api/auth/sessions/j1",
        "route": SESSION_ROUTE,
        "status": 200,
        "request_id": "json-1",
    }
    assert access["client_ip"] == PEER[0]
    outside = by_logger["refreshd.tests"]
    assert outside["request_id"] is None
    assert outside["message"] == "outside a request"
    assert outside["body"] == '{"password": "[REDACTED]"}'
    assert outside["attempt"] == 2
    assert "hunter2" not in stream.getvalue()


@pytest.mark.usefixtures("restore_logging")
def test_tracebacks_are_redacted_in_both_formats() -> None:
    for as_json in (True, False):
        stream = io.StringIO()
        configure_logging(json=as_json, level="INFO", stream=stream)
        try:
            raise ValueError(f"bad token {JWT}")
        except ValueError:
            logging.getLogger("refreshd.tests").exception("failed")
        output = stream.getvalue()
        assert "ValueError: bad token [REDACTED]" in output
        assert JWT not in output


@pytest.mark.usefixtures("restore_logging")
def test_configure_logging_is_idempotent_and_readable_in_development() -> None:
    stream = io.StringIO()
    configure_logging(json=True, level="DEBUG", stream=io.StringIO())
    configure_logging(json=False, level="INFO", stream=stream)
    configure_logging(json=False, level="INFO", stream=stream)
    root = logging.getLogger()
    assert [h.get_name() for h in root.handlers].count("refreshd") == 1
    assert root.level == logging.INFO
    token = request_id_var.set("dev-1")
    try:
        logging.getLogger("refreshd.tests").info("with %s", "an id")
    finally:
        request_id_var.reset(token)
    logging.getLogger("refreshd.tests").info("without one")
    logging.getLogger("refreshd.tests").debug("below the level")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("INFO    refreshd.tests [dev-1] with an id")
    assert lines[1].endswith("INFO    refreshd.tests [-] without one")


@pytest.mark.usefixtures("restore_logging")
def test_uvicorn_logs_share_the_root_format() -> None:
    uvicorn_error = logging.getLogger("uvicorn.error")
    uvicorn_error.addHandler(
        logging.StreamHandler(io.StringIO())
    )  # as uvicorn's dictConfig leaves it
    logging.getLogger("uvicorn").propagate = False
    stream = io.StringIO()
    configure_logging(json=True, level="INFO", stream=stream)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        assert logging.getLogger(name).propagate
        assert logging.getLogger(name).handlers == []
    uvicorn_error.info("Started server process [%d]", 42, extra={"color_message": "\x1b[36m%d"})
    logging.getLogger("uvicorn.access").info("GET /x?code=1 200")  # replaced by refreshd.access
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["logger"], line["message"]) for line in lines] == [
        ("uvicorn.error", "Started server process [42]")
    ]
    assert "color_message" not in lines[0]


# --- Redaction ----------------------------------------------------------------------------------------------------

SCRUBBED = [
    (f"issued {JWT} to alice", f"issued {REDACTED} to alice"),
    (f"Authorization: Bearer {JWT}", f"Authorization: Bearer {REDACTED}"),
    ("authorization: bearer opaque-token_123", f"authorization: bearer {REDACTED}"),
    ("password=hunter2 ok", f"password={REDACTED} ok"),
    ("passwordConfirmation=hunter2", f"passwordConfirmation={REDACTED}"),
    ("currentPassword = old-pass", f"currentPassword = {REDACTED}"),
    ("refreshToken=abc.def", f"refreshToken={REDACTED}"),
    ("jwt=abc", f"jwt={REDACTED}"),
    ("token=abc, next", f"token={REDACTED}, next"),
    ("code=123456", f"code={REDACTED}"),
    ("confirmation=abcdef", f"confirmation={REDACTED}"),
    ("secret=shh", f"secret={REDACTED}"),
    ("JWT_SECRET=shh", f"JWT_SECRET={REDACTED}"),
    ("password='two words'", f"password='{REDACTED}'"),
    ('{"password": "hunter2", "identifier": "alice"}', f'{{"password": "{REDACTED}", "identifier": "alice"}}'),
    ('{"refreshToken":"r1","jwt": "j1"}', f'{{"refreshToken":"{REDACTED}","jwt": "{REDACTED}"}}'),
    ('{"password": "esc\\"aped"}', f'{{"password": "{REDACTED}"}}'),
    ('{"code": 123456, "rotated": true}', f'{{"code": {REDACTED}, "rotated": true}}'),
    ("{'currentPassword': 'x1', 'username': 'bob'}", f"{{'currentPassword': '{REDACTED}', 'username': 'bob'}}"),
    ("GET /api/auth/email-confirmation?confirmation=abc123&x=1", f"GET /api/auth/email-confirmation?confirmation={REDACTED}&x=1"),
    ("GET /reset?code=deadbeef HTTP/1.1", f"GET /reset?code={REDACTED} HTTP/1.1"),
    ("a password=p1 and a token=t1", f"a password={REDACTED} and a token={REDACTED}"),
]  # fmt: skip
ORDINARY = [
    "user alice logged in from 203.0.113.7",
    "purged 5 dead sessions",
    "GET /api/auth/sessions/5 200 3.2ms",
    "refreshd ready (production, database postgresql://refreshd:***@db/refreshd)",
    "session 3f2a revoked (reason=logout_all, session_id=3f2a)",
    "passwords must be at least 6 characters; the code path for tokens is fine",
    "refresh refused: REFRESH_TOKEN_REUSED",
    "eyJ alone is not a token",
    '{"rotated": true, "refreshToken": null, "error_code": 5}',
]


def record(msg: object, *args: object, **extra: Any) -> logging.LogRecord:
    return logging.getLogger("refreshd.tests").makeRecord(
        "refreshd.tests", logging.INFO, __file__, 1, msg, args, None, extra=extra or None
    )


def scrubbed(made: logging.LogRecord) -> logging.LogRecord:
    assert RedactSecrets().filter(made) is True
    return made


@pytest.mark.parametrize(("text", "expected"), SCRUBBED)
def test_each_secret_form_is_redacted(text: str, expected: str) -> None:
    assert scrubbed(record(text)).getMessage() == expected
    assert scrubbed(record("%s", text)).getMessage() == expected  # in the arguments as well


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert scrubbed(record(text)).getMessage() == text


@pytest.mark.parametrize(
    ("msg", "args", "expected"),
    [
        ("%d sessions for user %s", (3, 7), "3 sessions for user 7"),
        ("body %r", ({"password": "p1", "n": 1},), f"body {{'password': '{REDACTED}', 'n': 1}}"),
        ("%s", (None,), "None"),
        (42, (), "42"),
        ("%s and %s", ("one",), "%s and %s ('one',)"),  # a broken format does not raise
        ("%s", ("a", "password=p1"), f"%s ('a', 'password={REDACTED}')"),
    ],
)
def test_non_string_and_broken_arguments_do_not_crash(
    msg: object, args: tuple[object, ...], expected: str
) -> None:
    made = scrubbed(record(msg, *args))
    assert made.getMessage() == expected
    assert not made.args


def test_extras_are_scrubbed_without_touching_the_callers_objects() -> None:
    payload = {"password": "p1", "nested": ["Bearer abcdef", {"refreshToken": "r1"}], "n": 1}
    made = scrubbed(
        record(
            "event",
            body="refreshToken=r2",
            refreshToken="r3",
            refresh_token=True,
            attempts=3,
            payload=payload,
        )
    )
    extras = {k: getattr(made, k) for k in ("body", "refreshToken", "refresh_token", "attempts")}
    assert extras == {
        "body": f"refreshToken={REDACTED}",
        "refreshToken": REDACTED,
        "refresh_token": True,
        "attempts": 3,
    }
    assert made.__dict__["payload"] == {
        "password": REDACTED,
        "nested": [f"Bearer {REDACTED}", {"refreshToken": REDACTED}],
        "n": 1,
    }
    assert payload["password"] == "p1"


def test_a_dict_message_stays_a_dict() -> None:
    made = scrubbed(record({"event": "login", "password": "p1"}))
    assert made.msg == {"event": "login", "password": REDACTED}
