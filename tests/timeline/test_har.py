"""HAR: Chrome's `_webSocketMessages`, out and back in."""

from __future__ import annotations

import base64
import json

import pandas as pd
import pytest

from rawws_nb.timeline import COLUMNS, read_har, to_har

from .test_persist import SCRIPTS

CHROME_HAR = {
    "log": {
        "version": "1.2",
        "creator": {"name": "WebInspector", "version": "537.36"},
        "entries": [
            {"request": {"url": "https://example.org/app.js"}, "startedDateTime": "2026-01-01T00:00:00.000Z"},
            {
                "startedDateTime": "2026-01-01T00:00:00.000Z",
                "request": {"method": "GET", "url": "wss://example.org/live"},
                "response": {"status": 101},
                "_resourceType": "websocket",
                "_webSocketMessages": [
                    {"type": "send", "time": 1767225600.25, "opcode": 1, "data": '{"op":"sub"}'},
                    {"type": "receive", "time": 1767225600.5, "opcode": 2, "data": "AAH/"},
                    {"type": "receive", "time": 1767225601.0, "opcode": 1, "data": "héllo"},
                    {"type": "error", "time": 1767225601.5, "opcode": -1, "data": "net::ERR"},
                ],
            },
        ],
    }
}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
async def test_har_round_trip_equals_the_original_frame_by_frame(server, tmp_path, script):
    session = await SCRIPTS[script](server.url)
    df = session.timeline
    har = to_har(session, tmp_path / "t.har")
    back = read_har(tmp_path / "t.har")
    assert read_har(har).equals(back)
    pd.testing.assert_frame_equal(back, df, check_exact=True)
    assert back.attrs["url"] == session.url and back.attrs["started_at_ns"] == session.started_at
    entry = json.loads((tmp_path / "t.har").read_text())["log"]["entries"][0]
    assert entry["_resourceType"] == "websocket" and entry["request"]["url"] == session.url
    assert entry["response"]["status"] == 101
    for msg, (_, row) in zip(entry["_webSocketMessages"], df.iterrows(), strict=True):
        assert msg["type"] == ("send" if row.dir == "tx" else "receive")
        assert msg["opcode"] == COLUMNS["opcode"].categories.get_loc(row.opcode)
        assert msg["time"] == pytest.approx(row.t.value / 1e9, abs=1e-6)
        if msg["opcode"] == 1 and "_encoding" not in msg:
            assert msg["data"].encode() == row.payload  # Chrome's convention: text as is
        else:
            assert base64.b64decode(msg["data"]) == row.payload  # everything else base64


def test_reads_chromes_har():
    df = read_har(CHROME_HAR)
    assert dict(df.dtypes) == COLUMNS
    assert df.dir.tolist() == ["tx", "rx", "rx"] and df.opcode.tolist() == ["text", "binary", "text"]
    assert df.payload.tolist() == [b'{"op":"sub"}', b"\x00\x01\xff", "héllo".encode()]
    assert df.text.tolist() == ['{"op":"sub"}', pd.NA, "héllo"] and df.fin.all()
    assert df.message.tolist() == [0, 1, 2]
    assert df.t.tolist()[0] == pd.Timestamp("2026-01-01T00:00:00.25", tz="UTC")
    assert df.t_rel.tolist() == [0.25, 0.5, 1.0]
    assert df.attrs["url"] == "wss://example.org/live" and df.attrs["har_errors"] == 1
    assert df.rawws.rtt().rtt.tolist() == [0.25]
    with pytest.raises(ValueError, match="no WebSocket entry 0 with a URL containing 'nope'"):
        read_har(CHROME_HAR, url="nope")
