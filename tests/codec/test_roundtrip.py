"""Round trips of every message type, and hypothesis properties of the codec."""

from __future__ import annotations

import importlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import protocols
from rawws_nb.codec import DecodeError, EncodeError, ProtocolVersion, check_roundtrip, decode_for_timeline
from rawws_nb.codec.fastpath import DECODE_MISSES, ENCODE_MISSES
from rawws_nb.codec.testing import same_value

from .strategies import (
    KITCHEN_PROTOCOL,
    LE_PROTOCOL,
    MAGIC_PROTOCOL,
    VARINT_PROTOCOL,
    float_like,
    header_context,
    message_fields,
    message_like_bytes,
    rich_fields,
    split_header,
    valid_messages,
)

READY = [importlib.import_module(f"protocols.{name}").PROTOCOL for name in protocols.NAMES]
TEST_PROTOCOLS = [KITCHEN_PROTOCOL, LE_PROTOCOL, VARINT_PROTOCOL, MAGIC_PROTOCOL]
CODECS: list[ProtocolVersion] = [p.for_version(v) for p in READY + TEST_PROTOCOLS for v in p.versions]
READY_TYPES = [(p.for_version(v), mt.name) for p in READY for v in p.versions for mt in p.for_version(v)]

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _id(case: tuple[ProtocolVersion, str]) -> str:
    pv, name = case
    return f"{pv.name}-{pv.version[0]}.{pv.version[1]}-{name}"


@pytest.mark.parametrize("case", READY_TYPES, ids=[_id(c) for c in READY_TYPES])
def test_every_ready_made_message_type_round_trips(case):
    pv, name = case
    mt = pv.message_type(name)
    msg = check_roundtrip(pv, name, mt.example())
    assert msg.name == name and msg.version == pv.version


@pytest.mark.parametrize("case", READY_TYPES, ids=[_id(c) for c in READY_TYPES])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_every_ready_made_message_type_round_trips_random_values(case, data):
    pv, name = case
    fields = data.draw(message_fields(pv.message_type(name)))
    check_roundtrip(pv, name, fields)


