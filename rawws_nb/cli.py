"""`rawws-nb`: the embedded server, a terminal frame debugger, an interactive client, the demo.

rawws-nb --version
rawws-nb serve [--host 127.0.0.1] [--port 8765]
rawws-nb probe URL [--send TEXT] [--hex HEX] [--ping [DATA]] [-H 'Name: value'] [--subprotocol P]
               [--close CODE[:REASON]] [--answer-pings] [--wait S] [--count N] [--hexdump] [--json]
rawws-nb connect URL [-H ...] [--subprotocol P] [--answer-pings] [--hexdump] [--json]
rawws-nb relay UPSTREAM [--host 127.0.0.1] [--port N] [--save FILE.parquet] [--flows N] [--hexdump] [--json]
rawws-nb relay --proxy [--port N] [--ca-out FILE.pem] [--save FILE.parquet] [--flows N] [--hexdump] [--json]
rawws-nb demo

Every frame, both directions, is printed from the session's timeline as it is recorded:
the wire opcode (a continuation frame prints as CONTINUATION), fin and rsv bits, the
length, a preview (the close code and reason of a Close), µs times since the opening
handshake. `--json` prints one JSON object per frame with the timeline's column names
(payload as hex) and nothing else on stdout. Bad input gives one line on stderr and
exit status 2; a session that ends without a clean closing handshake exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import ssl
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, NoReturn

from .errors import HandshakeError, RawWsError, SessionClosed
from .frames import Binary, Close, CloseReason, Frame, Ping, Pong, Text, hexdump, is_valid_close_code
from .frames import parse_hex as hex_bytes
from .version import __version__

__all__ = ["FramePrinter", "main", "parse_close", "parse_header", "parse_hex", "parse_ws_url"]

EXIT_OK, EXIT_UNCLEAN, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
_PAYLOAD_CAP = 1 << 20  # the CLI keeps whole payloads (up to 1 MiB) for printing
_PREVIEW = 120

_COLOURS = {"tx": "\033[34m", "rx": "\033[32m", "close": "\033[33m", "error": "\033[31m", "dim": "\033[2m"}
_RESET = "\033[0m"


class UsageError(Exception):
    """Bad input: printed as one line, exit status 2."""


# -- parsing user input (each raises UsageError with one clear line) ----------------------


def parse_ws_url(text: str) -> str:
    """`text` if it is a ws:// or wss:// URL with a host; UsageError otherwise (an
    http:// URL is refused, not silently taken as ws://)."""
    from urllib.parse import urlsplit

    scheme, sep, rest = text.partition("://")
    if not sep:
        raise UsageError(f"not a WebSocket URL: {text!r} has no scheme; did you mean ws://{text} ?")
    scheme = scheme.lower()
    if scheme in ("http", "https"):
        ws = "ws" if scheme == "http" else "wss"
        raise UsageError(f"{scheme}:// is not a WebSocket URL: use {ws}://{rest}")
    if scheme not in ("ws", "wss"):
        raise UsageError(f"not a WebSocket URL (ws:// or wss://): {text!r}")
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018  # raises ValueError for a bad port
    except ValueError as exc:
        raise UsageError(f"bad URL {text!r}: {exc}") from None
    if not parts.hostname:
        raise UsageError(f"no host in {text!r}")
    return text


def parse_hex(text: str) -> bytes:
    """Hex digits (spaces, colons and a leading 0x allowed) as bytes."""
    try:
        return hex_bytes(text)
    except ValueError as exc:
        raise UsageError(f"not hex: {text!r} ({exc})") from None


def parse_close(text: str) -> CloseReason:
    """CODE or CODE:REASON (a code that may be sent: 1000-1014 as registered, 3000-4999)."""
    code_text, _, reason = text.partition(":")
    try:
        code = int(code_text)
    except ValueError:
        raise UsageError(f"not a close code: {code_text!r} (CODE or CODE:REASON, e.g. 1000:bye)") from None
    if not is_valid_close_code(code):
        raise UsageError(f"close code {code} may not be sent (use 1000-1003, 1007-1014 or 3000-4999)")
    if len(reason.encode("utf-8")) > 123:
        raise UsageError(f"close reason too long: {len(reason.encode('utf-8'))} bytes (at most 123)")
    return CloseReason(code, reason)


