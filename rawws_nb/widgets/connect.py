"""`ConnectPanel`: a form that opens a raw session and shows its Dashboard.

URL, extra headers (one `Name: value` per line), subprotocols (comma-separated),
compression (permessage-deflate offered or not), proxy (empty: from the environment, as
by default; `none`: direct; or a proxy URL), and the opt-in keep-alive answers. "connect"
opens the session on the event loop the panel was created on (a notebook's kernel loop),
from whatever thread the click arrives on; the Dashboard appears below, errors in the
status line. Nothing is offered or answered unless the form says so.
"""

from __future__ import annotations

import asyncio
from typing import Any

import ipywidgets as widgets

from ..connect import web_socket_raw_session
from ..handshake import RequestBuilder
from ..loops import Handle, background_loop, call_soon, running_loop, submit
from ..session import RawSession
from ._base import StatusLine, describe_error
from .dashboard import Dashboard

__all__ = ["ConnectPanel", "parse_headers"]


def parse_headers(text: str) -> dict[str, str]:
    """`Name: value` lines (blank lines ignored) -> a dict; ValueError names a bad line."""
    headers: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        name = name.strip()
        if not sep or not name or any(c in name for c in " \t"):
            raise ValueError(f"header line {number} is not 'Name: value': {line!r}")
        headers[name] = value.strip()
    return headers


class ConnectPanel(widgets.VBox):  # type: ignore[misc]  # ipywidgets has no type information
    """Open a session from a form; `session` and `dashboard` are set once connected."""

    def __init__(self, url: str = "", *, loop: asyncio.AbstractEventLoop | None = None, **options: Any) -> None:
        super().__init__()
        self.add_class("rawws-connect")
        self.loop = loop or running_loop() or background_loop()
        self.options = options  # passed to web_socket_raw_session as well
        self.session: RawSession | None = None
        self.dashboard: Dashboard | None = None
        self.url = widgets.Text(value=url, placeholder="ws://host:port/path", description="URL")
        self.headers = widgets.Textarea(placeholder="Name: value (one per line)", description="headers")
        self.subprotocols = widgets.Text(placeholder="chat, superchat", description="subprotocols")
        self.compression = widgets.Checkbox(value=False, description="offer permessage-deflate", indent=False)
        self.auto_pong = widgets.Checkbox(value=False, description="answer pings (auto_pong)", indent=False)
        self.proxy = widgets.Text(placeholder="environment; none; or http://… socks5://…", description="proxy")
        self.connect_button = widgets.Button(description="connect", button_style="primary")
        self.connect_button.add_class("rawws-connect-button")
        self.status = StatusLine("rawws-connect-status")
        self.output = widgets.VBox()
        self.connect_button.on_click(lambda _button: self.connect())
        self._handle: Handle | None = None
        self.children = [
            self.url,
            self.headers,
            self.subprotocols,
            widgets.HBox([self.compression, self.auto_pong]),
            self.proxy,
            widgets.HBox([self.connect_button, self.status]),
            self.output,
        ]

    def _options(self) -> dict[str, Any]:
        url = self.url.value.strip()
        if not url:
            raise ValueError("give a ws:// or wss:// URL")
        headers = parse_headers(self.headers.value)
        subprotocols = [p.strip() for p in self.subprotocols.value.split(",") if p.strip()]
        proxy_text = self.proxy.value.strip()
        proxy: str | bool | None = True if not proxy_text else None if proxy_text.lower() == "none" else proxy_text

        def request(builder: RequestBuilder) -> None:
            builder.headers.update(headers)
            builder.subprotocols.extend(subprotocols)

        return {
            "request": request,
            "compression": "deflate" if self.compression.value else None,
            "auto_pong": bool(self.auto_pong.value),
            "proxy": proxy,
            **self.options,
            "url": url,
        }

    def connect(self) -> Handle | None:
        """What the button does (any thread): open the session, then show its Dashboard."""
        try:
            options = self._options()
        except ValueError as exc:
            self.status.error(str(exc))
            return None
        url = options.pop("url")
        self.connect_button.disabled = True
        self.status.busy(f"connecting to {url} …")

        async def go() -> None:
            try:
                session = await web_socket_raw_session(url, **options)
            except Exception as exc:
                self.status.error(f"connect: {describe_error(exc)}")
                self.connect_button.disabled = False
                return
            self.session = session
            extra = f", {', '.join(session.extensions)}" if session.extensions else ""
            self.status.ok(f"connected to {session.url}{extra}")
            self.dashboard = Dashboard(session)
            self.output.children = [self.dashboard]

        try:
            self._handle = submit(self.loop, go())
        except RuntimeError as exc:
            self.status.error(f"connect: {exc}")
            self.connect_button.disabled = False
        return self._handle

    def close(self) -> None:
        """Close the panel (and its Dashboard); the session stays as it is."""
        if self.dashboard is not None:
            call_soon(self.loop, self.dashboard.close)
        super().close()