def test_ready_made_protocols_are_compiled():
    # every message type of protocols/ takes the compiled path (FlagsEnum and, in MQTT's
    # CONNECT, a BitStruct inside the payload excepted)
    for pv in (p.for_version(v) for p in READY for v in p.versions):
        for mt in pv:
            if "features" in mt.field_names or "connect_flags" in mt.field_names:
                continue
            assert mt.codec.compiled is not None, mt
            assert pv.fast_paths(mt.name) == (True, True), mt


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: f"{c.name}-{c.version[0]}.{c.version[1]}")
@PROPERTY
@given(data=st.data())
def test_random_valid_messages_round_trip(codec, data):
    name, fields = data.draw(valid_messages(codec))
    msg = check_roundtrip(codec, name, fields)
    infos = {f.name: f for f in codec.message_type(name).fields}
    for key, value in fields.items():
        info = infos[key]
        got = msg.fields[key]
        if info.condition is not None and got is None:
            continue  # given, but its condition is false: not on the wire
        if info.kind == "float":
            assert same_value(got, float_like(value, info.size or 8))
        elif info.kind in ("int", "str", "bytes", "bool"):
            assert got == value
        elif info.kind == "enum" and isinstance(value, str):
            assert got == value


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: f"{c.name}-{c.version[0]}.{c.version[1]}")
@PROPERTY
@given(data=st.data())
def test_random_bytes_raise_only_decode_error(codec, data):
    blob = data.draw(st.binary(max_size=80) | message_like_bytes(codec))
    try:
        msg = codec.decode(blob)
    except DecodeError as exc:
        assert exc.offset is None or exc.offset >= 0
        assert str(exc)
    else:
        assert msg.raw == blob and msg.name in codec
    _, fields, error = decode_for_timeline(codec, None, blob)
    assert (fields is None) == (error is not None)
    decoder = codec.decoder(errors="skip")
    try:
        decoder.feed(blob)
    except DecodeError:
        assert decoder.broken


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: f"{c.name}-{c.version[0]}.{c.version[1]}")
@PROPERTY
@given(data=st.data())
def test_compiled_payload_decoding_agrees_with_construct(codec, data):
    mt = data.draw(st.sampled_from([m for m in codec.message_types if m.codec.compiled is not None]))
    ctx = data.draw(header_context(mt))
    if data.draw(st.booleans()):
        payload = data.draw(st.binary(max_size=48))
    else:
        valid = mt.codec.encode_reference(split_header(mt, data.draw(message_fields(mt)))[0], ctx)
        cut = data.draw(st.integers(0, len(valid)))
        payload = valid[:cut] + data.draw(st.binary(max_size=3))
    assert mt.codec.compiled is not None
    try:
        ours = mt.codec.compiled.decode(payload, 0, len(payload), ctx)
    except DECODE_MISSES:  # anything else is a bug in the compiled code
        ours = None
    try:
        reference = mt.codec.decode_reference(payload, 0, len(payload), ctx=ctx)
    except DecodeError:
        reference = None
    assert (ours is None) == (reference is None), (payload, ours, reference)
    if ours is not None:
        assert same_value(ours, reference)


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: f"{c.name}-{c.version[0]}.{c.version[1]}")
@PROPERTY
@given(data=st.data())
def test_compiled_payload_encoding_agrees_with_construct(codec, data):
    mt = data.draw(st.sampled_from([m for m in codec.message_types if m.codec.compiled is not None]))
    ctx = data.draw(header_context(mt))
    fields = split_header(mt, data.draw(message_fields(mt)))[0]
    # sometimes break one value: wrong type, out of range, or a missing/extra key
    if fields and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(fields)))
        fields[key] = data.draw(st.sampled_from([None, -1, 2**70, "x", b"x", 1.5, [1], {}]))
    if data.draw(st.integers(0, 5)) == 0:
        fields["unexpected"] = 1
    assert mt.codec.compiled is not None
    try:
        ours = mt.codec.compiled.encode(dict(fields), ctx)
    except ENCODE_MISSES:  # anything else is a bug in the compiled code
        ours = None
    try:
        reference = mt.codec.encode_reference(dict(fields), ctx)
    except EncodeError:
        reference = None
    if ours is not None:
        assert ours == reference, (fields, ours, reference)


@pytest.mark.parametrize("codec", CODECS, ids=lambda c: f"{c.name}-{c.version[0]}.{c.version[1]}")
def test_every_truncation_agrees_with_construct(codec):
    """Each prefix of a rich valid payload (and each prefix plus one byte) decodes, or
    fails, the same way compiled and with construct; whole messages likewise."""
    for mt in codec.message_types:
        fields = rich_fields(mt.fields)
        own, ctx = split_header(mt, fields)
        payload = mt.codec.encode_reference(own, ctx)
        check_roundtrip(codec, mt.name, fields)
        message = codec.encode(mt.name, **fields)
        for cut in range(len(payload) + 1):
            for blob in (payload[:cut], payload[:cut] + b"\x00", payload[:cut] + b"\xff"):
                _agree(mt, blob, ctx)
        for cut in range(len(message)):
            with pytest.raises(DecodeError):
                codec.decode(message[:cut])


def _agree(mt, blob: bytes, ctx=None) -> None:
    try:
        ours = mt.codec.compiled.decode(blob, 0, len(blob), ctx) if mt.codec.compiled is not None else None
    except DECODE_MISSES:
        ours = None
    try:
        reference = mt.codec.decode_reference(blob, 0, len(blob), ctx=ctx)
    except DecodeError:
        reference = None
    if mt.codec.compiled is not None:
        assert (ours is None) == (reference is None), (mt.name, blob, ours, reference)
        assert ours is None or same_value(ours, reference)
