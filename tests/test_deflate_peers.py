"""permessage-deflate against independent implementations over real sockets: the
websockets library's server and client (compression on), and Node's `ws`
(perMessageDeflate on), both directions."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import serve as ws_serve
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory

import rawws_nb as rw
from rawws_nb import Deflate, Frame, MessageTooBig

ROOT = Path(__file__).resolve().parent.parent
NODE_PEERS = ROOT / ".ci" / "node-peers"


async def _echo(websocket):
    async for message in websocket:
        await websocket.send(message)


def _text_frames(session):
    return session.timeline.query("opcode in ['text', 'binary', 'continuation']")


async def test_websockets_server_round_trips_compressed_messages_both_ways():
    async with ws_serve(_echo, "127.0.0.1", 0, compression="deflate") as server:
        port = server.sockets[0].getsockname()[1]
        session = await rw.web_socket_raw_session(f"ws://127.0.0.1:{port}/", compression="deflate")
        assert session.extensions and session.extensions[0].startswith("permessage-deflate")
        text = "compress me please " * 500
        blob = os.urandom(2000) * 3
        await session.send(text)
        await session.send(Frame.Binary(blob))
        # A fragmented compressed message: websockets reassembles it, inflating across frames.
        await session.send(Frame.Text("first half, " * 100, fin=False))
        await session.send(Frame.Text("second half" * 100))
        got = [await asyncio.wait_for(session.incoming.receive(), 5) for _ in range(3)]
        assert got[0].data.decode() == text and got[1].data == blob
        assert got[2].data.decode() == "first half, " * 100 + "second half" * 100
        assert all(f.compressed and f.rsv1 for f in got)  # websockets compressed its answers
        await session.close()
    rows = _text_frames(session)
    tx = rows[rows.dir == "tx"]
    assert tx.compressed.all() and list(tx.rsv1) == [True, True, True, False]
    assert tx.length.iloc[0] < tx.inflated_length.iloc[0] / 20  # it was compressed on the wire
    summary = session.timeline.rawws.summary()
    assert summary.loc[("tx", "text"), "compression"] < 0.2


async def test_no_context_takeover_and_small_windows_against_websockets():
    factory = ServerPerMessageDeflateFactory(
        server_no_context_takeover=True, client_no_context_takeover=True, server_max_window_bits=10
    )
    async with ws_serve(_echo, "127.0.0.1", 0, compression=None, extensions=[factory]) as server:
        port = server.sockets[0].getsockname()[1]
        offer = Deflate(client_max_window_bits=9, server_no_context_takeover=True)
        session = await rw.web_socket_raw_session(f"ws://127.0.0.1:{port}/", compression=offer)
        agreed = session.deflate
        assert agreed.client_no_context_takeover and agreed.server_no_context_takeover
        assert (agreed.server_max_window_bits, agreed.client_max_window_bits) == (10, 9)
        message = os.urandom(100).hex() * 3
        for _ in range(3):
            await session.send(message)
        got = [await asyncio.wait_for(session.incoming.receive(), 5) for _ in range(3)]
        assert [f.data.decode() for f in got] == [message] * 3
        await session.close()
    lengths = _text_frames(session).groupby("dir").length.apply(list)
    assert len(set(lengths["tx"])) == 1 and len(set(lengths["rx"])) == 1  # no context carried over


async def test_a_bomb_from_websockets_fails_with_1009_and_bounded_memory():
    async def bomb(websocket):
        await websocket.send(bytes(64 << 20))  # 64 MiB of zeros: about 64 KiB compressed
        await asyncio.sleep(2)

    async with ws_serve(bomb, "127.0.0.1", 0, compression="deflate", max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        session = await rw.web_socket_raw_session(
            f"ws://127.0.0.1:{port}/", compression="deflate", max_message_size=1 << 20
        )
        with pytest.raises(MessageTooBig) as info:
            await asyncio.wait_for(session.incoming.receive(), 10)
        assert info.value.code == 1009 and "inflates to more than max_message_size=1048576" in str(info.value)
        await asyncio.wait_for(session.wait_closed(), 10)
    assert session.close_reason.code == 1009


async def test_websockets_client_against_the_embedded_server(server):
    async with ws_connect(server.url + "/echo", compression="deflate") as ws:
        assert ws.response.headers["Sec-WebSocket-Extensions"].startswith("permessage-deflate")
        await ws.send("hello " * 300)
        assert await ws.recv() == "hello " * 300
        await ws.send(["frag ", "mented ", "message"])  # one message in three frames
        assert await ws.recv() == "frag mented message"
    async with ws_connect(server.url + "/echo?deflate=no_context_takeover,server_max_window_bits:9") as ws:
        header = ws.response.headers["Sec-WebSocket-Extensions"]
        assert "server_no_context_takeover" in header and "server_max_window_bits=9" in header
        for _ in range(3):
            await ws.send(b"\x00\x01" * 1000)
            assert await ws.recv() == b"\x00\x01" * 1000
    async with ws_connect(server.url + "/echo?deflate=no") as ws:
        assert "Sec-WebSocket-Extensions" not in ws.response.headers


# -- Node's ws ----------------------------------------------------------------------------------


def _node() -> str:
    node = shutil.which("node")
    if node is None or not (NODE_PEERS / "node_modules" / "ws").exists():
        pytest.fail("Node ws is not installed: run `make node-deps` (npm ci in .ci/node-peers)")
    return node


async def _start_node(*args: str) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        _node(), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=NODE_PEERS
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 10)
    return proc, line.decode().strip()


async def test_node_ws_server_with_per_message_deflate():
    proc, ready = await _start_node("echo-server.js")
    try:
        port = json.loads(ready)["port"]
        session = await rw.web_socket_raw_session(f"ws://127.0.0.1:{port}/", compression="deflate")
        assert session.extensions[0].startswith("permessage-deflate")
        await session.send("node, compress this " * 200)
        await session.send(Frame.Binary(b"\x07" * 5000, fin=False))
        await session.send(Frame.Binary(b"\x08" * 5000))
        got = [await asyncio.wait_for(session.incoming.receive(), 5) for _ in range(2)]
        assert got[0].data.decode() == "node, compress this " * 200 and got[0].compressed
        assert got[1].data == b"\x07" * 5000 + b"\x08" * 5000 and got[1].compressed
        await session.close()
    finally:
        proc.terminate()
        await proc.wait()


async def test_node_ws_client_against_the_embedded_server(server):
    proc, ready = await _start_node("client.js", server.url + "/echo")
    try:
        assert proc.stdout is not None
        report = json.loads(ready)
        out, err = await asyncio.wait_for(proc.communicate(), 15)
    finally:
        if proc.returncode is None:
            proc.kill()
    assert report["extensions"].startswith("permessage-deflate"), err.decode()
    results = json.loads(out.decode())
    assert results == {"text": "hello from node " * 100, "binary": 4096, "fragmented": "part1 part2"}, err.decode()




async def test_compressed_timelines_round_trip_through_parquet_and_har(server, tmp_path):
    session = await rw.web_socket_raw_session(server.url + "/echo", compression="deflate")
    await session.send("compress me " * 100)
    await session.send("as is", compress=False)
    for _ in range(2):
        await session.incoming.receive()
    await session.close()
    df = session.timeline
    assert list(df.compressed) == [True, False, True, False, False, False]
    session.save_timeline(tmp_path / "t.parquet")
    back = rw.read_timeline(tmp_path / "t.parquet")
    columns = ["dir", "opcode", "rsv1", "length", "compressed", "inflated_length", "payload"]
    assert back[columns].equals(df[columns])
    assert back.attrs["extensions"] == ["permessage-deflate"]
    rw.to_har(session, tmp_path / "t.har")
    har = rw.read_har(tmp_path / "t.har")
    assert har[columns].equals(df[columns])
