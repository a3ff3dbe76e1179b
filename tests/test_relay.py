"""The relay with independent peers on both sides: the websockets library's client
(asyncio) and server (asyncio, and the sans-I/O peer of tests/peers.py that records every
frame as it was on the wire), and the embedded server. Nothing is mocked: every test
opens real loopback connections through `rw.relay`."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from http import HTTPStatus

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import serve as ws_serve
from websockets.exceptions import ConnectionClosed, InvalidStatus

import rawws_nb as rw
from rawws_nb import CloseReason, Frame
from rawws_nb.relay import LocalCA, chain, delay, refragment, rewrite_text

from .relay_support import data_rows, until

pytestmark = pytest.mark.timeout(60)


async def ended(relay, n=1, timeout=10.0):
    await until(lambda: len(relay.flows) >= n and all(f.ended for f in relay.flows), timeout)


# -- forwarding, frame by frame ---------------------------------------------------------------


async def test_fragments_arrive_frame_by_frame_on_the_upstream_leg(peer):
    async with rw.relay(peer.url) as relay:
        async with ws_connect(relay.url + "/", compression=None) as ws:
            await ws.send(["Part 1 ", "Part 2 ", "Part 3"])  # one message in three frames
            await ws.send([b"\x01\x02", b"\x03"])
            await peer.wait_for(lambda got: len(got) >= 7)
        # websockets sends a list as one frame per item, then an empty final frame.
        got = [(f.opcode, f.fin, f.data) for f in peer.received[:7]]
        assert got == [
            ("TEXT", False, b"Part 1 "),
            ("CONT", False, b"Part 2 "),
            ("CONT", False, b"Part 3"),
            ("CONT", True, b""),
            ("BINARY", False, b"\x01\x02"),
            ("CONT", False, b"\x03"),
            ("CONT", True, b""),
        ]
        await ended(relay)
        df = relay.timeline
        up = data_rows(df, "upstream", "tx")
        assert list(up.opcode) == ["text"] + ["continuation"] * 3 + ["binary"] + ["continuation"] * 2
        assert list(up.fin) == [False, False, False, True, False, False, True]
        assert list(data_rows(df, "client", "rx").opcode) == list(up.opcode)


async def test_a_client_ping_reaches_the_upstream_and_its_pong_comes_back(peer):
    async with rw.relay(peer.url) as relay:
        async with ws_connect(relay.url, compression=None) as ws:
            pong = await ws.ping(b"are-you-there")
            await asyncio.wait_for(pong, 5)
        assert ("PING", b"are-you-there") in [(f.opcode, f.data) for f in peer.received]
        await ended(relay)
        df = relay.timeline
        path = [(r.leg, r.dir, r.opcode) for r in df.itertuples() if r.opcode in ("ping", "pong")]
        assert path == [
            ("client", "rx", "ping"),
            ("upstream", "tx", "ping"),
            ("upstream", "rx", "pong"),
            ("client", "tx", "pong"),
        ]


async def test_the_relay_answers_nothing_by_itself(server):
    """A Ping to /sink (which answers nothing) gets no Pong: the relay does not answer it."""
    async with rw.relay(server.url) as relay:
        async with rw.ws_raw(relay.url + "/sink") as session:
            await session.send(Frame.Ping(b"unanswered"))
            await session.send("hello")
            await until(lambda: len(relay.timeline[relay.timeline.leg == "upstream"]) >= 2)
            await asyncio.sleep(0.2)
            assert len(session.incoming) == 0
        await ended(relay)
        client_tx = relay.timeline.query("leg == 'client' and dir == 'tx'")
        assert list(client_tx.opcode) == ["close"]  # only the upstream's Close reply, forwarded


async def test_close_forwarded_both_ways_and_each_leg_closes_cleanly(server):
    async with rw.relay(server.url) as relay:
        ws = await ws_connect(relay.url + "/echo", compression=None)
        await ws.send("hi")
        assert await ws.recv() == "hi"
        await ws.close(4000, "bye from the client")
        assert ws.close_code == 4000  # the embedded server answers with the code, no reason
        await ended(relay)
        flow = relay.flows[0]
        assert flow.client.close_reason.code == 4000 and flow.upstream.close_reason.code == 4000
        df = relay.timeline
        closes = df[df.opcode == "close"]
        assert [(r.leg, r.dir, r.close_code) for r in closes.itertuples()] == [
            ("client", "rx", 4000),
            ("upstream", "tx", 4000),
            ("upstream", "rx", 4000),
            ("client", "tx", 4000),
        ]
        assert list(closes.close_reason[:2]) == ["bye from the client"] * 2  # forwarded as it came
        assert df.error.isna().all()


async def test_an_upstream_close_reaches_the_client(server):
    async with rw.relay(server.url) as relay:
        async with ws_connect(relay.url + "/close?code=4001&reason=server+says+bye", compression=None) as ws:
            with pytest.raises(ConnectionClosed):
                await ws.recv()
        assert ws.close_code == 4001 and ws.close_reason == "server says bye"
        await ended(relay)
        assert relay.timeline.error.isna().all()


# -- the handshake: path, headers, subprotocols, refusals --------------------------------------------


async def test_path_query_headers_and_subprotocol_forwarded():
    seen = {}

    async def handler(ws):
        seen["path"] = ws.request.path
        seen["headers"] = ws.request.headers
        await ws.send(f"subprotocol {ws.subprotocol}")
        await ws.wait_closed()

    def add_header(connection, request, response):
        response.headers["X-Upstream"] = "yes"

    async with ws_serve(handler, "127.0.0.1", 0, subprotocols=["chat.v2"], process_response=add_header) as srv:
        port = srv.sockets[0].getsockname()[1]
        async with rw.relay(f"ws://127.0.0.1:{port}") as relay:
            async with ws_connect(
                relay.url + "/chat?room=1&x=%20y",
                subprotocols=["chat.v1", "chat.v2"],
                additional_headers=[("X-Token", "abc"), ("Cookie", "a=1"), ("Cookie", "b=2")],
                origin="http://app.example",
                compression=None,
            ) as ws:
                assert ws.subprotocol == "chat.v2"
                assert await ws.recv() == "subprotocol chat.v2"
                assert ws.response.headers["X-Upstream"] == "yes"
            await ended(relay)
            flow = relay.flows[0]
            assert flow.path == "/chat?room=1&x=%20y" and flow.subprotocol == "chat.v2"
    headers = seen["headers"]
    assert seen["path"] == "/chat?room=1&x=%20y"
    assert headers["X-Token"] == "abc"
    assert headers["Cookie"] == "a=1; b=2"
    assert headers["Origin"] == "http://app.example"
    assert headers["Host"] == f"127.0.0.1:{port}"  # regenerated for the upstream
    assert headers["Sec-WebSocket-Protocol"] == "chat.v1, chat.v2"
    assert len(headers.get_all("Sec-WebSocket-Key")) == 1
    assert "Sec-WebSocket-Extensions" not in headers  # the client offered nothing


async def test_a_403_with_its_body_and_headers_passed_back():
    def refuse(connection, request):
        response = connection.respond(HTTPStatus.FORBIDDEN, "go away: no token\n")
        response.headers["X-Why"] = "token missing"
        return response

    async def handler(ws):  # pragma: no cover - never reached
        await ws.wait_closed()

    async with ws_serve(handler, "127.0.0.1", 0, process_request=refuse) as srv:
        port = srv.sockets[0].getsockname()[1]
        async with rw.relay(f"ws://127.0.0.1:{port}") as relay:
            with pytest.raises(InvalidStatus) as info:
                await ws_connect(relay.url + "/private", compression=None)
            response = info.value.response
            assert response.status_code == 403
            assert response.body == b"go away: no token\n"
            assert response.headers["X-Why"] == "token missing"
            assert relay.flows == []
            [refusal] = relay.refused
            assert refusal.status == 403 and refusal.path == "/private" and refusal.body == b"go away: no token\n"


async def test_an_unreachable_upstream_is_a_502():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    async with rw.relay(f"ws://127.0.0.1:{port}") as relay:
        with pytest.raises(InvalidStatus) as info:
            await ws_connect(relay.url, compression=None)
        assert info.value.response.status_code == 502
        assert b"cannot open the upstream" in info.value.response.body


async def test_a_request_that_is_not_an_upgrade_gets_400():
    async with rw.relay("ws://127.0.0.1:9") as relay:
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        assert head.startswith(b"HTTP/1.1 400 ")
        assert relay.refused[0].status == 400


def test_bad_upstream_urls_are_refused_at_once():
    with pytest.raises(ValueError, match="not a WebSocket URL"):
        rw.relay("ftp://example.org")
    with pytest.raises(ValueError, match='"auto", "passthrough", None'):
        rw.relay("ws://127.0.0.1:1", compression="zstd")


# -- hooks --------------------------------------------------------------------------------------


async def echo_through(server, hook, messages, expect, **options):
    async with rw.relay(server.url, on_frame=hook, **options) as relay:
        async with ws_connect(relay.url + "/echo", compression=None) as ws:
            for message in messages:
                await ws.send(message)
            got = [await asyncio.wait_for(ws.recv(), 5) for _ in range(expect)]
        await ended(relay)
        return relay, got


async def test_a_hook_returning_none_drops_the_frame(server):
    def hook(frame, flow, direction):
        if direction == "up" and isinstance(frame, Frame.Text) and b"secret" in frame.data:
            return None
        return frame

    relay, got = await echo_through(server, hook, ["a", "secret", "b"], 2)
    assert got == ["a", "b"]
    df = relay.timeline
    assert list(data_rows(df, "client", "rx").text) == ["a", "secret", "b"]  # received, recorded
    assert list(data_rows(df, "upstream", "tx").text) == ["a", "b"]  # not forwarded


async def test_a_hook_returning_another_frame_replaces_it(server):
    def hook(frame, flow, direction):
        if direction == "down" and isinstance(frame, Frame.Text):
            return Frame.Text(frame.read_text().upper())
        return frame

    relay, got = await echo_through(server, hook, ["shout"], 1)
    assert got == ["SHOUT"]
    assert list(data_rows(relay.timeline, "upstream", "rx").text) == ["shout"]


async def test_a_hook_returning_a_list_injects_frames(server):
    def hook(frame, flow, direction):
        if direction == "down" and isinstance(frame, Frame.Text):
            return [frame, Frame.Text("injected after " + frame.read_text())]
        return frame

    _, got = await echo_through(server, hook, ["one"], 2)
    assert got == ["one", "injected after one"]


async def test_an_async_hook_is_awaited(server):
    async def hook(frame, flow, direction):
        await asyncio.sleep(0)
        return Frame.Text("async") if isinstance(frame, Frame.Text) and direction == "up" else frame

    _, got = await echo_through(server, hook, ["x"], 1)
    assert got == ["async"]


async def test_a_hook_that_raises_is_an_error_row_and_the_frame_goes_through(server):
    def hook(frame, flow, direction):
        if isinstance(frame, Frame.Text) and frame.data == b"boom":
            raise ValueError("hook bug")
        return frame

    relay, got = await echo_through(server, hook, ["before", "boom", "after"], 3)
    assert got == ["before", "boom", "after"]  # forwarded unchanged, the flow lives on
    df = relay.timeline
    errors = df[df.error.notna()]
    assert len(errors) == 2  # once up, once down
    assert all("on_frame raised ValueError: hook bug" in e for e in errors.error)
    assert set(errors.leg) == {"client", "upstream"}
    assert relay.flows[0].hook_errors == 2


async def test_a_hook_returning_nonsense_is_an_error_row(server):
    def hook(frame, flow, direction):
        return "not a frame" if isinstance(frame, Frame.Text) else frame

    relay, got = await echo_through(server, hook, ["x"], 1)
    assert got == ["x"]
    assert relay.timeline.error.str.contains("must return a Frame").sum() == 2


async def test_refragment_splits_frames_into_n_bytes(peer):
    async with rw.relay(peer.url, on_frame=refragment(3, "up")) as relay:
        async with ws_connect(relay.url, compression=None) as ws:
            await ws.send("abcdefgh")
            await peer.wait_for(lambda got: len(got) >= 3)
    assert [(f.opcode, f.fin, f.data) for f in peer.received[:3]] == [
        ("TEXT", False, b"abc"),
        ("CONT", False, b"def"),
        ("CONT", True, b"gh"),
    ]
    await ended(relay)


async def test_rewrite_text_by_regex_and_chain(server):
    hook = chain(rewrite_text(r"\d+", "#", "up"), rewrite_text("cat", "dog"))
    _, got = await echo_through(server, hook, ["cat 123 and 45", b"\x00binary 1"], 2)
    assert got == ["dog # and #", b"\x00binary 1"]


async def test_delay_holds_frames(server):
    start = time.perf_counter()
    _, got = await echo_through(server, delay(0.3, "down"), ["slow"], 1)
    assert got == ["slow"] and time.perf_counter() - start >= 0.3


async def test_intercept_holds_frames_to_forward_edit_or_drop(server):
    async with rw.relay(server.url) as relay:
        relay.intercept = True
        async with ws_connect(relay.url + "/echo", compression=None) as ws:
            await ws.send("first")
            await until(lambda: len(relay.held) == 1)
            assert relay.held[0].direction == "up" and relay.held[0].frame.data == b"first"
            relay.held[0].forward(Frame.Text("edited"))
            await until(lambda: len(relay.held) == 1 and relay.held[0].direction == "down")
            relay.held[0].forward()
            assert await asyncio.wait_for(ws.recv(), 5) == "edited"
            await ws.send("dropped")
            await until(lambda: len(relay.held) == 1)
            relay.held[0].drop()
            await ws.send("third")
            await until(lambda: len(relay.held) == 1)
            relay.intercept = False  # releases what waits, and holds nothing more
            assert await asyncio.wait_for(ws.recv(), 5) == "third"
        await ended(relay)
        assert list(data_rows(relay.timeline, "upstream", "tx").text) == ["edited", "third"]


async def test_injecting_is_sending_on_a_leg(peer):
    async with rw.relay(peer.url) as relay:
        async with ws_connect(relay.url, compression=None) as ws:
            await until(lambda: relay.flows)
            flow = relay.flows[0]
            await flow.client.send("to the client")
            await flow.upstream.send(Frame.Binary(b"\x07to the upstream"))
            assert await asyncio.wait_for(ws.recv(), 5) == "to the client"
            await peer.wait_for(lambda got: any(f.data == b"\x07to the upstream" for f in got))
        await ended(relay)


# -- legs that end badly ---------------------------------------------------------------------------


async def test_upstream_drops_mid_message(server):
    async with rw.relay(server.url) as relay:
        async with ws_connect(relay.url + "/bad/drop", compression=None) as ws:
            assert await ws.recv() == "about to send: drop"
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 1006  # no Close frame reached the client: the relay dropped it too
        await ended(relay)
        flow = relay.flows[0]
        assert flow.upstream.close_reason.code == 1006 and flow.client.close_reason.code == 1006
        df = relay.timeline
        up = df[(df.leg == "upstream") & df.error.notna()]
        assert any("connection dropped" in e or "ended" in e for e in up.error)  # the partial frame
        assert (up.close_code == 1006).any()
        client_note = df[(df.leg == "client") & df.error.notna()]
        assert list(client_note.close_code) == [1006]
        assert "relay dropped this leg" in client_note.error.iloc[0]


async def test_the_client_vanishes_mid_message(peer):
    async with rw.relay(peer.url) as relay:
        ws = await ws_connect(relay.url, compression=None)
        gate = asyncio.Event()

        async def parts():
            yield "half "
            await gate.wait()
            yield "never sent"  # pragma: no cover

        sender = asyncio.create_task(ws.send(parts()))  # one fragment, then the client waits
        await peer.wait_for(lambda got: len(got) >= 1)
        ws.transport.abort()  # ... and vanishes: TCP reset, no Close
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        await ended(relay)
        conn = peer.connections[-1]
        await until(lambda: conn.transport.is_closing())
        assert peer.received[0].opcode == "TEXT" and not peer.received[0].fin
        flow = relay.flows[0]
        assert flow.client.close_reason.code == 1006
        df = relay.timeline
        notes = df[df.error.notna()]
        assert [(r.leg, r.dir, r.close_code) for r in notes.itertuples()] == [
            ("client", "rx", 1006),
            ("upstream", "tx", 1006),
        ]


async def test_a_protocol_violation_on_one_leg_drops_the_other(server):
    async with rw.relay(server.url) as relay:
        async with ws_connect(relay.url + "/bad/rsv", compression=None) as ws:
            assert await ws.recv() == "about to send: rsv"
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 5)
        await ended(relay)
        flow = relay.flows[0]
        assert flow.upstream.close_reason.code == 1002  # the relay's upstream leg failed it
        df = relay.timeline
        assert df[(df.leg == "client") & df.error.notna()].close_code.tolist() == [1006]


# -- many flows -----------------------------------------------------------------------------------


async def test_100_concurrent_flows_lose_nothing(server):
    n_flows, n_messages = 100, 20

    async with rw.relay(server.url) as relay:

        async def one(i):
            async with ws_connect(relay.url + f"/echo?flow={i}", compression=None) as ws:
                for j in range(n_messages):
                    await ws.send(f"{i}:{j}")
                return [await asyncio.wait_for(ws.recv(), 10) for _ in range(n_messages)]

        results = await asyncio.gather(*(one(i) for i in range(n_flows)))
        for i, got in enumerate(results):
            assert got == [f"{i}:{j}" for j in range(n_messages)]
        await ended(relay, n_flows, timeout=30)
        df = relay.timeline
        total = n_flows * n_messages
        for leg, direction in [("client", "rx"), ("upstream", "tx"), ("upstream", "rx"), ("client", "tx")]:
            assert len(data_rows(df, leg, direction)) == total, (leg, direction)
        assert df.flow.nunique() == n_flows
        assert df.error.isna().all()
        per_flow = data_rows(df, "upstream", "tx").groupby("flow").size()
        assert (per_flow == n_messages).all()


# -- compression ---------------------------------------------------------------------------------


async def test_compression_negotiated_on_each_leg_hooks_see_inflated_data():
    seen = []

    async def handler(ws):
        async for message in ws:
            await ws.send(message)

    def hook(frame, flow, direction):
        if isinstance(frame, Frame.Text):
            seen.append((direction, frame.compressed, frame.data))
        return frame

    async with ws_serve(handler, "127.0.0.1", 0) as srv:  # websockets: compression on by default
        port = srv.sockets[0].getsockname()[1]
        async with rw.relay(f"ws://127.0.0.1:{port}", on_frame=hook) as relay:
            async with ws_connect(relay.url) as ws:  # offers permessage-deflate by default
                assert "permessage-deflate" in ws.response.headers["Sec-WebSocket-Extensions"]
                await ws.send("squeeze me " * 20)
                assert await ws.recv() == "squeeze me " * 20
            await ended(relay)
            flow = relay.flows[0]
            assert flow.client.extensions and flow.upstream.extensions
    assert seen == [("up", True, b"squeeze me " * 20), ("down", True, b"squeeze me " * 20)]
    df = data_rows(relay.timeline, "upstream", "tx")
    assert df.compressed.all() and (df.inflated_length == 220).all() and (df.length < 220).all()


async def test_compression_none_strips_the_offer():
    async def handler(ws):
        await ws.send(ws.request.headers.get("Sec-WebSocket-Extensions", "no extensions offered"))
        await ws.wait_closed()

    async with ws_serve(handler, "127.0.0.1", 0) as srv:
        port = srv.sockets[0].getsockname()[1]
        async with rw.relay(f"ws://127.0.0.1:{port}", compression=None) as relay:
            async with ws_connect(relay.url) as ws:
                assert await ws.recv() == "no extensions offered"
                assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
            await ended(relay)


# -- TLS --------------------------------------------------------------------------------------


async def test_tls_both_legs_with_a_local_ca(tls_server, client_tls):
    ca = LocalCA()
    listen = ca.server_context("localhost", "127.0.0.1")
    async with rw.relay(f"wss://localhost:{tls_server.port}", tls=listen, upstream_tls=client_tls) as relay:
        assert relay.url.startswith("wss://127.0.0.1:")
        async with ws_connect(relay.url + "/echo", ssl=ca.client_context(), compression=None) as ws:
            await ws.send("over tls")
            assert await ws.recv() == "over tls"
        await ended(relay)
        assert relay.flows[0].upstream_url.startswith("wss://localhost:")


async def test_a_wss_upstream_is_verified_by_default(tls_server):
    async with rw.relay(f"wss://localhost:{tls_server.port}") as relay:  # the test CA is not trusted
        with pytest.raises(InvalidStatus) as info:
            await ws_connect(relay.url + "/echo", compression=None)
        assert info.value.response.status_code == 502
        assert b"certificate" in info.value.response.body.lower()


def test_local_ca_contexts_are_tls_contexts():
    ca = LocalCA()
    assert isinstance(ca.server_context(), ssl.SSLContext)
    assert ca.client_context().verify_mode == ssl.CERT_REQUIRED
    assert ca.cert_pem.startswith(b"-----BEGIN CERTIFICATE-----")


# -- the timeline ---------------------------------------------------------------------------------


async def test_timeline_saves_and_loads_and_writes_pcapng(server, tmp_path):
    async with rw.relay(server.url) as relay:
        async with ws_connect(relay.url + "/echo", compression=None) as ws:
            await ws.send("saved")
            await ws.recv()
        await ended(relay)
        df = relay.timeline
        assert list(df.columns[:2]) == ["flow", "leg"]
        assert df.t.is_monotonic_increasing
        assert (df.t_rel >= 0).all()
        path = relay.save_timeline(tmp_path / "relay.parquet")
        back = rw.read_timeline(path)
        assert list(back.leg) == list(df.leg) and list(back.flow) == list(df.flow)
        assert back.attrs["upstream"] == server.url + "/"
        pcap = rw.to_pcapng(df, tmp_path / "relay.pcapng")
        assert pcap.stat().st_size > 0
        back_pcap = rw.read_pcap(pcap)
        assert back_pcap.connection.nunique() == 2  # one per leg


async def test_relay_close_ends_open_flows_without_a_hang(server):
    relay = await rw.relay(server.url)
    ws = await ws_connect(relay.url + "/sink", compression=None)
    await until(lambda: relay.flows)
    await asyncio.wait_for(relay.close(), 10)
    assert all(flow.ended for flow in relay.flows)
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 5)


async def test_relay_close_with_a_reason_sends_close_to_both_peers(server):
    relay = await rw.relay(server.url)
    ws = await ws_connect(relay.url + "/echo", compression=None)
    await until(lambda: relay.flows)
    await asyncio.wait_for(relay.close(CloseReason(CloseReason.Codes.GOING_AWAY, "relay stops")), 10)
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 5)
    assert ws.close_code == 1001


# -- the CLI, as real processes ------------------------------------------------------------------

CLI = [sys.executable, "-m", "rawws_nb.cli", "relay"]


async def start_cli(*args):
    proc = await asyncio.create_subprocess_exec(
        *CLI, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env={**os.environ, "NO_COLOR": "1"}
    )
    return proc


async def listening_url(proc, json_mode=False):
    stream = proc.stderr if json_mode else proc.stdout
    line = (await asyncio.wait_for(stream.readline(), 20)).decode()
    match = re.search(r"relay on (ws://\S+) ->", line)
    assert match, line
    return match.group(1)


async def test_cli_relay_prints_both_legs_and_saves(server, tmp_path):
    save = tmp_path / "both-legs.parquet"
    proc = await start_cli(server.url, "--flows", "1", "--save", str(save))
    url = await listening_url(proc)
    async with ws_connect(url + "/echo", compression=None) as ws:
        await ws.send("through the cli")
        assert await ws.recv() == "through the cli"
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 0, err
    text = out.decode()
    assert "flow 1: /echo ->" in text
    for leg, arrow in [("client  ", "← RX"), ("upstream", "→ TX"), ("upstream", "← RX"), ("client  ", "→ TX")]:
        assert re.search(rf"\[flow 1 {leg}\] .*{arrow} TEXT .*'through the cli'", text), (leg, arrow)
    assert "flow 1 ended: client 1000, upstream 1000" in text
    df = rw.read_timeline(save)
    assert set(df.leg) == {"client", "upstream"} and (df.flow == 1).all()
    assert "saved to" in err.decode()


async def test_cli_relay_json_lines_carry_flow_and_leg(server):
    proc = await start_cli(server.url, "--flows", "1", "--json")
    url = await listening_url(proc, json_mode=True)
    async with ws_connect(url + "/echo", compression=None) as ws:
        await ws.send("json")
        await ws.recv()
    out, _ = await asyncio.wait_for(proc.communicate(), 20)
    rows = [json.loads(line) for line in out.decode().splitlines()]
    assert [(r["leg"], r["dir"], r["opcode"]) for r in rows if r["opcode"] == "text"] == [
        ("client", "rx", "text"),
        ("upstream", "tx", "text"),
        ("upstream", "rx", "text"),
        ("client", "tx", "text"),
    ]
    assert all(r["flow"] == 1 for r in rows)


async def test_cli_relay_stops_on_ctrl_c_and_still_saves(server, tmp_path):
    save = tmp_path / "interrupted.parquet"
    proc = await start_cli(server.url, "--save", str(save))
    url = await listening_url(proc)
    ws = await ws_connect(url + "/echo", compression=None)
    await ws.send("still open")
    await ws.recv()
    await asyncio.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 130, err
    assert "Traceback" not in err.decode()
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 5)
    assert len(rw.read_timeline(save)) >= 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["http://127.0.0.1:1"], "http:// is not a WebSocket URL"),
        (["127.0.0.1:1"], "has no scheme"),
        (["ws://127.0.0.1:1", "--port", "70000"], "not a TCP port"),
        (["ws://127.0.0.1:1", "--flows", "0"], "not a positive count"),
        (["ws://127.0.0.1:1", "--save", "/no/such/dir/x.parquet"], "no such directory"),
        ([], "the following arguments are required: upstream"),
    ],
)
def test_cli_relay_bad_input_is_one_line_and_exit_2(args, message):
    result = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_cli_relay_port_in_use_is_one_line_and_exit_2():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = subprocess.run(
            [*CLI, "ws://127.0.0.1:1", "--port", str(port)], capture_output=True, text=True, timeout=30
        )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot listen on 127.0.0.1" in lines[0], result.stderr


async def test_keep_flows_forgets_the_oldest_ended_flows(server):
    async with rw.relay(server.url, keep_flows=2) as relay:
        for i in range(5):
            async with ws_connect(relay.url + "/echo", compression=None) as ws:
                await ws.send(f"flow {i}")
                assert await ws.recv() == f"flow {i}"
            await until(lambda: all(f.ended for f in relay.flows))
        async with ws_connect(relay.url + "/echo", compression=None) as ws:  # open while others are forgotten
            await ws.send("open")
            assert await ws.recv() == "open"
            ids = [f.id for f in relay.flows]
            assert ids == [4, 5, 6] and not relay.flows[-1].ended
            assert relay.forgotten == 3
            texts = set(data_rows(relay.timeline, "client", "rx").text)
            assert texts == {"flow 3", "flow 4", "open"}
    with pytest.raises(ValueError, match="keep_flows"):
        rw.relay(server.url, keep_flows=-1)


async def test_large_messages_cross_the_relay_whole_both_ways():
    # The upstream leg (a client session) reads a large frame's payload straight into
    # its buffer; the client leg (a server session) reads masked frames as they come.
    async def echo(ws):
        async for message in ws:
            await ws.send(message)

    async with ws_serve(echo, "127.0.0.1", 0, compression=None, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        async with rw.relay(f"ws://127.0.0.1:{port}", max_message_size=None) as relay:
            payload, text = os.urandom(3 * 2**20), "ß" * 150_000
            async with ws_connect(relay.url + "/", compression=None, max_size=None) as ws:
                await ws.send(payload)
                assert await ws.recv() == payload
                await ws.send(text)
                assert await ws.recv() == text
            await ended(relay)
            df = relay.timeline
            for leg, direction in [("client", "rx"), ("upstream", "tx"), ("upstream", "rx"), ("client", "tx")]:
                assert data_rows(df, leg, direction).length.tolist() == [len(payload), len(text.encode())]
