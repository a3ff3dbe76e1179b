"""One adapter per client library, all with the same small surface, so every test runs
the same measurement code for every client.

    client = CLIENTS[name]()
    await client.open(ws_url, tcp_port)
    to_send, expected = client.prepare_text("...")      # outside the timed region
    await client.send_text(to_send); echo = await client.recv(nbytes)
    await client.send_binary(payload); echo = await client.recv(len(payload))
    await client.read_echoes(expected)                   # the pipe test's reader
    await client.close()

`recv` returns the echo in the client's natural type (str for text in websockets and
aiohttp, bytes elsewhere); the tests compare it with `expected` (same type) and fail
loudly on any difference. Each adapter uses its library the way its documentation
shows, with flow control respected on send (await drain when the transport says so).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, ClassVar

__all__ = ["CLIENTS", "Client", "EchoMismatch", "client_versions"]

MAX_SIZE = 32 * 2**20  # larger than the biggest test message (16 MiB)


class EchoMismatch(AssertionError):
    """An echo differed from what was sent."""


class Client:
    """Base adapter. Subclasses set `name` and implement the I/O methods."""

    name: ClassVar[str] = "?"
    library: ClassVar[str] = "?"
    uses_tcp: ClassVar[bool] = False

    async def open(self, ws_url: str, tcp_port: int) -> None:
        raise NotImplementedError

    def prepare_text(self, text: str) -> tuple[Any, Any]:
        """(what to pass to send_text, what recv returns for its echo)."""
        data = text.encode()
        return data, data

    async def send_text(self, message: Any) -> None:
        raise NotImplementedError

    async def send_binary(self, payload: bytes) -> None:
        raise NotImplementedError

    async def recv(self, nbytes: int) -> Any:
        raise NotImplementedError

    async def read_echoes(self, expected: list[Any]) -> None:
        """Receive len(expected) echoes, checking each (the pipe test's reader)."""
        recv = self.recv
        for i, want in enumerate(expected):
            got = await recv(len(want))
            if got != want:
                raise EchoMismatch(f"{self.name}: echo {i} is {got!r}, sent {want!r}")

    async def close(self) -> None:
        raise NotImplementedError


class _Inbox:
    """A deque plus one waiter: how callback-style libraries hand frames to `await`."""

    __slots__ = ("closed", "items", "loop", "waiter")

    def __init__(self) -> None:
        self.items: deque[Any] = deque()
        self.loop = asyncio.get_running_loop()
        self.waiter: asyncio.Future[None] | None = None
        self.closed: BaseException | None = None

    def put(self, item: Any) -> None:
        self.items.append(item)
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def end(self, exc: BaseException) -> None:
        self.closed = exc
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            self.waiter = None
            waiter.set_result(None)

    async def get(self) -> Any:
        items = self.items
        while not items:
            if self.closed is not None:
                raise self.closed
            waiter = self.waiter = self.loop.create_future()
            await waiter
        return items.popleft()


class _FlowControl:
    """pause_writing/resume_writing handling for callback-style transports."""

    def __init__(self) -> None:
        self.paused = False
        self.drain: asyncio.Future[None] | None = None

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        drain = self.drain
        if drain is not None:
            self.drain = None
            if not drain.done():
                drain.set_result(None)

    async def wait(self) -> None:
        if self.drain is None:
            self.drain = asyncio.get_running_loop().create_future()
        await self.drain


# -- rawws_nb --------------------------------------------------------------------------


class RawwsClient(Client):
    name = "rawws"
    library = "rawws_nb"
    record = True

    async def open(self, ws_url: str, tcp_port: int) -> None:
        import rawws_nb as rw

        self.session = await rw.web_socket_raw_session(ws_url, record=self.record, max_message_size=MAX_SIZE)
        self._send = self.session.send
        self._receive = self.session.incoming.receive

    async def send_text(self, message: str) -> None:
        await self._send(message)

    def prepare_text(self, text: str) -> tuple[Any, Any]:
        return text, text.encode()

    async def send_binary(self, payload: bytes) -> None:
        await self._send(payload)

    async def recv(self, nbytes: int) -> bytes:
        return (await self._receive()).data

    async def close(self) -> None:
        await self.session.close()


class RawwsNoRecordClient(RawwsClient):
    name = "rawws-norec"
    record = False


class RawwsBatchClient(RawwsClient):
    """rawws_nb read with `incoming.receive_batch()` (every waiting frame at once),
    recording on: the batch API, for comparison (the targets use the per-frame API)."""

    name = "rawws-batch"

    async def open(self, ws_url: str, tcp_port: int) -> None:
        await super().open(ws_url, tcp_port)
        self._batch = self.session.incoming.receive_batch
        self._ready: deque[Any] = deque()

    async def recv(self, nbytes: int) -> bytes:
        ready = self._ready
        if not ready:
            ready.extend(await self._batch())
        return ready.popleft().data


# -- websockets (asyncio implementation) -----------------------------------------------


class WebsocketsClient(Client):
    name = "websockets"
    library = "websockets"

    async def open(self, ws_url: str, tcp_port: int) -> None:
        from websockets.asyncio.client import connect

        self.ws = await connect(ws_url, compression=None, max_size=None, ping_interval=None)
        self._send = self.ws.send
        self._recv = self.ws.recv

    def prepare_text(self, text: str) -> tuple[Any, Any]:
        return text, text

    async def send_text(self, message: str) -> None:
        await self._send(message)

    async def send_binary(self, payload: bytes) -> None:
        await self._send(payload)

    async def recv(self, nbytes: int) -> str | bytes:
        return await self._recv()

    async def close(self) -> None:
        await self.ws.close()


# -- aiohttp ---------------------------------------------------------------------------


class AiohttpClient(Client):
    name = "aiohttp"
    library = "aiohttp"

    def __init__(self, http: Any = None) -> None:
        self._shared = http

    async def open(self, ws_url: str, tcp_port: int) -> None:
        import aiohttp

        self.http = self._shared or aiohttp.ClientSession()
        self.ws = await self.http.ws_connect(ws_url, autoping=False, compress=0, max_msg_size=0)
        self._receive = self.ws.receive

    def prepare_text(self, text: str) -> tuple[Any, Any]:
        return text, text

    async def send_text(self, message: str) -> None:
        await self.ws.send_str(message)

    async def send_binary(self, payload: bytes) -> None:
        await self.ws.send_bytes(payload)

    async def recv(self, nbytes: int) -> str | bytes:
        return (await self._receive()).data

    async def close(self) -> None:
        await self.ws.close()
        if self._shared is None:
            await self.http.close()


# -- picows ----------------------------------------------------------------------------


class PicowsClient(Client):
    name = "picows"
    library = "picows"

    async def open(self, ws_url: str, tcp_port: int) -> None:
        import picows
        from picows import WSMsgType

        inbox = self.inbox = _Inbox()
        flow = self.flow = _FlowControl()
        close, ping = WSMsgType.CLOSE, WSMsgType.PING

        class Listener(picows.WSListener):
            def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
                kind = frame.msg_type
                if kind == close:
                    inbox.end(ConnectionError("picows: peer closed"))
                elif kind != ping:
                    inbox.put(frame.get_payload_as_bytes())

            def on_ws_disconnected(self, transport: picows.WSTransport) -> None:
                inbox.end(ConnectionError("picows: disconnected"))

            def pause_writing(self) -> None:
                flow.pause()

            def resume_writing(self) -> None:
                flow.resume()

        self.transport, _ = await picows.ws_connect(Listener, ws_url, max_frame_size=MAX_SIZE)
        self._tx = self.transport.send
        self._text, self._binary = WSMsgType.TEXT, WSMsgType.BINARY
        self._ok = picows.WSCloseCode.OK

    async def send_text(self, message: bytes) -> None:
        self._tx(self._text, message)
        if self.flow.paused:
            await self.flow.wait()

    async def send_binary(self, payload: bytes) -> None:
        self._tx(self._binary, payload)
        if self.flow.paused:
            await self.flow.wait()

    async def recv(self, nbytes: int) -> bytes:
        return await self.inbox.get()

    async def close(self) -> None:
        self.transport.send_close(self._ok)  # the default code is 1005, which may not be sent
        try:
            async with asyncio.timeout(5):
                await self.transport.wait_disconnected()
        except TimeoutError:
            self.transport.disconnect()


# -- the TCP floor ---------------------------------------------------------------------


class _TcpProtocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.buf = bytearray()
        self.need = 0
        self.waiter: asyncio.Future[None] | None = None
        self.flow = _FlowControl()
        self.lost: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if self.waiter is not None and len(buf) >= self.need:
            waiter, self.waiter = self.waiter, None
            if not waiter.done():
                waiter.set_result(None)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost = exc or ConnectionError("tcp: connection closed")
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def pause_writing(self) -> None:
        self.flow.pause()

    def resume_writing(self) -> None:
        self.flow.resume()

    async def wait_for(self, nbytes: int) -> None:
        while len(self.buf) < nbytes:
            if self.lost is not None:
                raise self.lost
            self.need = nbytes
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter


class TcpClient(Client):
    """The floor: 'messages' are plain writes, echoes are counted in bytes."""

    name = "tcp"
    library = "asyncio"
    uses_tcp = True

    async def open(self, ws_url: str, tcp_port: int) -> None:
        loop = asyncio.get_running_loop()
        self.transport, self.proto = await loop.create_connection(_TcpProtocol, "127.0.0.1", tcp_port)
        self._write = self.transport.write

    async def send_text(self, message: bytes) -> None:
        self._write(message)
        if self.proto.flow.paused:
            await self.proto.flow.wait()

    send_binary = send_text

    async def recv(self, nbytes: int) -> bytes:
        proto = self.proto
        buf = proto.buf
        if len(buf) < nbytes:
            await proto.wait_for(nbytes)
        if len(buf) == nbytes:
            out = bytes(buf)
            buf.clear()
        else:
            out = bytes(buf[:nbytes])
            del buf[:nbytes]
        return out

    async def read_echoes(self, expected: list[Any]) -> None:
        total = sum(len(e) for e in expected)
        got = await self.recv(total)
        if got != b"".join(expected):
            raise EchoMismatch(f"{self.name}: the echoed byte stream differs from what was sent")

    async def close(self) -> None:
        self.transport.close()
        await asyncio.sleep(0)


CLIENTS: dict[str, type[Client]] = {
    c.name: c
    for c in (
        RawwsClient,
        RawwsNoRecordClient,
        RawwsBatchClient,
        WebsocketsClient,
        AiohttpClient,
        PicowsClient,
        TcpClient,
    )
}


def client_versions() -> dict[str, str]:
    """Versions of the libraries under test (those importable)."""
    from importlib import metadata

    out = {}
    for dist in ("rawws-nb", "websockets", "aiohttp", "picows", "wsproto", "numpy", "pandas", "pyarrow"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out