def parse_header(text: str) -> tuple[str, str]:
    """'Name: value' as (name, value)."""
    name, sep, value = text.partition(":")
    name = name.strip()
    token = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    if not sep or not name or any(ch not in token for ch in name):
        raise UsageError(f"not a header: {text!r} (expected 'Name: value')")
    value = value.strip()
    if any(ch in value for ch in "\r\n\0"):
        raise UsageError(f"header {name!r}: the value has a line break or NUL")
    return name, value


def _arg(fn: Any) -> Any:
    """Wrap a parse_* function as an argparse type (one error line)."""

    def convert(text: str) -> Any:
        try:
            return fn(text)
        except UsageError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = fn.__name__
    return convert


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port (0-65535): {text!r}")
    return port


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"not a number of seconds (>= 0): {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a positive count: {text!r}")
    return value


# -- printing frames ------------------------------------------------------------------------


class FramePrinter:
    """Prints the rows a session's recorder holds that were not printed yet, in order.

    Text lines: `+0.001234 → TX TEXT  fin --- 5 B  'Hello'` (µs since the opening
    handshake; the wire opcode; rsv bits as 1/2/3; the close code and reason of a Close;
    `--hexdump` adds hex + ASCII lines). JSON: one object per frame, the timeline's
    column names (`t` as ISO 8601, `payload` as hex). Notes (connected, round trips,
    closed) go to stdout in text mode and to stderr in JSON mode."""

    def __init__(self, session: Any, *, json_mode: bool = False, hexdump: bool = False, colour: bool = False) -> None:
        self.session = session
        self.json_mode = json_mode
        self.hexdump = hexdump
        self.colour = colour
        self.printed = session.recorder.first if session.recorder is not None else 0
        self.out = sys.stdout

    def _c(self, kind: str, text: str) -> str:
        return f"{_COLOURS[kind]}{text}{_RESET}" if self.colour else text

    def note(self, text: str) -> None:
        stream = sys.stderr if self.json_mode else self.out
        print(self._c("dim", text) if stream is self.out else text, file=stream, flush=True)

    def flush(self) -> int:
        """Print the new rows; returns how many."""
        rec = self.session.recorder
        if rec is None or rec.total <= self.printed:
            return 0
        df = rec.to_dataframe(since=self.printed)
        self.printed = rec.total
        lines = [self._json(row) if self.json_mode else self._text(row) for row in df.to_dict("records")]
        if lines:
            print("\n".join(lines), file=self.out, flush=True)
        return len(lines)

    def _json(self, row: dict[str, Any]) -> str:
        out: dict[str, Any] = {}
        for key, value in row.items():
            out[key] = _jsonable(value)
        return json.dumps(out, ensure_ascii=False)

    def _text(self, row: dict[str, Any]) -> str:
        d = str(row["dir"])
        op = str(row["opcode"])
        rsv = "".join(str(i) if row[f"rsv{i}"] else "-" for i in (1, 2, 3))
        fin = "fin" if row["fin"] else "...".ljust(3)
        arrow = "→ TX" if d == "tx" else "← RX"
        stamp = "+" + format(float(row["t_rel"]), ".6f")
        head = f"{stamp:>12} {arrow} {op.upper():<12} {fin} {rsv} {int(row['length']):>6} B"
        payload: bytes = row["payload"] if isinstance(row["payload"], bytes) else b""
        if op == "close":
            code = row["close_code"]
            if _missing(code):
                preview = "(no status code)"
            else:
                reason = row["close_reason"]
                name = _close_name(int(code))
                preview = f"{int(code)}" + (f" {name}" if name else "")
                if not _missing(reason) and reason:
                    preview += f" {reason!r}"
        elif not _missing(row["text"]):
            text = str(row["text"])
            preview = repr(text if len(text) <= _PREVIEW else text[:_PREVIEW] + "…")
        elif payload and op in ("ping", "pong") and all(32 <= b < 127 for b in payload):
            preview = repr(payload.decode("ascii"))
        elif payload:
            preview = payload[:32].hex(" ") + (" …" if len(payload) > 32 else "")
        else:
            preview = ""
        extra = ""
        if not _missing(row.get("msg_type")):
            extra += f"  [{row['msg_type']}]"
        if not _missing(row.get("error")):
            extra += "  " + self._c("error", f"error: {row['error']}")
        kind = "close" if op == "close" else d
        line = self._c(kind, head) + "  " + preview + extra
        if self.hexdump and payload:
            line += "\n" + hexdump(payload, limit=None, indent=13, bars=True)
        return line


