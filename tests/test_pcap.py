"""Captures: timelines to pcapng (dissected by Debian's tshark, no "Decode As"), and
real tcpdump captures of independent peers read back frame by frame."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import dpkt
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import serve as ws_serve

import rawws_nb as rw
from rawws_nb import Frame
from rawws_nb.pcap import CaptureError, read_pcap, to_pcapng

COLUMNS = ["dir", "opcode", "fin", "rsv1", "length"]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: run `make capture-deps` (Debian's tshark and tcpdump)")
    return path


def tshark_frames(path: Path) -> list[tuple[int, bool, int]]:
    """(opcode, fin, payload length) of every WebSocket frame tshark finds, in order."""
    fields = ["websocket.opcode", "websocket.fin", "websocket.payload_length"]
    fields += ["websocket.payload_length_ext_16", "websocket.payload_length_ext_64"]
    args = [_tool("tshark"), "-r", str(path), "-Y", "websocket", "-T", "fields", "-E", "separator=|"]
    for f in fields:
        args += ["-e", f]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    frames = []
    for line in out.splitlines():
        cols = [c.split(",") for c in line.split("|")]
        for i, opcode in enumerate(cols[0]):
            short = int(cols[2][i])
            ext16 = cols[3][i] if i < len(cols[3]) and cols[3][i] else ""
            ext64 = cols[4][i] if i < len(cols[4]) and cols[4][i] else ""
            length = int(ext64 or ext16 or short)
            frames.append((int(opcode, 0), cols[1][i] in ("1", "True"), length))
    return frames


def per_direction(df, columns=COLUMNS):
    rows = df[columns].astype({c: str for c in columns if c in ("dir", "opcode")})
    return {d: rows[(df.dir == d).to_numpy()].values.tolist() for d in ("tx", "rx")}


async def _session_with_everything(server):
    session = await rw.web_socket_raw_session(server.url + "/echo")
    await session.send("hello")
    await session.send(Frame.Text("Part 1 ", fin=False))
    await session.send(Frame.Ping(b"between"))
    await session.send(Frame.Text("Part 2"))
    await session.send(Frame.Binary(os.urandom(900)))
    for _ in range(5):
        await session.incoming.receive()
    await session.close()
    return session


async def test_timeline_to_pcapng_to_read_pcap_round_trips(server, tmp_path):
    session = await _session_with_everything(server)
    path = to_pcapng(session, tmp_path / "session.pcapng")
    back = read_pcap(path)
    assert back.attrs["problems"] == [] and len(back.attrs["connections"]) == 1
    original = session.timeline
    assert per_direction(back) == per_direction(original)
    assert per_direction(back, ["payload"]) == per_direction(original, ["payload"])
    assert back.attrs["connections"][0]["url"] == session.url
    # tshark dissects it as WebSocket (port 80, no "Decode As"), frame for frame.
    seen = tshark_frames(path)
    want = [(int(r.opcode_code), bool(r.fin), int(r.length)) for r in original.assign(
        opcode_code=original.opcode.map({"continuation": 0, "text": 1, "binary": 2, "close": 8, "ping": 9, "pong": 10})
    ).itertuples()]
    assert sorted(seen) == sorted(want) and len(seen) == len(original)


async def test_compressed_sessions_are_written_compressed_and_read_back_inflated(server, tmp_path):
    session = await rw.web_socket_raw_session(server.url + "/echo", compression="deflate")
    await session.send("compress me, " * 200)
    await session.incoming.receive()
    await session.close()
    back = read_pcap(to_pcapng(session, tmp_path / "deflate.pcapng"))
    text = back[back.opcode == "text"]
    assert text.compressed.all() and (text.inflated_length == 2600).all()
    assert (text.length < 200).all()
    assert back.attrs["connections"][0]["extensions"] == ["permessage-deflate"]


async def test_a_capped_payload_is_zero_filled_and_said_so(server, tmp_path):
    session = await rw.web_socket_raw_session(server.url + "/echo", payload_cap=16)
    await session.send(b"x" * 100)
    await session.incoming.receive()
    await session.close()
    path = to_pcapng(session, tmp_path / "capped.pcapng")
    back = read_pcap(path)
    binary = back[back.opcode == "binary"]
    assert list(binary.length) == [100, 100] and binary.payload.iloc[0] == b"x" * 16 + bytes(84)
    comments = subprocess.run(
        [_tool("tshark"), "-r", str(path), "-T", "fields", "-e", "frame.comment"], capture_output=True, text=True
    ).stdout
    assert "payload capped in the timeline: 16 of 100 bytes, zero-filled" in comments


def _reorder(src: Path, dst: Path) -> None:
    """Copy a capture with two data packets swapped and one retransmitted."""
    with src.open("rb") as f:
        packets = list(dpkt.pcapng.Reader(f))
    data = [i for i, (_, buf) in enumerate(packets) if len(dpkt.ethernet.Ethernet(buf).data.data.data)]
    a, b = data[3], data[4]
    packets[a], packets[b] = packets[b], packets[a]
    packets.insert(b + 1, packets[data[2]])  # a retransmission of an earlier segment
    with dst.open("wb") as f:
        writer = dpkt.pcap.Writer(f, linktype=dpkt.pcap.DLT_EN10MB)
        for ts, buf in packets:
            writer.writepkt(buf, ts)


async def test_out_of_order_segments_and_retransmissions_are_reassembled(server, tmp_path):
    session = await _session_with_everything(server)
    path = to_pcapng(session, tmp_path / "s.pcapng")
    shuffled = tmp_path / "shuffled.pcap"
    _reorder(path, shuffled)
    back = read_pcap(shuffled)
    assert per_direction(back) == per_direction(session.timeline) and back.attrs["problems"] == []


async def test_truncated_and_garbage_files_give_clear_answers(server, tmp_path):
    session = await _session_with_everything(server)
    path = to_pcapng(session, tmp_path / "s.pcapng")
    data = path.read_bytes()
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes(data[: len(data) * 2 // 3])
    back = read_pcap(cut)
    assert 0 < len(back) < len(session.timeline)
    assert any("truncated" in p for p in back.attrs["problems"])
    garbage = tmp_path / "garbage.pcap"
    garbage.write_bytes(b"this is not a capture at all")
    with pytest.raises(CaptureError, match="not a pcap or pcapng file"):
        read_pcap(garbage)


async def test_a_capture_that_starts_mid_connection_is_reported_not_guessed(server, tmp_path):
    session = await _session_with_everything(server)
    path = to_pcapng(session, tmp_path / "s.pcapng")
    with path.open("rb") as f:
        packets = list(dpkt.pcapng.Reader(f))
    late = tmp_path / "late.pcap"
    with late.open("wb") as f:
        writer = dpkt.pcap.Writer(f, linktype=dpkt.pcap.DLT_EN10MB)
        for ts, buf in packets[8:]:  # the handshake and the first frames are not in it
            writer.writepkt(buf, ts)
    back = read_pcap(late)
    assert len(back) == 0 and any("no SYN" in p for p in back.attrs["problems"])


# -- real captures: tcpdump on loopback, independent peers ------------------------------------


class Tcpdump:
    def __init__(self, port: int, path: Path) -> None:
        self.args = [_tool("tcpdump"), "-i", "lo", "-U", "-s", "0", "-Z", "root", "-w", str(path), f"tcp port {port}"]
        self.path = path

    async def __aenter__(self):
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        await asyncio.sleep(1.5)  # tcpdump needs a moment before it captures
        return self

    async def __aexit__(self, *exc):
        # tcpdump writes each packet as it handles it (-U), but under load it may lag:
        # wait until the file stops growing (0.5 s unchanged, 15 s at most) before
        # stopping it, or the last packets are lost with no gap to show for it.
        last, still, deadline = -1, 0.0, time.monotonic() + 15
        while still < 0.5 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            size = self.path.stat().st_size if self.path.exists() else 0
            still = still + 0.1 if size == last else 0.0
            last = size
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=10)


async def _echo(websocket):
    async for message in websocket:
        await websocket.send(message)


@pytest.mark.parametrize("compression", [None, "deflate"])
async def test_tcpdump_capture_of_websockets_client_and_server(tmp_path, compression):
    big = os.urandom(50_000) * 2  # 100 KB: many TCP segments on loopback
    async with ws_serve(_echo, "127.0.0.1", 0, compression=compression, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        async with Tcpdump(port, tmp_path / "real.pcap"):
            async with ws_connect(f"ws://127.0.0.1:{port}/chat", compression=compression, max_size=None) as ws:
                await ws.send("hello over the wire")
                assert await ws.recv() == "hello over the wire"
                await ws.send(big)
                assert await ws.recv() == big
                await ws.send(["frag", "mented"])  # one message in two frames
                assert await ws.recv() == "fragmented"
                await ws.ping(b"are you there")
    df = read_pcap(tmp_path / "real.pcap")
    assert df.attrs["problems"] == [], df.attrs["problems"]
    (conn,) = df.attrs["connections"]
    assert conn["url"] == f"ws://127.0.0.1:{port}/chat" and bool(conn["extensions"]) == (compression is not None)
    tx, rx = df[df.dir == "tx"], df[df.dir == "rx"]
    assert list(tx.opcode)[:4] == ["text", "binary", "text", "continuation"]
    assert tx.payload.iloc[0] == b"hello over the wire" and rx.payload.iloc[0] == b"hello over the wire"
    binary = df[df.opcode == "binary"]
    assert list(binary.inflated_length.fillna(binary.length)) == [100_000, 100_000]
    assert "ping" in set(tx.opcode) and "pong" in set(rx.opcode) and "close" in set(df.opcode)
    assert df.compressed.any() == (compression is not None)
    assert df.error.isna().all()
    # Frame for frame what tshark sees in the same capture (opcode, fin, wire length).
    ours = sorted(zip(df.opcode.map({"continuation": 0, "text": 1, "binary": 2, "close": 8, "ping": 9, "pong": 10}),
                      df.fin, df.length, strict=True))
    assert ours == sorted(tshark_frames(tmp_path / "real.pcap"))


async def test_keylog_lets_tshark_decrypt_a_real_wss_capture(tmp_path, ca):
    import ssl

    cert = ca.issue_cert("127.0.0.1")
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_tls)
    client_tls = ssl.create_default_context()
    ca.configure_trust(client_tls)
    keys = tmp_path / "keys.log"
    async with rw.serve(tls=server_tls) as server:
        async with Tcpdump(server.port, tmp_path / "wss.pcap"):
            session = await rw.web_socket_raw_session(server.url + "/echo", tls=client_tls, keylog=keys)
            await session.send("secret hello")
            assert (await session.incoming.receive()).data == b"secret hello"
            await session.close()
    assert "TRAFFIC_SECRET" in keys.read_text()
    args = [_tool("tshark"), "-r", str(tmp_path / "wss.pcap"), "-o", f"tls.keylog_file:{keys}"]
    args += ["-d", f"tcp.port=={server.port},tls", "-Y", "websocket", "-T", "fields", "-e", "websocket.opcode"]
    opcodes = subprocess.run(args, capture_output=True, text=True, check=True).stdout.split()
    assert opcodes == ["1", "1", "8", "8"]  # the text and its echo, both Closes: decrypted
    back = read_pcap(tmp_path / "wss.pcap")  # we do not decrypt: said so, not guessed
    assert len(back) == 0 and any("TLS, not read" in p for p in back.attrs["problems"])
    with pytest.raises(ValueError, match="applies to wss"):
        await rw.web_socket_raw_session(server.url.replace("wss", "ws") + "/echo", keylog=keys)


def test_the_capture_shipped_for_binder_reads_clean():
    df = read_pcap(Path(__file__).resolve().parent.parent / "notebooks" / "data" / "websockets-echo.pcap")
    assert df.attrs["problems"] == [] and len(df.attrs["connections"]) == 1
    assert df.attrs["connections"][0]["extensions"][0].startswith("permessage-deflate")
    assert df.error.isna().all() and df.compressed.any()
    assert len(df.rawws.latency()) == 1  # the client's ping and the server's pong


async def test_a_linux_cooked_capture_over_ipv6(tmp_path):
    """`tcpdump -i any` writes Linux cooked headers; the peers talk over ::1."""
    async with ws_serve(_echo, "::1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        dump = Tcpdump(port, tmp_path / "any.pcap")
        dump.args[dump.args.index("lo")] = "any"
        async with dump:
            async with ws_connect(f"ws://[::1]:{port}/v6") as ws:
                await ws.send("over IPv6")
                assert await ws.recv() == "over IPv6"
    with (tmp_path / "any.pcap").open("rb") as f:
        assert dpkt.pcap.Reader(f).datalink() in (dpkt.pcap.DLT_LINUX_SLL, 276)
    df = read_pcap(tmp_path / "any.pcap")
    assert df.attrs["problems"] == []
    (conn,) = df.attrs["connections"]
    assert conn["client"].startswith("[::1]:") and conn["url"] == f"ws://[::1]:{port}/v6"
    assert list(df[df.opcode == "text"].payload) == [b"over IPv6", b"over IPv6"]
