"""The root logging setup: one handler for every record (uvicorn's too), as JSON lines or readable text, each
with the current request's id and with secrets redacted."""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from types import TracebackType
from typing import Any, Final, TextIO

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from app.telemetry.redaction import RedactSecrets, redact

# The id of the request being handled (set by app.api.telemetry.RequestIdMiddleware), for every log record.
request_id_var: ContextVar[str | None] = ContextVar("refreshd_request_id", default=None)


def current_request_id() -> str | None:
    """The id of the request being handled, or None outside one."""
    return request_id_var.get()


class RequestIdFilter(logging.Filter):
    """Gives every record a ``request_id`` (the current request's, or ``missing`` outside a request)."""

    def __init__(self, missing: str | None = None) -> None:
        super().__init__()
        self.missing = missing

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get() or self.missing
        return True


_HANDLER_NAME: Final = "refreshd"
_TEXT_FORMAT: Final = "%(asctime)s %(levelname)-7s %(name)s [%(request_id)s] %(message)s"
_SysExcInfo = (
    tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]
)


class _TextFormatter(logging.Formatter):
    """Human-readable lines, redacted whole: tracebacks too (exception messages may quote input), even one
    another handler formatted first and cached on the record. The one exception is a record marked
    ``redaction_exempt`` (the development mailer's link, which must stay clickable: see ``RedactSecrets``)."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text if _exempt(record) else redact(text)


def _exempt(record: logging.LogRecord) -> bool:
    return getattr(record, "redaction_exempt", False) is True and not record.exc_info


def _redact_lines(text: str | list[str]) -> str | list[str]:
    return redact(text) if isinstance(text, str) else [redact(line) for line in text]


class _JsonFormatter(JsonFormatter):
    """One JSON object per line: timestamp, level, logger, message, request_id, then the extras."""

    def formatException(self, ei: _SysExcInfo) -> str | list[str]:  # type: ignore[override]
        return _redact_lines(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str | list[str]:  # type: ignore[override]
        return _redact_lines(super().formatStack(stack_info))

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_text and not record.exc_info:
            record.exc_text = redact(
                record.exc_text
            )  # only then is a traceback cached elsewhere shown
        return super().format(record)

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        timestamp = log_data.pop("timestamp", None)
        return {"timestamp": timestamp, **log_data}


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to ``sys.stderr`` as it is at each record (test runners swap it), as ``logging.lastResort`` does."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def configure_logging(*, json: bool, level: str, stream: TextIO | None = None) -> None:
    """Send every log record, uvicorn's included, through one handler on the root logger.

    ``json``: one JSON object per line (production); otherwise a readable line. Both show the request id and
    have secrets redacted. Calling it again replaces the handler it installed (other handlers, such as a test
    runner's, are left alone). ``stream`` defaults to standard error.
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
        old.close()
    handler: logging.Handler = _StderrHandler() if stream is None else logging.StreamHandler(stream)
    handler.set_name(_HANDLER_NAME)
    if json:
        handler.setFormatter(
            _JsonFormatter(
                ["levelname", "name", "message", "request_id"],
                rename_fields={"levelname": "level", "name": "logger"},
                # uvicorn's copy of its message with terminal colours has no place in JSON.
                reserved_attrs=[*RESERVED_ATTRS, "color_message"],
                timestamp=True,
            )
        )
    else:
        handler.setFormatter(_TextFormatter(_TEXT_FORMAT))
    # In this order: the request id is attached first, so the redaction sees every field.
    handler.addFilter(RequestIdFilter(missing=None if json else "-"))
    handler.addFilter(RedactSecrets())
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        for own in list(logger.handlers):
            logger.removeHandler(own)
        logger.propagate = True
    # refreshd.access replaces uvicorn's access line, which has the query string and no request id.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