def _missing(value: Any) -> bool:
    """None, NaN or pandas NA."""
    if value is None:
        return True
    import pandas as pd

    return bool(pd.api.types.is_scalar(value) and pd.isna(value))


def _jsonable(value: Any) -> Any:
    if _missing(value):
        return None
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool):
        return value
    return repr(value)


def _show(data: bytes) -> str:
    """A payload for a note: its text if printable ASCII, else hex."""
    if all(32 <= b < 127 for b in data):
        return repr(data.decode("ascii"))
    return data.hex(" ")


def _close_name(code: int) -> str:
    try:
        return CloseReason.Codes(code).name
    except ValueError:
        return {1005: "NO_STATUS", 1006: "ABNORMAL"}.get(code, "")


def _colour_wanted(choice: str) -> bool:
    if choice == "always":
        return True
    if choice == "never" or os.environ.get("NO_COLOR"):
        return False
    return sys.stdout.isatty()


# -- connecting ------------------------------------------------------------------------------


async def _open(args: argparse.Namespace) -> Any:
    from .connect import web_socket_raw_session

    url = parse_ws_url(args.url)
    headers: dict[str, str] = {}
    for name, value in args.header or ():
        key = next((k for k in headers if k.lower() == name.lower()), name)
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    options: dict[str, Any] = {
        "open_timeout": args.timeout,
        "max_message_size": args.max_message_size,
        "payload_cap": _PAYLOAD_CAP,
        "close_timeout": args.close_timeout,
    }
    if headers:
        options["headers"] = headers
    if args.subprotocol:
        options["subprotocols"] = list(args.subprotocol)
    if args.insecure and url.lower().startswith("wss:"):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        options["tls"] = ctx
    return await web_socket_raw_session(url, **options)


def _connected_note(session: Any) -> str:
    bits = [f"connected to {session.url}"]
    if session.subprotocol:
        bits.append(f"subprotocol {session.subprotocol}")
    return " · ".join(bits)


def _describe_reason(reason: CloseReason | None) -> str:
    if reason is None:
        return "no close reason"
    name = _close_name(reason.code)
    return f"{reason.code}{' ' + name if name else ''}" + (f" {reason.message!r}" if reason.message else "")


class _Reader:
    """Consumes `incoming`: prints, answers pings when asked, notices the peer's Close."""

    def __init__(self, session: Any, printer: FramePrinter, answer_pings: bool) -> None:
        self.session = session
        self.printer = printer
        self.answer_pings = answer_pings
        self.received = 0
        self.peer_close: Close | None = None
        self.ended: SessionClosed | None = None
        self.activity = asyncio.Event()
        self.closed_by_peer = asyncio.Event()

    async def run(self) -> None:
        session = self.session
        try:
            while True:
                frame = await session.incoming.receive()
                self.received += 1
                self.printer.flush()
                self.activity.set()
                if isinstance(frame, Ping) and self.answer_pings:
                    await session.send(Pong(frame.data))
                    self.printer.flush()
                elif isinstance(frame, Close):
                    self.peer_close = frame
                    self.closed_by_peer.set()
                    return
        except SessionClosed as exc:
            self.ended = exc
            self.closed_by_peer.set()
        except RawWsError as exc:  # e.g. a Pong after the peer's Close
            self.printer.note(f"reader: {exc}")


async def _finish(session: Any, printer: FramePrinter, reader: _Reader, reason: CloseReason | None) -> int:
    """Close (without `reason`: 1000, or the peer's own code when it closed first), wait
    for the end, print the rest; returns the exit status."""
    try:
        await session.close(reason)
    except RawWsError as exc:
        printer.note(f"close: {exc}")
    printer.flush()
    ended = reader.ended
    final = session.close_reason
    unclean = (ended is not None and not ended.clean) or (final is not None and final.code == 1006)
    if unclean:
        detail = ended.detail if ended is not None and ended.detail else "no clean closing handshake"
        printer.note(f"session ended: {_describe_reason(final)} ({detail})")
        return EXIT_UNCLEAN
    printer.note(f"closing handshake done: {_describe_reason(final)}")
    return EXIT_OK


