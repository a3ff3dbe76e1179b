"""SendPanel: programmatic clicks put the right frames on the wire; errors stay in the status line."""

from __future__ import annotations

import base64

import pytest

from rawws_nb import CloseReason, Frame, RawWsError, SessionState
from rawws_nb.codec import EncodeError
from rawws_nb.widgets import FormError, PayloadError, SendPanel, parse_payload
from rawws_nb.wire import encode_frame

from .conftest import wait_for


def make(session, panels, **kwargs) -> SendPanel:
    panel = SendPanel(session, **kwargs)
    panels.append(panel)
    return panel


async def test_text_click_reaches_server_and_echo_is_recorded(session, received, panels):
    panel = make(session, panels)
    assert "rawws-send" in panel._dom_classes
    assert "rawws-send-button" in panel.send_button._dom_classes
    assert "rawws-send-payload" in panel.payload._dom_classes
    panel.payload.value = "hello from the panel"
    panel.send_button.click()
    await wait_for(lambda: received.texts() == ["hello from the panel"], what="the server to receive the text")
    echo = await session.incoming.receive()
    assert echo == Frame.Text("hello from the panel")
    assert panel.status.kind == "ok" and "sent TEXT" in panel.status.text
    assert panel.sent == 1
    tl = session.timeline
    assert list(tl["dir"]) == ["tx", "rx"] and list(tl["text"]) == ["hello from the panel"] * 2


@pytest.mark.parametrize(
    ("kind", "encoding", "payload", "expected"),
    [
        ("binary", "hex", "01 02 ff", Frame.Binary(b"\x01\x02\xff")),
        ("binary", "hex", "0x0a:0b", Frame.Binary(b"\x0a\x0b")),
        ("binary", "base64", base64.b64encode(b"\x00\x10 bytes").decode(), Frame.Binary(b"\x00\x10 bytes")),
        ("text", "hex", "68 69", Frame.Text("hi")),
        ("ping", "text", "manual-ping", Frame.Ping(b"manual-ping")),
        ("pong", "text", "unsolicited", Frame.Pong(b"unsolicited")),
    ],
)
async def test_frame_types_and_encodings(session, received, panels, kind, encoding, payload, expected):
    panel = make(session, panels)
    panel.kind.value = kind
    panel.encoding.value = encoding
    panel.payload.value = payload
    panel.send_button.click()
    await wait_for(lambda: len(received) == 1, what="one frame at the server")
    assert received[0] == expected
    assert panel.status.kind == "ok"


async def test_fragments_with_fin_toggle(session, received, panels):
    panel = make(session, panels)
    panel.payload.value = "Part 1 "
    panel.fin.value = False
    panel.send_button.click()
    await wait_for(lambda: panel.sent == 1)
    panel.payload.value = "Part 2"
    panel.fin.value = True
    panel.send_button.click()
    await wait_for(lambda: len(received) == 2, what="two fragments")
    assert [(f.data, f.fin) for f in received] == [(b"Part 1 ", False), (b"Part 2", True)]
    tx = session.timeline.query("dir == 'tx'")
    assert list(tx["opcode"]) == ["text", "continuation"]


async def test_close_with_code_and_reason(session, received, panels):
    panel = make(session, panels)
    panel.kind.value = "close"
    panel.close_code.value = -1  # "other code…"
    panel.close_other.value = 4001
    panel.close_reason.value = "bye from the panel"
    assert panel.close_row.layout.display is None and panel.payload_row.layout.display == "none"
    panel.send_button.click()
    await wait_for(lambda: received and isinstance(received[-1], Frame.Close), what="the Close at the server")
    assert received[-1].read_reason() == CloseReason(4001, "bye from the panel")
    await wait_for(lambda: session.state is SessionState.CLOSED, what="the session to close")
    assert session.close_reason == CloseReason(4001, "")  # the server's reply echoes the code


async def test_raw_bytes_go_through_send_raw(session, received, panels):
    panel = make(session, panels)
    panel.kind.value = "raw"
    panel.encoding.value = "hex"
    panel.payload.value = encode_frame(10, b"crafted", mask=b"abcd").hex(" ")
    panel.send_button.click()
    await wait_for(lambda: len(received) == 1)
    assert received[0] == Frame.Pong(b"crafted")
    assert "raw bytes" in panel.status.text


