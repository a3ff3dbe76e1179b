"""`SendPanel`: send any frame (or a codec message) from a form."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Hashable
from functools import partial
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ..frames import FRAME_CLASSES, CloseReason, Frame, FrameType
from ..loops import Handle
from ..session import SessionState
from ._base import Panel, describe_error
from .form import FormError, MessageForm, PayloadError, parse_payload

if TYPE_CHECKING:
    from ..session import RawSession

__all__ = ["SendPanel"]

KINDS: list[tuple[str, str]] = [
    ("Text", "text"),
    ("Binary", "binary"),
    ("Ping", "ping"),
    ("Pong", "pong"),
    ("Close", "close"),
    ("Raw bytes (send_raw)", "raw"),
]
_CLOSE_OTHER = -1
_CLOSE_EMPTY = -2
_CLOSE_CODES: list[tuple[str, int]] = [
    *((f"{c.value} {c.name}", c.value) for c in CloseReason.Codes),
    ("other code…", _CLOSE_OTHER),
    ("no code (empty Close)", _CLOSE_EMPTY),
]
_PLACEHOLDERS = {
    "text": "payload as text (UTF-8)",
    "hex": "payload as hex, e.g. 01 02 ff",
    "base64": "payload as base64",
}


def _compact(**kwargs: Any) -> dict[str, Any]:
    return {"layout": widgets.Layout(width="auto"), **kwargs}


class SendPanel(Panel):
    """Send one frame at a time: Text, Binary, Ping, Pong, Close, raw wire bytes, or,
    with a codec protocol, a message filled in from a form.

    The payload is typed as text, hex or base64; fin and rsv1-3 are sent as set (the
    session refuses invalid frames, e.g. a fragmented Ping: choose "Raw bytes" to put
    anything on the wire). Errors (invalid hex, encode errors, `InvalidSend`, a closed
    session) show in the status line, never as an exception in the kernel.

    `protocol`: a `rawws_nb.codec.Protocol` or `ProtocolVersion`; by default the
    session's own protocol, if it has one. `version` picks a version of a `Protocol`
    (default: the negotiated `session.protocol_version`, else the newest).

    Programmatic use: set the widgets (`panel.payload.value = "hi"`) and call
    `panel.send()` or `panel.send_button.click()`.
    """

    def __init__(
        self,
        session: RawSession,
        protocol: Any = None,
        *,
        version: Any = None,
        autorefresh: bool = True,
    ) -> None:
        super().__init__(session, status_class="rawws-send-status")
        self.add_class("rawws-send")
        if protocol is None:
            protocol = session.protocol
        self.protocol = protocol
        self.version = version
        self.sent = 0
        self.last_sent: Frame | bytes | None = None

        kinds = list(KINDS)
        self.form: MessageForm | None = None
        if protocol is not None:
            codec = self.codec()
            self.form = MessageForm(codec)
            kinds.insert(0, (f"Message ({getattr(codec, 'name', 'protocol')})", "message"))
        self.kind = widgets.Dropdown(options=kinds, value=kinds[0][1], description="frame", **_compact())
        self.kind.add_class("rawws-send-kind")
        self.encoding = widgets.ToggleButtons(
            options=[("text", "text"), ("hex", "hex"), ("base64", "base64")],
            value="text",
            style={"button_width": "auto"},
            tooltips=["UTF-8 text", "hex digits (spaces allowed)", "base64"],
        )
        self.encoding.add_class("rawws-send-encoding")
        self.payload = widgets.Textarea(
            value="", placeholder=_PLACEHOLDERS["text"], rows=2, layout=widgets.Layout(width="98%")
        )
        self.payload.add_class("rawws-send-payload")

        self.close_code = widgets.Dropdown(options=_CLOSE_CODES, value=1000, description="code", **_compact())
        self.close_code.add_class("rawws-send-close-code")
        self.close_other = widgets.IntText(value=4000, description="", layout=widgets.Layout(width="80px"))
        self.close_reason = widgets.Text(value="", placeholder="reason (UTF-8, ≤ 123 bytes)", description="reason")
        self.close_reason.add_class("rawws-send-close-reason")
        self.close_row = widgets.HBox([self.close_code, self.close_other, self.close_reason])

        self.fin = widgets.Checkbox(value=True, description="fin", indent=False, **_compact())
        self.rsv1 = widgets.Checkbox(value=False, description="rsv1", indent=False, **_compact())
        self.rsv2 = widgets.Checkbox(value=False, description="rsv2", indent=False, **_compact())
        self.rsv3 = widgets.Checkbox(value=False, description="rsv3", indent=False, **_compact())
        for name in ("fin", "rsv1", "rsv2", "rsv3"):
            getattr(self, name).add_class(f"rawws-send-{name}")
        self.flags_row = widgets.HBox([self.fin, self.rsv1, self.rsv2, self.rsv3])

        self.send_button = widgets.Button(description="Send", button_style="primary", icon="paper-plane")
        self.send_button.add_class("rawws-send-button")
        self.send_button.on_click(self._on_click)

        self.payload_row = widgets.VBox([self.encoding, self.payload])
        parts: list[widgets.Widget] = [
            widgets.HTML("<b>Send</b>"),
            self.kind,
            self.payload_row,
            self.close_row,
        ]
        if self.form is not None:
            parts.append(self.form)
        wrap = widgets.Layout(flex_flow="row wrap", align_items="center")
        self.flags_row.layout = widgets.Layout(flex_flow="row wrap", align_items="center")
        self.close_row.layout = widgets.Layout(flex_flow="row wrap", align_items="center")
        self.close_reason.layout = widgets.Layout(flex="1 1 14em", min_width="10em")
        parts += [widgets.HBox([self.flags_row, self.send_button], layout=wrap), self.status]
        self.children = parts
        self.kind.observe(self._on_kind, "value")
        self.encoding.observe(self._on_encoding, "value")
        self.close_code.observe(self._on_kind, "value")
        self._on_kind()
        if autorefresh:
            self.start()

    # -- state ------------------------------------------------------------------------

    def _change_key(self) -> Hashable:
        return self.session.state

    def _render(self) -> None:
        closed = self.session.state is SessionState.CLOSED
        self.send_button.disabled = closed
        if closed:
            self.send_button.tooltip = "the session is closed"

    # -- layout ---------------------------------------------------------------------

    def _on_kind(self, change: dict[str, Any] | None = None) -> None:
        kind = self.kind.value
        _show(self.payload_row, kind in ("text", "binary", "ping", "pong", "raw"))
        _show(self.close_row, kind == "close")
        _show(self.close_other, kind == "close" and self.close_code.value == _CLOSE_OTHER)
        _show(self.close_reason, self.close_code.value != _CLOSE_EMPTY)
        _show(self.flags_row, kind != "raw")
        if self.form is not None:
            _show(self.form, kind == "message")
        if kind == "raw":
            self.payload.placeholder = "whole frames as they go on the wire (header, mask, payload), e.g. hex 89 00"

    def _on_encoding(self, change: dict[str, Any]) -> None:
        self.payload.placeholder = _PLACEHOLDERS.get(self.encoding.value, "")

    # -- building -------------------------------------------------------------------

    def codec(self) -> Any:
        """The codec a message is encoded with now: a `ProtocolVersion` (or the
        duck-typed protocol as given)."""
        protocol = self.protocol
        if protocol is None:
            return None
        if not hasattr(protocol, "for_version"):
            return protocol
        version = self.version
        if version is None and self.session.protocol is protocol:
            version = self.session.protocol_version
        return protocol.for_version(version)

    def build(self) -> Frame | bytes:
        """The frame the form describes (bytes for "Raw bytes"). Raises ValueError
        (`PayloadError`, `FormError`) or the codec's `EncodeError`."""
        kind = self.kind.value
        flags = {"fin": self.fin.value, "rsv1": self.rsv1.value, "rsv2": self.rsv2.value, "rsv3": self.rsv3.value}
        if kind == "message":
            assert self.form is not None
            return Frame.Binary(self.form.encode(self.codec()), **flags)
        if kind == "close":
            code = self.close_code.value
            if code == _CLOSE_EMPTY:
                return Frame.Close(None, **flags)
            if code == _CLOSE_OTHER:
                code = int(self.close_other.value)
            if not 0 <= code <= 0xFFFF:
                raise ValueError(f"close code {code} does not fit in 2 bytes (0..65535)")
            return Frame.Close(CloseReason(code, self.close_reason.value), **flags)
        data = parse_payload(self.payload.value, self.encoding.value)
        if kind == "raw":
            return data
        return FRAME_CLASSES[FrameType[kind.upper()]](data, **flags)

    # -- sending --------------------------------------------------------------------

    def _on_click(self, button: widgets.Button) -> None:
        self.send()

    def send(self) -> Handle | None:
        """Build the frame and hand the send to the session's loop (from any thread).
        Returns the task/future, or None when the form is invalid (see the status)."""
        try:
            item = self.build()
        except (PayloadError, FormError) as exc:
            self.status.error(str(exc))
            return None
        except Exception as exc:
            self.status.error(f"not sent: {describe_error(exc)}")
            return None
        factory: Callable[[], Coroutine[Any, Any, None]]
        if isinstance(item, bytes):
            factory = partial(self.session.send_raw, item)
            what = f"{len(item)} raw bytes"
        else:
            factory = partial(self.session.send, item)
            what = repr(item)
        self.status.busy(f"sending {what} …")
        return self.run(factory, what="not sent", on_ok=lambda _: self._sent(item, what))

    def _sent(self, item: Frame | bytes, what: str) -> None:
        self.sent += 1
        self.last_sent = item
        self.status.ok(f"sent {what}")


def _show(w: widgets.Widget, visible: bool) -> None:
    w.layout.display = None if visible else "none"