async def _probe(args: argparse.Namespace) -> int:
    session = await _open(args)
    printer = FramePrinter(session, json_mode=args.json, hexdump=args.hexdump, colour=_colour_wanted(args.color))
    printer.note(_connected_note(session))
    reader = _Reader(session, printer, args.answer_pings)
    task = asyncio.ensure_future(reader.run())
    try:
        for kind, value in args.frames or ():
            if reader.closed_by_peer.is_set():
                break
            if kind == "ping":
                try:
                    rtt = await session.ping(value, timeout=args.timeout)
                except TimeoutError:
                    printer.flush()
                    printer.note(f"no pong for ping {_show(value)} within {args.timeout:g} s")
                    continue
                except SessionClosed:
                    break
                printer.flush()
                printer.note(f"ping {_show(value)}: round trip {rtt * 1000:.3f} ms")
                continue
            frame: Frame = Text(value) if kind == "text" else Binary(value)
            try:
                await session.send(frame)
            except SessionClosed:
                break
            printer.flush()
        if args.count is not None or args.wait is not None:
            await _wait_idle(reader, args.count, args.wait)
        printer.flush()
        return await _finish(session, printer, reader, args.close)
    finally:
        await asyncio.wait((task,), timeout=1)
        task.cancel()


async def _wait_idle(reader: _Reader, count: int | None, wait: float | None) -> None:
    """Until the peer closes, `count` frames were received, or no frame came for `wait` s."""
    while not reader.closed_by_peer.is_set():
        if count is not None and reader.received >= count:
            return
        reader.activity.clear()
        waiters = [asyncio.ensure_future(reader.activity.wait()), asyncio.ensure_future(reader.closed_by_peer.wait())]
        done, pending = await asyncio.wait(waiters, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
        for w in pending:
            w.cancel()
        if not done:  # idle for `wait` seconds
            return


# -- connect: interactive ---------------------------------------------------------------------

_HELP = (
    "each line is sent as a Text frame; commands: /ping [data] · /pong [data] · /hex HEX (a Binary frame) · "
    "/close [CODE [REASON]] · /help · //text sends a line that starts with '/'"
)


def _stdin_lines(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None]) -> None:
    """Read stdin in a daemon thread (it never holds up the exit) into `queue`; None at EOF."""

    def read() -> None:
        try:
            for line in sys.stdin:
                loop.call_soon_threadsafe(queue.put_nowait, line.rstrip("\r\n"))
        except (OSError, ValueError):
            pass
        try:
            loop.call_soon_threadsafe(queue.put_nowait, None)
        except RuntimeError:  # the loop is gone
            pass

    threading.Thread(target=read, name="rawws-nb-stdin", daemon=True).start()


async def _connect(args: argparse.Namespace) -> int:
    session = await _open(args)
    printer = FramePrinter(session, json_mode=args.json, hexdump=args.hexdump, colour=_colour_wanted(args.color))
    printer.note(_connected_note(session) + " · " + _HELP)
    reader = _Reader(session, printer, args.answer_pings)
    task = asyncio.ensure_future(reader.run())
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    _stdin_lines(loop, queue)
    reason: CloseReason | None = None
    pings: set[asyncio.Task[None]] = set()
    try:
        while True:
            getter = asyncio.ensure_future(queue.get())
            peer = asyncio.ensure_future(reader.closed_by_peer.wait())
            done, _ = await asyncio.wait((getter, peer), return_when=asyncio.FIRST_COMPLETED)
            if getter not in done:
                getter.cancel()
                break
            peer.cancel()
            line = getter.result()
            if line is None:  # EOF: close normally
                break
            try:
                action = _command(line)
            except UsageError as exc:
                print(f"rawws-nb: {exc}", file=sys.stderr, flush=True)
                continue
            kind, value = action
            try:
                if kind == "help":
                    printer.note(_HELP)
                elif kind == "close":
                    reason = value
                    break
                elif kind == "ping":
                    t = asyncio.ensure_future(_timed_ping(session, printer, value, args.timeout))
                    pings.add(t)
                    t.add_done_callback(pings.discard)
                else:
                    frame = {"text": Text, "binary": Binary, "pong": Pong}[kind](value)
                    await session.send(frame)
                    printer.flush()
            except SessionClosed:
                break
            except RawWsError as exc:
                print(f"rawws-nb: not sent: {exc}", file=sys.stderr, flush=True)
        return await _finish(session, printer, reader, reason)
    finally:
        for t in pings:
            t.cancel()
        await asyncio.wait((task,), timeout=1)
        task.cancel()


