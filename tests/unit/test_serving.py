"""The HTTP protocol ``refreshd serve`` gives uvicorn, on real sockets."""

from __future__ import annotations

import asyncio
import socket

import pytest
from uvicorn import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from app.serving import HttpProtocol


async def _app(
    scope: object, receive: object, send: object
) -> None:  # never called: no request is sent
    raise AssertionError("unexpected request")


async def _nodelay_of_accepted(protocol: type[HttpToolsProtocol]) -> int:
    """TCP_NODELAY on the server side of one connection, accepted on a listener bound as uvicorn's ``--workers``
    binds it (``proto`` left at 0)."""
    config = Config(_app, http=protocol, loop="asyncio", log_config=None)
    config.load()
    state = ServerState()
    listener = socket.socket(family=socket.AF_INET)
    listener.bind(("127.0.0.1", 0))
    assert listener.proto == 0
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: protocol(config=config, server_state=state, app_state={}), sock=listener
    )
    try:
        _reader, writer = await asyncio.open_connection(*listener.getsockname())
        while not state.connections:  # noqa: ASYNC110 - uvicorn's state has no event to wait on
            await asyncio.sleep(0)  # until the server side has made its protocol
        (accepted,) = state.connections
        sock = accepted.transport.get_extra_info("socket")
        nodelay = int(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()
        await writer.wait_closed()
        return nodelay
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(("protocol", "nodelay"), [(HttpToolsProtocol, 0), (HttpProtocol, 1)])
async def test_every_connection_has_nagle_off_even_on_a_socket_bound_for_workers(
    protocol: type[HttpToolsProtocol], nodelay: int
) -> None:
    """uvicorn's own protocol keeps Nagle's algorithm on such a socket (issue #3149: with two workers each body
    waited for the client's delayed ACK); ours turns it off."""
    assert await _nodelay_of_accepted(protocol) == nodelay
