"""Parquet: saved and read back equal to the original, frame by frame, with metadata."""

from __future__ import annotations

import asyncio

import pandas as pd
import pyarrow.parquet as pq
import pytest

import rawws_nb as rw
from rawws_nb import Frame
from rawws_nb.timeline import COLUMNS, empty_timeline, read_timeline, save_timeline
from rawws_nb.timeline.persist import decode_fields, encode_fields, read_metadata

from .conftest import fragments_script


async def tlv_script(url: str) -> rw.RawSession:
    """A codec session: msg_type/fields filled, and a decode error."""
    from protocols import tlv
    from rawws_nb.codec import negotiate

    session = await rw.web_socket_raw_session(url + "/proto/tlv")
    await negotiate(session, tlv.PROTOCOL)
    await session.send(tlv.PROTOCOL.frame("chat", id=1, text="hé"))
    await session.send(Frame.Binary(b"\x99\x00\x00\x00\x00"))
    async with asyncio.timeout(5):
        for _ in range(3):  # ack, chat, error
            await session.incoming.receive()
    await session.close()
    return session


async def error_script(url: str) -> rw.RawSession:
    """A peer violation (invalid UTF-8): an error row, a 1007 close."""
    session = await rw.web_socket_raw_session(url + "/bad/utf8", close_timeout=1)
    await session.incoming.receive()
    with pytest.raises(rw.PeerProtocolError):
        await session.incoming.receive()
    await session.wait_closed()
    return session


SCRIPTS = {
    "fragments": lambda url: fragments_script(url),
    "capped": lambda url: fragments_script(url, payload_cap=3),
    "tlv": tlv_script,
    "error": error_script,
}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
async def test_parquet_round_trip_is_lossless(server, tmp_path, script):
    session = await SCRIPTS[script](server.url)
    df = session.timeline
    path = save_timeline(session, tmp_path / "t.parquet")
    back = read_timeline(path)
    pd.testing.assert_frame_equal(back, df, check_exact=True)
    assert dict(back.dtypes) == COLUMNS and isinstance(back.index, pd.RangeIndex)
    assert back.payload.tolist() == df.payload.tolist()  # bytes, exactly
    assert back.fields.tolist() == df.fields.tolist()
    meta = back.attrs
    assert meta["url"] == session.url and meta["subprotocol"] is None
    assert meta["started_at_ns"] == session.started_at
    assert pd.Timestamp(meta["started_at"]) == pd.Timestamp(session.started_at, tz="UTC")
    assert (meta["capacity"], meta["payload_cap"], meta["dropped"]) == (
        session.recorder.capacity,
        session.recorder.payload_cap,
        0,
    )
    assert meta["frames"] == len(df) and meta["schema_version"] == 1
    assert read_metadata(path) == meta
    if script == "tlv":
        assert meta["protocol"] == "tlv" and meta["protocol_version"] == "1.0"
        assert df.msg_type.notna().sum() >= 4 and df.error.notna().sum() >= 1
    if script == "error":
        assert df.close_code.dropna().tolist() == [1007] and df.error.notna().sum() == 1


async def test_a_view_keeps_its_frame_numbers_and_attrs(fragments_session, tmp_path):
    view = fragments_session.timeline.loc[[2, 9, 12]]
    view.attrs = {"note": "picked"}
    back = read_timeline(save_timeline(view, tmp_path / "v.parquet", metadata={"extra": 1}))
    pd.testing.assert_frame_equal(back, view, check_exact=True)
    assert back.index.tolist() == [2, 9, 12] and back.attrs["note"] == "picked" and back.attrs["extra"] == 1
    assert view.rawws.save(tmp_path / "w.parquet").exists()


def test_empty_timeline_and_pandas_reader(tmp_path):
    path = save_timeline(empty_timeline(), tmp_path / "e.parquet")
    pd.testing.assert_frame_equal(read_timeline(path), empty_timeline())
    plain = pd.read_parquet(path)  # pandas' own reader: same columns, fields as JSON text
    assert list(plain.columns) == list(COLUMNS)
    assert b"rawws_nb" in pq.read_schema(path).metadata


@pytest.mark.parametrize(
    "value",
    [
        {"id": 1, "text": "hé", "blob": b"\x00\xff", "items": [1, 2.5, None, True, "x"], "nested": {"a": {"b": []}}},
        {"$bytes": "not special with another key", "x": 1},
        {},
    ],
)
def test_fields_json_round_trip(value):
    assert decode_fields(encode_fields(value)) == value
    assert encode_fields(None) is None and decode_fields(None) is None