async def _timed_ping(session: Any, printer: FramePrinter, data: bytes, timeout: float) -> None:
    try:
        rtt = await session.ping(data, timeout=timeout)
    except TimeoutError:
        printer.note(f"no pong for ping {_show(data)} within {timeout:g} s")
        return
    except RawWsError:
        return
    printer.flush()
    printer.note(f"ping {_show(data)}: round trip {rtt * 1000:.3f} ms")


def _command(line: str) -> tuple[str, Any]:
    """A stdin line as (kind, value); UsageError for a bad command."""
    if line.startswith("//"):
        return "text", line[1:]
    if not line.startswith("/"):
        return "text", line
    name, _, rest = line[1:].partition(" ")
    rest = rest.strip()
    if name == "ping":
        return "ping", rest.encode("utf-8")
    if name == "pong":
        return "pong", rest.encode("utf-8")
    if name == "hex":
        if not rest:
            raise UsageError("/hex needs hex digits, e.g. /hex 01 02 ff")
        return "binary", parse_hex(rest)
    if name == "close":
        if not rest:
            return "close", CloseReason(CloseReason.Codes.NORMAL, "")
        code, _, reason = rest.partition(" ")
        return "close", parse_close(f"{code}:{reason}")
    if name == "help":
        return "help", None
    raise UsageError(f"unknown command /{name} (/ping, /pong, /hex, /close, /help; //text sends '/text')")


# -- serve --------------------------------------------------------------------------------------


async def _serve(host: str, port: int) -> None:
    from .server import serve

    server = await serve(host=host, port=port)
    print(
        f"rawws-nb embedded server on {server.url} (paths: /echo /sink /ping /fragments /close /flood /bad/<kind> "
        "/proto/<name>); Ctrl-C stops it",
        flush=True,
    )
    try:
        await server.serve_forever()
    finally:
        await server.close()


# -- relay --------------------------------------------------------------------------------------


class _LegPrinter(FramePrinter):
    """The rows of one leg of a relay flow, labelled `[flow 1 client]`, with times since
    the relay started (JSON: with `flow` and `leg`)."""

    def __init__(self, session: Any, flow: int, leg: str, t0: int, **options: Any) -> None:
        super().__init__(session, **options)
        self.flow = flow
        self.leg = leg
        self.t0 = t0

    def take(self) -> list[tuple[int, str]]:
        """The new rows as (t in ns, printed line), and mark them printed."""
        rec = self.session.recorder
        if rec is None or rec.total <= self.printed:
            return []
        df = rec.to_dataframe(since=self.printed)
        self.printed = rec.total
        out = []
        for row in df.to_dict("records"):
            t = int(row["t"].value)
            row["t_rel"] = (t - self.t0) / 1e9
            if self.json_mode:
                out.append((t, self._json({"flow": self.flow, "leg": self.leg, **row})))
            else:
                out.append((t, f"[flow {self.flow} {self.leg:<8}] " + self._text(row)))
        return out


