"""What every panel shares: a status line, the hand-off of work to the session's loop,
and one throttled refresh task on that loop."""

from __future__ import annotations

import asyncio
import html
import time
from collections.abc import Callable, Coroutine, Hashable
from typing import Any

import ipywidgets as widgets

from ..errors import InvalidSend, SessionClosed
from ..frames import CloseReason
from ..loops import Handle, cancel, submit
from ..session import RawSession, SessionState

__all__ = ["DEFAULT_REFRESH_INTERVAL", "Panel", "StatusLine", "describe_close", "describe_error"]

DEFAULT_REFRESH_INTERVAL = 0.25  # seconds: at most 4 renders per second

_COLOURS = {"ok": "#2a7a2a", "error": "#c0392b", "info": "#555", "busy": "#8a6d00"}


_CLOSE_WORDS = {
    1005: "no status code",
    1006: "connection dropped without a Close",
    1015: "TLS handshake failed",
}


def describe_close(reason: CloseReason | None) -> str:
    """A close reason for people: `1000 NORMAL “bye”`, `1006 connection dropped without a
    Close`, `4001 (application)`; "" for None."""
    if reason is None:
        return ""
    code = reason.code
    known = reason.known_reason
    if known is not None:
        name = known.name
    elif code in _CLOSE_WORDS:
        name = _CLOSE_WORDS[code]
    elif 3000 <= code <= 3999:
        name = "(registered)"
    elif 4000 <= code <= 4999:
        name = "(application)"
    else:
        name = "(unknown code)"
    text = f"{code} {name}"
    if reason.message:
        text += f" “{reason.message}”"
    return text


def describe_error(exc: BaseException) -> str:
    """One clear line for the status line."""
    if isinstance(exc, SessionClosed):
        return f"the session is closed ({describe_close(exc.reason)})"
    if isinstance(exc, InvalidSend):
        return f"InvalidSend: {exc}"
    if isinstance(exc, TimeoutError) and not str(exc):
        return "timed out"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class StatusLine(widgets.HTML):  # type: ignore[misc]  # ipywidgets has no type information
    """A one-line status: `ok(...)`, `error(...)`, `info(...)`. `kind` and `text` hold the
    last message (for tests and for code that inspects a panel)."""

    def __init__(self, css: str = "", **kwargs: Any) -> None:
        super().__init__(value="", **kwargs)
        self.add_class("rawws-panel-status")
        if css:
            self.add_class(css)
        self.kind = "info"
        self.text = ""

    def show(self, kind: str, text: str) -> None:
        self.kind = kind
        self.text = text
        mark = {"ok": "✓ ", "error": "✗ "}.get(kind, "")
        self.value = (
            f"<span class='rawws-status-{kind}' style='color:{_COLOURS.get(kind, '#555')};font-size:90%'>"
            f"{html.escape(mark + text)}</span>"
        )

    def ok(self, text: str) -> None:
        self.show("ok", text)

    def error(self, text: str) -> None:
        self.show("error", text)

    def info(self, text: str) -> None:
        self.show("info", text)

    def busy(self, text: str) -> None:
        self.show("busy", text)


class Panel(widgets.VBox):  # type: ignore[misc]  # ipywidgets has no type information
    """Base of the panels: a VBox bound to a session.

    `run(factory, what=...)` runs `factory()` (a coroutine) on the session's loop from any
    thread; an exception lands in the status line, never in the kernel. The refresh task
    (`start`/`stop`) runs on the session's loop: every `refresh_interval` seconds it asks
    `_change_key()` whether anything changed and, only then, calls `_render()`. It ends
    after a last render once the session is closed. `renders` counts renders. A panel
    that refreshes itself calls `start()` once its widgets exist.
    """

    status: StatusLine

    def __init__(
        self,
        session: RawSession,
        *,
        refresh_interval: float = DEFAULT_REFRESH_INTERVAL,
        status_class: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.session = session
        self.refresh_interval = max(float(refresh_interval), 0.02)
        self.renders = 0
        self.last_render_ms = 0.0
        self.status = StatusLine(status_class)
        self._refresh_handle: Handle | None = None
        self._key: Hashable = object()
        self._dirty = True
        self._refresh_error: str | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self.session.loop

    # -- work on the session's loop -------------------------------------------------

    def run(
        self,
        factory: Callable[[], Coroutine[Any, Any, Any]],
        *,
        what: str,
        on_ok: Callable[[Any], None] | None = None,
    ) -> Handle | None:
        """Run `factory()` on the session's loop; errors go to the status line as
        "`what`: reason". `on_ok(result)` runs on the loop after success."""

        async def guarded() -> Any:
            try:
                result = await factory()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.status.error(f"{what}: {describe_error(exc)}")
                return None
            if on_ok is not None:
                try:
                    on_ok(result)
                except Exception as exc:  # a bug in a panel must not reach the kernel
                    self.status.error(f"{what}: {describe_error(exc)}")
            return result

        try:
            return submit(self.loop, guarded())
        except Exception as exc:
            self.status.error(f"{what}: {describe_error(exc)}")
            return None

    # -- the refresh task -----------------------------------------------------------

    def start(self) -> None:
        """Start the refresh task on the session's loop (idempotent, any thread)."""
        handle = self._refresh_handle
        if handle is not None and not handle.done():
            return
        try:
            self._refresh_handle = submit(self.loop, self._refresh_loop())
        except RuntimeError as exc:
            self.status.error(f"live updates: {describe_error(exc)}")

    def stop(self) -> None:
        """Stop the refresh task (any thread)."""
        cancel(self.loop, self._refresh_handle)
        self._refresh_handle = None

    @property
    def refreshing(self) -> bool:
        handle = self._refresh_handle
        return handle is not None and not handle.done()

    async def _refresh_loop(self) -> None:
        session = self.session
        while True:
            self.refresh()
            if session.state is SessionState.CLOSED:
                await asyncio.sleep(self.refresh_interval)
                self.refresh()  # the frames that came with the end
                return
            await asyncio.sleep(self.refresh_interval)

    def refresh(self, force: bool = False) -> bool:
        """Render now if anything changed (or `force`); returns whether it rendered.
        Meant for the session's loop (the refresh task calls it)."""
        try:
            key = self._change_key()
            if not force and not self._dirty and key == self._key:
                return False
            self._key = key
            self._dirty = False
            start = time.perf_counter()
            self._render()
            self.last_render_ms = (time.perf_counter() - start) * 1000
            self.renders += 1
            if self._refresh_error is not None:
                self._refresh_error = None
            return True
        except Exception as exc:  # rendering must never take the loop down
            text = f"display: {describe_error(exc)}"
            if text != self._refresh_error:
                self._refresh_error = text
                self.status.error(text)
            return False

    def mark_dirty(self) -> None:
        """Ask for a render at the next tick (filters changed, ...)."""
        self._dirty = True

    def _change_key(self) -> Hashable:
        return None

    def _render(self) -> None:
        pass

    def close(self) -> None:
        """Stop the refresh task and close the widgets (also runs from `__del__`)."""
        try:
            self.stop()
            for child in _descendants(self):
                child.close()
        except Exception:  # closing must not fail, even at interpreter exit
            pass
        super().close()


def _descendants(box: widgets.Box) -> list[widgets.Widget]:
    out: list[widgets.Widget] = []
    for child in box.children:
        if isinstance(child, widgets.Box) and not isinstance(child, Panel):
            out.extend(_descendants(child))
        out.append(child)
    return out
