"""Request size limit: bodies over MAX_BODY_SIZE get 413 before anything parses them."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import PayloadTooLargeError


class BodySizeLimit:
    """Refuses a declared ``Content-Length`` over the limit at once, and stops reading a streamed body as soon as it
    passes the limit (so a client cannot make the service buffer more than ``max_bytes``)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    error = PayloadTooLargeError()
                    response = JSONResponse(error.body(), status_code=error.status)
                    await response(scope, receive, send)
                    return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Passes FastAPI's body reader untouched and renders as the 413 envelope.
                    raise HTTPException(status_code=413)
            return message

        await self.app(scope, limited_receive, send)
