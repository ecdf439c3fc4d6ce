"""How uvicorn runs the service: its event loop and its HTTP protocol (``refreshd serve``)."""

from __future__ import annotations

import asyncio
import socket

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# asyncio's own event loop, never uvloop: libuv (since 1.45) accepts one connection per loop iteration, and an
# iteration of a loaded server takes a whole round of its requests, so a burst of new connections waits rounds to
# be accepted. asyncio's loop accepts every pending connection at once, for a little throughput; the figures:
# bench/results/2026-11-28-fairness-nagle.md. The Makefile, the container and the test servers pass
# ``--loop asyncio`` for the same reason.
LOOP = "asyncio"


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with Nagle's algorithm off on every connection.

    asyncio turns TCP_NODELAY on only for sockets that say they are TCP (``proto == IPPROTO_TCP``). With
    ``--workers`` uvicorn binds the listening socket itself with ``proto`` 0, which accepted sockets inherit, so
    they kept Nagle: each response's body (its second write) waited for the client's delayed ACK, and two workers
    served less than one did (uvicorn issue #3149, open in 0.54; bench/results/2026-11-28-fairness-nagle.md).
    """

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)


def serve(*, host: str, port: int, workers: int, graceful_timeout: int) -> None:
    """Run the app under uvicorn as the service should run (``refreshd serve``)."""
    import uvicorn

    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,  # the application logs each request itself
        proxy_headers=False,  # X-Forwarded-For is the application's call (TRUSTED_PROXIES)
        loop=LOOP,
        http=HttpProtocol,
        timeout_graceful_shutdown=graceful_timeout,
    )
