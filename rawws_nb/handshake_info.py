"""The opening handshake made visible: `session.handshake` (and `exc.handshake` on a
`HandshakeError` or `ProxyError`) is a `HandshakeInfo`, like the Headers and Timing tabs of
a browser's developer tools.

It holds what went over the wire, as it went: the request line and headers as sent, the
status line and headers as received (original case and order), the proxy's CONNECT
exchange when there was one, the TLS version and cipher, and how long each step took.
Plain values only (no I/O): the connect functions fill it in as they go.

Steps, in order (`HandshakeInfo.step` is the one in progress, or "open" at the end):

- `dns`: resolving the host that the TCP connection goes to (the proxy's when proxied);
- `connect`: the TCP connection to it;
- `proxy`: the proxy's part. HTTP(S) proxies: TLS to an https:// proxy, then CONNECT
  and its answer. SOCKS proxies: the TCP connection to the proxy and the SOCKS exchange
  (python-socks does both, so `connect` stays None; with socks4/socks5 it also resolves
  the server's name locally);
- `tls`: the TLS handshake with the server (inside the tunnel when proxied);
- `upgrade`: from sending the upgrade request to the end of the response's head.
"""

from __future__ import annotations

import datetime as _dt
import html
from dataclasses import dataclass, field
from typing import Any

__all__ = ["STEPS", "HandshakeInfo", "HandshakeTimings", "parse_head", "redact_headers"]

STEPS = ("dns", "connect", "proxy", "tls", "upgrade")

Headers = list[tuple[str, str]]


@dataclass
class HandshakeTimings:
    """Seconds per step; None for a step that did not happen (no TLS for ws://, no proxy)
    or did not finish."""

    dns: float | None = None
    connect: float | None = None
    proxy: float | None = None
    tls: float | None = None
    upgrade: float | None = None

    @property
    def total(self) -> float:
        return sum(v for v in (self.dns, self.connect, self.proxy, self.tls, self.upgrade) if v is not None)

    def as_dict(self) -> dict[str, float | None]:
        return {
            "dns": self.dns,
            "connect": self.connect,
            "proxy": self.proxy,
            "tls": self.tls,
            "upgrade": self.upgrade,
            "total": self.total,
        }