async def _relay(args: argparse.Namespace) -> int:
    from .relay import Relay

    if args.proxy and args.upstream is not None:
        raise UsageError(f"give UPSTREAM or --proxy, not both ({args.upstream} and --proxy)")
    if not args.proxy and args.upstream is None:
        raise UsageError("the following arguments are required: upstream (or --proxy for an HTTP proxy)")
    if args.ca_out is not None and not args.proxy:
        raise UsageError("--ca-out goes with --proxy (the CA that signs the intercepted wss certificates)")
    for option, value in (("--save", args.save), ("--ca-out", args.ca_out)):
        if value is not None:
            parent = Path(value).resolve().parent
            if not parent.is_dir():
                raise UsageError(f"{option}: no such directory: {parent}")
    relay = Relay(None if args.proxy else args.upstream, host=args.host, port=args.port, payload_cap=_PAYLOAD_CAP)
    try:
        await relay.start()
    except OSError as exc:
        raise UsageError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    ca_note = ""
    if args.ca_out is not None:
        try:
            ca_path = relay.write_ca(args.ca_out)
        except OSError as exc:
            await relay.close()
            raise UsageError(f"--ca-out: cannot write {args.ca_out}: {exc.strerror or exc}") from None
        ca_note = f"; wss is intercepted: clients must trust the CA in {ca_path}"
    colour = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
    options = {"json_mode": args.json, "hexdump": args.hexdump, "colour": colour}

    def note(text: str) -> None:
        print(text, file=sys.stderr if args.json else sys.stdout, flush=True)

    if relay.proxy_mode:
        note(
            f"rawws-nb relay on {relay.url} as an HTTP proxy (point clients' proxy setting at it{ca_note}); "
            "Ctrl-C stops it"
        )
    else:
        note(
            f"rawws-nb relay on {relay.url} -> {relay.upstream} (clients connect to {relay.url}/PATH); Ctrl-C stops it"
        )
    printers: list[_LegPrinter] = []
    seen_flows = 0
    seen_refusals = 0
    seen_tunnels = 0
    ended: set[int] = set()
    ended_tunnels: set[int] = set()

    def flush() -> None:
        nonlocal seen_flows, seen_refusals, seen_tunnels
        for flow in relay.flows[seen_flows:]:
            note(
                f"flow {flow.id}: {flow.path} -> {flow.upstream_url}"
                + (f" ({flow.subprotocol})" if flow.subprotocol else "")
            )
            printers.append(_LegPrinter(flow.client, flow.id, "client", relay.started_at, **options))
            printers.append(_LegPrinter(flow.upstream, flow.id, "upstream", relay.started_at, **options))
        seen_flows = len(relay.flows)
        for refusal in relay.refused[seen_refusals:]:
            note(f"refused {refusal.path or '?'}: {refusal.status} {refusal.reason}")
        seen_refusals = len(relay.refused)
        for tunnel in relay.tunnels[seen_tunnels:]:
            note(f"tunnel {tunnel.id}: {tunnel.kind} {tunnel.target} ({tunnel.reason})")
        seen_tunnels = len(relay.tunnels)
        for tunnel in relay.tunnels:
            if tunnel.ended and tunnel.id not in ended_tunnels:
                ended_tunnels.add(tunnel.id)
                error = f"; {tunnel.error}" if tunnel.error else ""
                note(f"tunnel {tunnel.id} ended: {tunnel.bytes_up} bytes up, {tunnel.bytes_down} down{error}")
        rows = sorted((item for printer in printers for item in printer.take()), key=lambda item: item[0])
        if rows:
            print("\n".join(line for _, line in rows), flush=True)
        for flow in relay.flows:
            if flow.ended and flow.id not in ended:
                ended.add(flow.id)
                client, upstream = flow.client.close_reason, flow.upstream.close_reason
                note(
                    f"flow {flow.id} ended: client {client.code if client else '?'}, "
                    f"upstream {upstream.code if upstream else '?'}"
                )

    try:
        while args.flows is None or len(ended) < args.flows:
            await asyncio.sleep(0.05)
            flush()
    finally:
        await relay.close()
        flush()
        if args.save is not None:
            saved = relay.save_timeline(args.save)
            print(f"{len(relay.timeline)} rows of {len(relay.flows)} flows saved to {saved}", file=sys.stderr)
    return EXIT_OK


# -- the command line ---------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `rawws-nb probe: <what is wrong> (rawws-nb probe --help)`."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


class _Frames(argparse.Action):
    """--send/--hex/--ping append (kind, value) to one list, in command-line order."""

    KINDS: ClassVar[dict[str, str]] = {"--send": "text", "--hex": "binary", "--ping": "ping"}

    def __call__(
        self, parser: argparse.ArgumentParser, ns: argparse.Namespace, values: Any, option: str | None = None
    ) -> None:
        items = list(getattr(ns, self.dest, None) or [])
        kind = self.KINDS[option or "--send"]
        if kind == "ping":
            values = (values if values is not None else "probe").encode("utf-8")
            if len(values) > 125:
                parser.error(f"argument --ping: a Ping payload is at most 125 bytes ({len(values)} given)")
        items.append((kind, values))
        setattr(ns, self.dest, items)


def _session_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("url", help="ws:// or wss:// URL")
    p.add_argument(
        "-H",
        "--header",
        action="append",
        type=_arg(parse_header),
        metavar="'NAME: VALUE'",
        help="an extra request header (repeatable)",
    )
    p.add_argument("--subprotocol", action="append", metavar="NAME", help="offer a subprotocol (repeatable)")
    p.add_argument("--answer-pings", action="store_true", help="answer each Ping with a Pong (off: raw)")
    p.add_argument("--json", action="store_true", help="one JSON object per frame (timeline column names)")
    p.add_argument("--hexdump", action="store_true", help="hex + ASCII of every payload")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto", help="colour (default: on a TTY)")
    p.add_argument("--timeout", type=_seconds, default=10.0, help="opening handshake and ping time-out (s)")
    p.add_argument("--close-timeout", type=_seconds, default=5.0, help="wait at most S s for the peer's Close")
    p.add_argument("--max-message-size", type=_count, default=16 << 20, metavar="BYTES")
    p.add_argument("-k", "--insecure", action="store_true", help="wss: do not verify the server's certificate")


