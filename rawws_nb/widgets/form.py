"""A form for one codec message, built from the codec's field metadata.

Works with `rawws_nb.codec.Protocol` / `ProtocolVersion`, and with anything shaped like
them: an object with `message_types` (each with `name`, `code` and `fields`, where a
field has `name`, `kind`, `type` and optionally `default`, `choices`, `min`, `max`,
`doc`, `initial`, `required`) and `encode_fields(name, mapping) -> bytes` (or
`encode(name, **fields)`). Field kinds: int, float, bool, str, bytes (hex), enum, flags,
const and padding (shown, not editable), and struct/array/other (a Python literal).
"""

from __future__ import annotations

import ast
import base64
import binascii
import html
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets

from ..errors import RawWsError
from ..frames import parse_hex

__all__ = ["FormError", "MessageForm", "PayloadError", "parse_payload"]

_JS_SAFE = 2**53 - 1


class PayloadError(RawWsError, ValueError):
    """A payload that does not parse as the chosen encoding (hex, base64)."""


class FormError(RawWsError, ValueError):
    """A form field that does not hold a valid value."""


def parse_payload(text: str, encoding: str) -> bytes:
    """`text` as bytes: `encoding` is "text" (UTF-8), "hex" (spaces, colons and a
    leading 0x allowed) or "base64". Raises `PayloadError` with what is wrong."""
    if encoding == "text":
        return text.encode("utf-8", "surrogatepass")
    if encoding == "hex":
        try:
            return parse_hex(text)
        except ValueError as exc:
            raise PayloadError(f"invalid hex payload: {exc}") from None
    if encoding == "base64":
        try:
            return base64.b64decode("".join(text.split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise PayloadError(f"invalid base64 payload: {exc}") from None
    raise PayloadError(f"unknown payload encoding {encoding!r} (text, hex or base64)")


def _attr(obj: Any, name: str, default: Any = None) -> Any:
    return getattr(obj, name, default)


def _initial(field: Any) -> Any:
    initial = _attr(field, "initial")
    if initial is not None:
        return initial
    default = _attr(field, "default")
    if default is not None:
        return default
    kind = _attr(field, "kind", "other")
    choices = tuple(_attr(field, "choices", ()) or ())
    return {
        "int": 0,
        "float": 0.0,
        "bool": False,
        "str": "",
        "bytes": b"",
        "enum": choices[0] if choices else 0,
        "flags": {c: False for c in choices},
    }.get(kind)


class _Input:
    """One field's widget and how to read its value (`None` from `read` = leave out)."""

    def __init__(self, widget: widgets.Widget, read: Callable[[], Any], editable: bool = True) -> None:
        self.widget = widget
        self.read = read
        self.editable = editable


def _field_input(field: Any) -> _Input:
    name = str(_attr(field, "name", ""))
    kind = _attr(field, "kind", "other")
    tname = str(_attr(field, "type", kind))
    doc = str(_attr(field, "doc", "") or "")
    tip = f"{name}: {tname}" + (f" ({doc})" if doc else "")
    initial = _initial(field)
    desc = {"description": name, "tooltip": tip, "style": {"description_width": "initial"}}
    lo, hi = _attr(field, "min"), _attr(field, "max")

    if kind == "int":
        safe = (lo is None or lo >= -_JS_SAFE) and (hi is None or hi <= _JS_SAFE)
        if safe:
            w = widgets.IntText(value=int(initial or 0), **desc)
            return _Input(w, lambda: int(w.value))
        t = widgets.Text(value=str(initial or 0), placeholder=tname, **desc)

        def read_big() -> int:
            try:
                return int(t.value.strip(), 0)
            except ValueError:
                raise FormError(f"field {name!r}: {t.value!r} is not an integer") from None

        return _Input(t, read_big)
    if kind == "float":
        w = widgets.FloatText(value=float(initial or 0.0), **desc)
        return _Input(w, lambda: float(w.value))
    if kind == "bool":
        w = widgets.Checkbox(value=bool(initial), indent=False, **desc)
        return _Input(w, lambda: bool(w.value))
    if kind == "str":
        w = widgets.Text(value=str(initial or ""), placeholder=tname, **desc)
        return _Input(w, lambda: w.value)
    if kind == "bytes":
        start = initial.hex(" ") if isinstance(initial, bytes | bytearray) else ""
        w = widgets.Text(value=start, placeholder=f"hex ({tname})", **desc)

        def read_bytes() -> bytes:
            try:
                return parse_payload(w.value, "hex")
            except PayloadError as exc:
                raise FormError(f"field {name!r}: {exc}") from None

        return _Input(w, read_bytes)
    if kind == "enum":
        choices = [str(c) for c in (_attr(field, "choices", ()) or ())]
        w = widgets.Dropdown(options=choices, value=str(initial) if str(initial) in choices else None, **desc)

        def read_enum() -> Any:
            if w.value is None:
                raise FormError(f"field {name!r}: choose one of {', '.join(choices)}")
            return w.value

        return _Input(w, read_enum)
    if kind == "flags":
        choices = [str(c) for c in (_attr(field, "choices", ()) or ())]
        chosen = [c for c, on in (initial or {}).items() if on] if isinstance(initial, dict) else []
        w = widgets.SelectMultiple(options=choices, value=chosen, rows=min(len(choices), 4) or 1, **desc)
        return _Input(w, lambda: {c: c in w.value for c in choices})
    if kind in ("const", "padding"):
        shown = "" if kind == "padding" else f" = {initial!r}"
        w = widgets.HTML(f"<span title='{html.escape(tip)}'>{html.escape(name)}: {html.escape(tname)}{shown}</span>")
        return _Input(w, lambda: None, editable=False)
    # struct, array, other: a Python literal (dicts, lists, numbers, strings, bytes).
    w = widgets.Text(
        value=repr(initial) if initial is not None else "", placeholder=f"Python literal ({tname})", **desc
    )

    def read_literal() -> Any:
        try:
            return ast.literal_eval(w.value)
        except (ValueError, SyntaxError) as exc:
            raise FormError(f"field {name!r}: not a Python literal ({exc})") from None

    return _Input(w, read_literal)


class MessageForm(widgets.VBox):  # type: ignore[misc]  # ipywidgets has no type information
    """A message-type dropdown and one input per field of the chosen type.

    `codec` is a `ProtocolVersion` (or a `Protocol`: its newest version) or a duck-typed
    equivalent. `values()` returns the fields as a dict (raises `FormError`);
    `encode(codec=None)` the message bytes, with `codec` or the form's own codec.
    """

    def __init__(self, codec: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_class("rawws-send-form")
        self.codec = codec
        types = list(_attr(codec, "message_types", ()) or ())
        self.message_types = {str(_attr(mt, "name")): mt for mt in types}
        options = [(f"{name} ({int(_attr(mt, 'code', 0)):#04x})", name) for name, mt in self.message_types.items()]
        label = _codec_label(codec)
        self.message_type = widgets.Dropdown(
            options=options,
            description="message",
            tooltip=label,
            style={"description_width": "initial"},
        )
        self.message_type.add_class("rawws-send-msgtype")
        self.doc = widgets.HTML()
        self.fields = widgets.VBox()
        self.fields.add_class("rawws-send-fields")
        self.inputs: dict[str, _Input] = {}
        self.message_type.observe(self._on_type, "value")
        self.children = [widgets.HTML(f"<small>{html.escape(label)}</small>"), self.message_type, self.doc, self.fields]
        self._build()

    def _on_type(self, change: dict[str, Any]) -> None:
        self._build()

    def _build(self) -> None:
        old = list(self.fields.children)
        self.inputs = {}
        mt = self.message_types.get(self.message_type.value) if self.message_type.value is not None else None
        if mt is None:
            self.fields.children = []
            self.doc.value = "<i>no message types</i>"
        else:
            for field in _attr(mt, "fields", ()) or ():
                self.inputs[str(_attr(field, "name"))] = _field_input(field)
            self.fields.children = [i.widget for i in self.inputs.values()]
            doc = str(_attr(mt, "doc", "") or "")
            self.doc.value = f"<small>{html.escape(doc)}</small>" if doc else ""
            if not self.inputs:
                self.doc.value += "<small><i>(no fields)</i></small>"
        for w in old:
            w.close()

    @property
    def selected(self) -> str | None:
        """The chosen message type's name (None when the codec has none)."""
        name: str | None = self.message_type.value
        return name

    def set(self, name: str | None = None, /, **values: Any) -> None:
        """Choose message type `name` and fill fields (handy in code and tests)."""
        if name is not None:
            self.message_type.value = name
        for key, value in values.items():
            if key not in self.inputs:
                raise KeyError(f"{self.selected} has no field {key!r} (fields: {', '.join(self.inputs)})")
            w = self.inputs[key].widget
            if isinstance(w, widgets.Text) and not isinstance(value, str):
                value = value.hex(" ") if isinstance(value, bytes | bytearray) else repr(value)
            w.value = value

    def values(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, inp in self.inputs.items():
            if not inp.editable:
                continue
            out[name] = inp.read()
        return out

    def encode(self, codec: Any = None) -> bytes:
        codec = codec if codec is not None else self.codec
        name = self.selected
        if name is None:
            raise FormError("choose a message type")
        fields = self.values()
        if hasattr(codec, "encode_fields"):
            return bytes(codec.encode_fields(name, fields))
        return bytes(codec.encode(name, **fields))


def _codec_label(codec: Any) -> str:
    name = _attr(codec, "name", None) or type(codec).__name__
    version = _attr(codec, "version", None)
    if isinstance(version, tuple) and len(version) == 2:
        return f"{name} v{version[0]}.{version[1]}"
    return str(name)