@dataclass
class HandshakeInfo:
    """What the opening handshake sent, received and took (see the module docstring)."""

    url: str
    started: _dt.datetime = field(default_factory=lambda: _dt.datetime.now(_dt.UTC))
    step: str = "dns"
    proxy: str | None = None
    remote_address: str | None = None
    proxy_request_line: str | None = None
    proxy_request_headers: Headers = field(default_factory=list)
    proxy_status_line: str | None = None
    proxy_response_headers: Headers = field(default_factory=list)
    tls_version: str | None = None
    tls_cipher: str | None = None
    request_line: str | None = None
    request_headers: Headers = field(default_factory=list)
    status_line: str | None = None
    response_headers: Headers = field(default_factory=list)
    timings: HandshakeTimings = field(default_factory=HandshakeTimings)

    @property
    def status(self) -> int | None:
        """The server's HTTP status (101 when the upgrade was accepted), None before it answered."""
        if self.status_line is None:
            return None
        parts = self.status_line.split(None, 2)
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None

    def request_header(self, name: str) -> str | None:
        return _find(self.request_headers, name)

    def response_header(self, name: str) -> str | None:
        return _find(self.response_headers, name)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (for timeline metadata): headers as [name, value] lists, times in seconds."""
        return {
            "url": self.url,
            "started": self.started.isoformat(),
            "step": self.step,
            "proxy": self.proxy,
            "remote_address": self.remote_address,
            "proxy_request_line": self.proxy_request_line,
            "proxy_request_headers": [list(h) for h in self.proxy_request_headers],
            "proxy_status_line": self.proxy_status_line,
            "proxy_response_headers": [list(h) for h in self.proxy_response_headers],
            "tls_version": self.tls_version,
            "tls_cipher": self.tls_cipher,
            "request_line": self.request_line,
            "request_headers": [list(h) for h in self.request_headers],
            "status_line": self.status_line,
            "response_headers": [list(h) for h in self.response_headers],
            "timings": self.timings.as_dict(),
        }

    def __str__(self) -> str:
        """The exchange as text, `curl -v` style: `>` sent, `<` received, `*` notes."""
        out = [f"* {self.url}" + ("" if self.step == "open" else f" (stopped in the {self.step} step)")]
        if self.proxy:
            out.append(f"* proxy {self.proxy}")
        if self.remote_address:
            out.append(f"* connected to {self.remote_address}")
        if self.proxy_request_line:
            out += _lines(">", self.proxy_request_line, self.proxy_request_headers)
        if self.proxy_status_line:
            out += _lines("<", self.proxy_status_line, self.proxy_response_headers)
        if self.tls_version:
            out.append(f"* TLS {self.tls_version} {self.tls_cipher or ''}".rstrip())
        if self.request_line:
            out += _lines(">", self.request_line, self.request_headers)
        if self.status_line:
            out += _lines("<", self.status_line, self.response_headers)
        out.append("* " + _timing_text(self.timings))
        return "\n".join(out)

    def _repr_html_(self) -> str:
        def table(title: str, first: str | None, headers: Headers) -> str:
            if first is None:
                return ""
            rows = "".join(
                f"<tr><td style='text-align:left'><b>{html.escape(k)}</b></td>"
                f"<td style='text-align:left'>{html.escape(v)}</td></tr>"
                for k, v in headers
            )
            return (
                f"<div><i>{html.escape(title)}</i>: <code>{html.escape(first)}</code></div>"
                f"<table style='font-family:monospace;font-size:90%'>{rows}</table>"
            )

        t = self.timings
        cells = "".join(
            f"<td style='text-align:right'>{'-' if v is None else f'{v * 1000:.1f} ms'}</td>"
            for v in (t.dns, t.connect, t.proxy, t.tls, t.upgrade, t.total)
        )
        heads = "".join(f"<th>{s}</th>" for s in (*STEPS, "total"))
        notes = [f"<b>{html.escape(self.url)}</b>"]
        if self.step != "open":
            notes.append(f"stopped in the <b>{html.escape(self.step)}</b> step")
        if self.proxy:
            notes.append(f"proxy {html.escape(self.proxy)}")
        if self.remote_address:
            notes.append(f"TCP peer {html.escape(self.remote_address)}")
        if self.tls_version:
            notes.append(f"{html.escape(self.tls_version)} {html.escape(self.tls_cipher or '')}")
        return (
            "<div class='rawws-handshake'>"
            f"<div>{' &middot; '.join(notes)}</div>"
            f"<table><tr>{heads}</tr><tr>{cells}</tr></table>"
            + table("proxy request", self.proxy_request_line, self.proxy_request_headers)
            + table("proxy response", self.proxy_status_line, self.proxy_response_headers)
            + table("request", self.request_line, self.request_headers)
            + table("response", self.status_line, self.response_headers)
            + "</div>"
        )


def parse_head(raw: bytes) -> tuple[str, Headers] | None:
    """The first line and the header lines of an HTTP message head, exactly as they are
    (no case folding), or None when the head is not complete yet. Informational
    responses other than 101 before the final one are skipped. It does not validate:
    h11 already did, this keeps the original spelling for display."""
    while True:
        end = raw.find(b"\r\n\r\n")
        if end < 0:
            return None
        lines = raw[:end].decode("latin-1").split("\r\n")
        first = lines[0]
        parts = first.split(None, 2)
        if first.startswith("HTTP/") and len(parts) > 1 and parts[1].startswith("1") and parts[1] != "101":
            raw = raw[end + 4 :]
            continue
        headers = [(k, v.strip(" \t")) for k, _, v in (line.partition(":") for line in lines[1:])]
        return first, headers


def redact_headers(headers: Headers) -> Headers:
    """The proxy credentials hidden: `Proxy-Authorization` keeps its scheme, then `***`
    (the record may be saved with a timeline; the proxy URL is shown without its password too)."""
    return [(k, v.split(" ", 1)[0] + " ***" if k.lower() == "proxy-authorization" else v) for k, v in headers]


def _find(headers: Headers, name: str) -> str | None:
    name = name.lower()
    return next((v for k, v in headers if k.lower() == name), None)


def _lines(mark: str, first: str, headers: Headers) -> list[str]:
    return [f"{mark} {first}", *(f"{mark} {k}: {v}" for k, v in headers)]


def _timing_text(t: HandshakeTimings) -> str:
    bits = [
        f"{name} {value * 1000:.1f} ms"
        for name, value in zip(STEPS, (t.dns, t.connect, t.proxy, t.tls, t.upgrade), strict=True)
        if value is not None
    ]
    return "timings: " + (", ".join(bits) if bits else "none") + f" (total {t.total * 1000:.1f} ms)"