class _Capture:
    """A capture read back, shaped like what `FramePrinter` prints from (a recorder)."""

    def __init__(self, df: Any) -> None:
        self.df = df
        self.recorder = self

    first = 0

    @property
    def total(self) -> int:
        return len(self.df)

    def to_dataframe(self, since: int = 0) -> Any:
        return self.df.iloc[since:]


def _pcap(args: argparse.Namespace) -> int:
    from .pcap import CaptureError, read_pcap

    path = Path(args.file)
    if not path.is_file():
        raise UsageError(f"no such file: {args.file}")
    try:
        df = read_pcap(path)
    except CaptureError as exc:
        raise UsageError(str(exc)) from None
    notes = [
        f"connection {c['connection']}: {c['client']} -> {c['server']} {c['url']}"
        + (f" ({', '.join(c['extensions'])})" if c["extensions"] else "")
        + f", {c['frames']} frames"
        for c in df.attrs["connections"]
    ]
    notes += [f"problem: {p}" for p in df.attrs["problems"]]
    if args.to:
        from .timeline.persist import save_timeline

        saved = save_timeline(df, args.to)
        for note in notes:
            print(note, file=sys.stderr)
        print(f"{len(df)} frames saved to {saved}", file=sys.stderr)
        return EXIT_OK
    colour = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
    printer = FramePrinter(_Capture(df), json_mode=args.json, hexdump=args.hexdump, colour=colour)
    for note in notes:
        printer.note(note)
    printer.flush()
    if not df.attrs["connections"]:
        printer.note("no WebSocket connection in this capture")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rawws-nb", description="raw WebSocket toolkit: every frame visible and sendable")
    parser.add_argument("--version", action="version", version=f"rawws-nb {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p_serve = sub.add_parser("serve", help="run the embedded test server")
    p_serve.add_argument("--host", default="127.0.0.1")
    p_serve.add_argument("--port", type=_port, default=8765)

    p_probe = sub.add_parser(
        "probe",
        help="connect, send what the flags say, print every frame both ways, close",
        description="Connect, send the frames the flags give (in order), print every frame in both directions "
        "(wire opcode, fin/rsv, length, preview), close, and exit as soon as the closing handshake ends.",
    )
    _session_options(p_probe)
    p_probe.add_argument("--send", dest="frames", action=_Frames, metavar="TEXT", help="send a Text frame")
    p_probe.add_argument(
        "--hex",
        dest="frames",
        action=_Frames,
        type=_arg(parse_hex),
        metavar="HEX",
        help="send a Binary frame given in hex",
    )
    p_probe.add_argument(
        "--ping",
        dest="frames",
        action=_Frames,
        nargs="?",
        metavar="DATA",
        help="send a Ping (payload DATA, default 'probe') and print its round trip",
    )
    p_probe.add_argument(
        "--close", type=_arg(parse_close), metavar="CODE[:REASON]", help="the Close to send (default 1000)"
    )
    p_probe.add_argument(
        "--wait", type=_seconds, metavar="S", help="before closing, wait until no frame came for S seconds"
    )
    p_probe.add_argument("--count", type=_count, metavar="N", help="before closing, wait for N received frames")

    p_connect = sub.add_parser(
        "connect",
        help="interactive: each stdin line is a Text frame; /ping /hex /close commands",
        description="Interactive session. " + _HELP + ". End of input sends Close 1000.",
    )
    _session_options(p_connect)

    p_pcap = sub.add_parser(
        "pcap",
        help="read a pcap/pcapng capture: print its WebSocket frames, or convert it",
        description="Read a pcap or pcapng capture (tcpdump, Wireshark): every WebSocket frame of every "
        "connection found by its HTTP upgrade, both directions (tx: client to server), compression inflated.",
    )
    p_pcap.add_argument("file", help="the capture (pcap or pcapng)")
    p_pcap.add_argument("--json", action="store_true", help="one JSON object per frame (timeline column names)")
    p_pcap.add_argument("--to", metavar="FILE.parquet", help="save the timeline as Parquet instead of printing")
    p_pcap.add_argument("--hexdump", action="store_true", help="hex + ASCII of every payload")
    p_pcap.add_argument(
        "--color", choices=("auto", "always", "never"), default="auto", help="colour (default: on a TTY)"
    )

    p_relay = sub.add_parser(
        "relay",
        help="intercept: forward clients' WebSocket connections to UPSTREAM, printing frames of both legs",
        description="Listen for WebSocket clients and open UPSTREAM + the client's path for each, forwarding "
        "every frame both ways as it came (fragments, Ping, Pong, Close included); print the frames of both "
        "legs (client: the relay facing the client, upstream: facing the server; tx/rx seen from the relay). "
        "With --proxy instead of UPSTREAM the relay is an HTTP proxy: each client's WebSocket connection "
        "(ws, or wss with a certificate from the relay's CA, see --ca-out) becomes a flow to the host the "
        "client asked for; other connections are tunnelled untouched and listed as tunnels.",
    )
    p_relay.add_argument(
        "upstream",
        nargs="?",
        type=_arg(parse_ws_url),
        help="ws:// or wss:// URL of the server (the client's path is appended); not with --proxy",
    )
    p_relay.add_argument(
        "--proxy",
        action="store_true",
        help="be an HTTP proxy instead (CONNECT and absolute-form requests): clients' WebSocket connections "
        "become flows (wss through the relay's CA), anything else is tunnelled untouched",
    )
    p_relay.add_argument(
        "--ca-out",
        metavar="FILE.pem",
        help="with --proxy: write the relay's CA certificate there, for clients to trust",
    )
    p_relay.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p_relay.add_argument("--port", type=_port, default=0, help="port to listen on (default: a free one, printed)")
    p_relay.add_argument("--save", metavar="FILE.parquet", help="at the end, save both legs' timeline as Parquet")
    p_relay.add_argument("--flows", type=_count, metavar="N", help="stop after N flows have ended")
    p_relay.add_argument("--json", action="store_true", help="one JSON object per frame (with flow and leg)")
    p_relay.add_argument("--hexdump", action="store_true", help="hex + ASCII of every payload")
    p_relay.add_argument(
        "--color", choices=("auto", "always", "never"), default="auto", help="colour (default: on a TTY)"
    )

    demo_text = (
        "run the Ktor raw-API scenarios (manual ping-pong, direct frame control, 1000 messages, "
        "a custom heartbeat, a binary protocol, low-level debugging, error handling) on the embedded server"
    )
    sub.add_parser("demo", help=demo_text, description=demo_text)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = f"rawws-nb {args.command}"
    try:
        if args.command == "serve":
            try:
                asyncio.run(_serve(args.host, args.port))
            except OSError as exc:
                reason = exc.strerror or str(exc)
                print(f"{prog}: cannot listen on {args.host}:{args.port}: {reason}", file=sys.stderr)
                return EXIT_USAGE
            return EXIT_OK
        if args.command == "pcap":
            return _pcap(args)
        if args.command == "relay":
            return asyncio.run(_relay(args))
        if args.command in ("probe", "connect"):
            runner = _probe if args.command == "probe" else _connect
            return asyncio.run(runner(args))
        from .demo import main as demo_main

        return asyncio.run(demo_main())
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `rawws-nb probe ... | head`: the reader went away
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # no second error at exit
        return EXIT_OK
    except UsageError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except HandshakeError as exc:
        print(f"{prog}: handshake failed: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ssl.SSLError as exc:
        print(f"{prog}: TLS: {exc.reason or exc}", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, TimeoutError) as exc:
        text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        print(f"{prog}: cannot connect to {getattr(args, 'url', '')}: {text}", file=sys.stderr)
        return EXIT_USAGE
    except RawWsError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_UNCLEAN
    except Exception as exc:  # never a traceback for the user; RAWWS_DEBUG=1 shows it
        if os.environ.get("RAWWS_DEBUG"):
            raise
        print(
            f"{prog}: internal error: {type(exc).__name__}: {exc} (RAWWS_DEBUG=1 shows the traceback)", file=sys.stderr
        )
        return EXIT_UNCLEAN


if __name__ == "__main__":
    sys.exit(main())
