"""A real SMTP server on loopback for tests (aiosmtpd in a thread of its own), collecting what it receives."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.servers import free_port


class SmtpServer:
    """What the server received: ``messages`` (parsed) and ``envelopes`` (MAIL FROM, RCPT TO), in order.

    ``reply`` is what the server answers to DATA: set it to a 4xx or 5xx line to make it refuse.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.reply = "250 OK"
        self._arrived = threading.Condition()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if not self.reply.startswith("250"):
            return self.reply
        parsed = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        with self._arrived:
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            self.messages.append(parsed)
            self._arrived.notify_all()
        return "250 OK"

    def wait_for(self, count: int, timeout: float = 5.0) -> list[EmailMessage]:
        """Block until ``count`` messages have arrived (at most ``timeout`` seconds); all of them."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self.messages) >= count, timeout):
                raise AssertionError(
                    f"expected {count} message(s) within {timeout}s, got {len(self.messages)}"
                )
            return list(self.messages)

    async def wait_for_async(
        self,
        count: int,
        timeout: float = 5.0,  # noqa: ASYNC109 - bounds the worker thread, which asyncio.timeout cannot stop
    ) -> list[EmailMessage]:
        """``wait_for`` without blocking the test's event loop."""
        return await asyncio.to_thread(self.wait_for, count, timeout)


def _authenticator(username: str, password: str) -> Any:
    def authenticate(
        server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> Any:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == username.encode()
            and auth_data.password == password.encode()
        )
        # handled=False: aiosmtpd answers (235 or 535) itself; True would leave the client waiting.
        return AuthResult(success=ok, handled=False)

    return authenticate


@contextmanager
def smtp_server(auth: tuple[str, str] | None = None) -> Iterator[SmtpServer]:
    """An SMTP server on 127.0.0.1 and a free port; with ``auth`` it requires AUTH with that login and password.

    AUTH is allowed without TLS here (loopback, tests only).
    """
    server = SmtpServer("127.0.0.1", free_port())
    options: dict[str, Any] = {}
    if auth is not None:
        options = {
            "authenticator": _authenticator(*auth),
            "auth_required": True,
            "auth_require_tls": False,
        }
    controller = Controller(server, hostname=server.host, port=server.port, **options)
    controller.start()  # returns once the server answers
    try:
        yield server
    finally:
        controller.stop()