async def test_invalid_hex_and_base64_show_errors_without_raising(session, received, panels):
    panel = make(session, panels)
    panel.kind.value = "binary"
    panel.encoding.value = "hex"
    panel.payload.value = "01 0g"
    panel.send_button.click()  # must not raise
    assert panel.status.kind == "error"
    assert "invalid hex" in panel.status.text and "'g'" in panel.status.text
    panel.payload.value = "abc"
    panel.send_button.click()
    assert "odd number" in panel.status.text
    panel.encoding.value = "base64"
    panel.payload.value = "!!!"
    panel.send_button.click()
    assert "invalid base64" in panel.status.text
    assert "rawws-status-error" in panel.status.value
    await session.ping(b"sync", timeout=2)
    assert received == [Frame.Ping(b"sync")]  # nothing else was sent
    assert panel.sent == 0


async def test_invalid_send_and_closed_session_errors(session, received, panels):
    panel = make(session, panels)
    panel.kind.value = "ping"
    panel.payload.value = "p" * 200
    panel.send_button.click()
    assert panel.status.kind == "busy"
    await wait_for(lambda: panel.status.kind == "error", what="the InvalidSend error")
    assert "InvalidSend" in panel.status.text and "125" in panel.status.text
    panel.kind.value = "close"
    panel.close_code.value = -1
    panel.close_other.value = 1005
    panel.send_button.click()
    await wait_for(lambda: panel.status.kind == "error" and "1005" in panel.status.text)
    assert "InvalidSend" in panel.status.text

    await session.close()
    panel.kind.value = "text"
    panel.payload.value = "too late"
    panel.send_button.click()
    await wait_for(lambda: panel.status.kind == "error", what="the closed-session error")
    assert panel.status.kind == "error" and panel.status.text.startswith("not sent: the session is closed")


def test_parse_payload():
    assert parse_payload("héllo", "text") == "héllo".encode()
    assert parse_payload(" 0xDE ad\nbe:ef ", "hex") == b"\xde\xad\xbe\xef"
    assert parse_payload("AAE=", "base64") == b"\x00\x01"
    for text, enc in (("zz", "hex"), ("a", "hex"), ("A", "base64"), ("x", "rot13")):
        with pytest.raises(PayloadError):
            parse_payload(text, enc)


async def test_protocol_form_encodes_messages(session, received, panels):
    from protocols.tlv import PROTOCOL

    panel = make(session, panels, protocol=PROTOCOL)
    assert panel.kind.value == "message" and panel.form is not None
    assert set(panel.form.message_types) == {"hello", "chat", "ack", "error"}
    panel.form.set("chat", id=7, text="hi there")
    assert set(panel.form.inputs) == {"id", "text"}
    panel.send_button.click()
    await wait_for(lambda: len(received) == 1, what="the chat message")
    assert received[0] == Frame.Binary(PROTOCOL.encode("chat", id=7, text="hi there"))

    panel.form.set("error", message="bad")
    assert panel.form.inputs["code"].widget.options == ("bad_message", "unknown_type", "unexpected_frame", "internal")
    panel.form.inputs["code"].widget.value = "internal"
    panel.send_button.click()
    await wait_for(lambda: len(received) == 2)
    assert PROTOCOL.decode(received[1].data).fields == {"code": "internal", "message": "bad"}

    panel.form.set("chat", id=2**40, text="x")  # does not fit Int32ub
    panel.send_button.click()
    assert panel.status.kind == "error" and "id" in panel.status.text
    assert len(received) == 2
    with pytest.raises(EncodeError):
        panel.build()


async def test_protocol_form_uses_session_protocol_and_duck_typed_codecs(session, received, panels):
    from protocols.tlv import PROTOCOL

    session.set_protocol(PROTOCOL, (1, 0))
    panel = make(session, panels)
    assert panel.form is not None and panel.codec().version == (1, 0)

    class Field:
        def __init__(self, name, kind, **kw):
            self.name, self.kind, self.type = name, kind, kind
            self.__dict__.update(kw)

    class MT:
        name, code = "set", 9
        fields = (
            Field("n", "int"),
            Field("on", "bool"),
            Field("mode", "enum", choices=("a", "b")),
            Field("blob", "bytes"),
            Field("extra", "struct"),
        )

    class Codec:
        name = "duck"
        message_types = (MT,)

        def encode(self, name, **fields):
            return repr((name, sorted(fields.items()))).encode()

    duck = make(session, panels, protocol=Codec())
    duck.form.set(n=3, on=True, mode="b", blob=b"\x01\x02", extra={"k": [1, 2]})
    duck.send_button.click()
    await wait_for(lambda: len(received) == 1)
    expected = ("set", [("blob", b"\x01\x02"), ("extra", {"k": [1, 2]}), ("mode", "b"), ("n", 3), ("on", True)])
    assert received[0].data == repr(expected).encode()


def test_form_errors_share_the_package_error_root():
    for cls in (FormError, PayloadError):
        assert issubclass(cls, RawWsError) and issubclass(cls, ValueError)
    with pytest.raises(RawWsError, match="odd number"):
        parse_payload("abc", "hex")
