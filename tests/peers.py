"""Independent test peers.

`WebsocketsPeer` is a WebSocket server built on the websockets library's sans-I/O
`ServerProtocol`: websockets parses (and validates, unmasking included) every frame our
client sends, and the peer records them exactly as they were on the wire (opcode, fin,
rsv, payload). Tests script what it sends back.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from websockets.frames import Frame as WsFrame
from websockets.frames import Opcode
from websockets.http11 import Request
from websockets.server import ServerProtocol


@dataclass
class WireFrame:
    opcode: str
    fin: bool
    rsv1: bool
    data: bytes


class _PeerConnection(asyncio.Protocol):
    def __init__(self, peer: WebsocketsPeer) -> None:
        self.peer = peer
        self.protocol = ServerProtocol(max_size=None)
        self.transport: asyncio.Transport | None = None
        self.opened = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.peer.connections.append(self)

    def data_received(self, data):
        self.protocol.receive_data(data)
        for event in self.protocol.events_received():
            if isinstance(event, Request):
                response = self.protocol.accept(event)
                self.protocol.send_response(response)
                if not self.opened.done():
                    self.opened.set_result(None)
            elif isinstance(event, WsFrame):
                self.peer.received.append(WireFrame(event.opcode.name, event.fin, event.rsv1, bytes(event.data)))
                self.peer.changed.set()
        self.flush()

    def flush(self):
        # websockets answers Pings and Closes by itself: that is the peer's business;
        # the tests check what *our* side sends.
        for chunk in self.protocol.data_to_send():
            if chunk:
                self.transport.write(chunk)
            else:
                self.transport.write_eof() if self.transport.can_write_eof() else None

    def send(self, opcode: Opcode, data: bytes, fin: bool = True):
        self.protocol.send_frame(WsFrame(opcode, data, fin))
        self.flush()

    def connection_lost(self, exc):
        self.peer.changed.set()


class WebsocketsPeer:
    """A loopback server whose frame parser is the websockets library's."""

    def __init__(self) -> None:
        self.received: list[WireFrame] = []
        self.connections: list[_PeerConnection] = []
        self.changed = asyncio.Event()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _PeerConnection(self), "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    async def opened(self) -> _PeerConnection:
        while not self.connections:
            await asyncio.sleep(0.005)
        conn = self.connections[-1]
        await conn.opened
        return conn

    async def wait_for(self, predicate, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate(self.received):
                self.changed.clear()
                await self.changed.wait()

    async def stop(self) -> None:
        for conn in self.connections:
            if conn.transport is not None:
                conn.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
