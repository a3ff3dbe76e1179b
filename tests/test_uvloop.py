"""Sessions, the embedded server and the relay on uvloop (its transports do not derive
from asyncio's transport classes): nothing may assume they do."""

from __future__ import annotations

import uvloop

import rawws_nb as rw
from rawws_nb.frames import Frame
from rawws_nb.wire import COMPILED, FrameReader


async def _exchange() -> dict[str, object]:
    server = await rw.serve("127.0.0.1", 0)
    try:
        relay = await rw.relay(server.url)
        try:
            session = await rw.web_socket_raw_session(relay.url + "/echo")
            await session.send("on uvloop")
            await session.send(Frame.Binary(b"\x00\x01", fin=False))
            await session.send(Frame.Binary(b"\x02", fin=True))
            await session.send(Frame.Ping(b"p"))
            got = [await session.incoming.receive() for _ in range(4)]
            # A large frame: both client sessions read its payload straight into its buffer.
            big = bytes(range(256)) * 3000  # 768 kB: within the default max_message_size
            await session.send(big)
            big_echo = await session.incoming.receive()
            await session.close()
            legs = set(relay.timeline["leg"])
        finally:
            await relay.close()
    finally:
        await server.close()
    return {
        "got": [(type(f).__name__, f.data, f.fin) for f in got],
        "big": big_echo == Frame.Binary(big),
        "legs": legs,
        "rows": len(session.timeline),
    }


def test_client_server_and_relay_on_uvloop(monkeypatch) -> None:
    into: list[int] = []
    original = FrameReader.received_into

    def counted(self, n, limit=None):  # type: ignore[no-untyped-def]
        into.append(n)
        return original(self, n, limit)

    monkeypatch.setattr(FrameReader, "received_into", counted)
    result = uvloop.run(_exchange())
    # uvloop's transports too read the large frame into its buffers (a BufferedProtocol).
    assert (sum(into) > 0) is COMPILED
    assert result["got"] == [
        ("Text", b"on uvloop", True),
        ("Binary", b"\x00\x01", False),
        ("Binary", b"\x02", True),
        ("Pong", b"p", True),
    ]
    assert result["big"] is True
    assert result["legs"] == {"client", "upstream"}
    assert result["rows"] >= 10  # 4 sent, 4 received, the Close exchange
