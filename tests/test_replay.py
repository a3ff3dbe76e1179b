"""Replay: the recorded tx frames go out again, as recorded, with the original spacing."""

from __future__ import annotations

import asyncio
import math

import pandas as pd

import rawws_nb as rw
from rawws_nb import Frame
from rawws_nb.frames import header_code
from rawws_nb.replay import replay
from rawws_nb.timeline.recorder import Recorder

COMPARED = ["dir", "opcode", "fin", "rsv1", "length", "payload", "text"]


async def test_replay_sends_the_same_frames_with_scaled_spacing(server):
    session = await rw.web_socket_raw_session(server.url + "/echo")
    await session.send(Frame.Text("one"))
    await asyncio.sleep(0.2)
    await session.send(Frame.Text("two ", fin=False))
    await session.send(Frame.Ping(b"inside"))
    await session.send(Frame.Text("parts"))
    await session.send(Frame.Binary(b"\x00\x01", rsv1=False))
    async with asyncio.timeout(5):
        for _ in range(5):
            await session.incoming.receive()
    await session.close()
    original = session.timeline

    again = await replay(original, server.url + "/echo", speed=2.0)
    new = again.timeline
    assert again.state is rw.SessionState.CLOSED and again.replay_stats == {"frames": 6, "skipped": 0, "capped": 0}
    sent, before = new[new.dir == "tx"], original[original.dir == "tx"]
    pd.testing.assert_frame_equal(sent[COMPARED].reset_index(drop=True), before[COMPARED].reset_index(drop=True))
    gap = (sent.t.iloc[1] - sent.t.iloc[0]).total_seconds()
    assert 0.09 <= gap < 0.5, gap  # 0.2 s recorded, at speed 2
    echoed = new[new.dir == "rx"].rawws.messages()
    assert echoed.text.dropna().tolist() == ["one", "two parts"] and len(new.rawws.latency()) == 1


async def test_frames_send_refuses_go_out_raw(server):
    rec = Recorder(t0=1)
    rec.add(1, header_code(3), b"reserved opcode", 0)  # send() cannot: send_raw
    rec.add(2, header_code(1), b"never sent", 1)
    again = await replay(rec.to_dataframe(), server.url + "/sink", speed=math.inf)
    new = again.timeline
    assert new.opcode.tolist()[0] == "reserved-3" and new.dir.tolist()[0] == "tx"
    assert again.close_reason.code == 1002  # the server failed the connection, the replay stopped
