"""Captures: timelines out to pcapng for Wireshark, and pcap/pcapng captures in.

`to_pcapng(source, path)` writes a timeline (a session, a DataFrame, or a capture read
back) as synthetic Ethernet/IPv4/TCP: a three-way handshake, the HTTP upgrade (from the
session's headers when known, synthesised otherwise), every frame as it was recorded
(client frames masked, with keys derived from the row number since the real keys are
not recorded), a FIN each way. The server side is on port 80, so Wireshark and tshark
dissect HTTP and then WebSocket without "Decode As". Timestamps are the timeline's; each
frame's packet carries a comment naming its timeline row (and its error, if any).
What a timeline does not hold is marked in that comment: a payload capped by
`payload_cap` is zero-filled to its length, and compressed frames are compressed again
(the timeline keeps them inflated), so their wire length may differ from `length`.

`read_pcap(path)` reads pcap or pcapng files (tcpdump, Wireshark, dumpcap; Ethernet,
loopback, Linux cooked v1/v2 and raw-IP link types; IPv4 and IPv6), reassembles each TCP
stream (out-of-order segments, retransmissions and overlaps), finds WebSocket
connections by their HTTP upgrade, and parses every frame with the same sans-IO core
the sessions use (`rawws_nb.connection`): peer violations become rows with `error`,
permessage-deflate negotiated in the capture is inflated. It returns one timeline
DataFrame, `dir` seen from the client (tx: client to server), plus `connection`, `src`
and `dst`. What could not be read is reported in `df.attrs["problems"]`, never guessed:
a connection whose start is not in the capture, a gap in a stream, a truncated file.
"""

from __future__ import annotations

import io
import ipaddress
import struct
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dpkt
import numpy as np

from .connection import Connection, State
from .deflate import EXTENSION_NAME, DeflateParams, Deflater, NegotiationFailed, PerMessageDeflate, parse_extensions
from .errors import RawWsError
from .frames import RX, TX, header_code
from .timeline.persist import timeline_of
from .timeline.recorder import Recorder
from .timeline.schema import dir_codes, opcode_codes, rsv_codes, t_ns
from .wire import Violation, apply_mask, header_bytes

__all__ = ["CaptureError", "read_pcap", "to_pcapng"]

_MAX_HEAD = 64 * 1024  # bytes of an HTTP head looked at before giving up on a stream
_MAX_PENDING = 64 << 20  # out-of-order bytes buffered per stream before reporting a gap
_SEGMENT = 32 * 1024  # TCP payload per synthetic segment (well under 64 KiB)
_CLIENT_IP, _SERVER_IP = bytes((10, 0, 0, 1)), bytes((10, 0, 0, 2))
_CLIENT_MAC, _SERVER_MAC = b"\x02\x00\x00\x00\x00\x01", b"\x02\x00\x00\x00\x00\x02"
_SYN, _ACK = 0x02, 0x10
_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455's sample key, and its accept token below
_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


class CaptureError(RawWsError, ValueError):
    """A file that is not a capture rawws_nb can read (not pcap/pcapng, or an unknown
    link type), or a timeline that cannot be written as one."""


# -- writing ---------------------------------------------------------------------------------


@dataclass
class _Flow:
    """One synthetic TCP connection being written."""

    client: tuple[bytes, int]
    server: tuple[bytes, int]
    seq: dict[bool, int] = field(default_factory=lambda: {True: 1000, False: 5000})  # by from_client


def _endpoint(text: Any, default: tuple[bytes, int]) -> tuple[bytes, int]:
    try:
        host, _, port = str(text).rpartition(":")
        parts = bytes(int(p) for p in host.strip("[]").split("."))
        if len(parts) == 4:
            return parts, int(port)
    except (ValueError, TypeError):
        pass
    return default


def _head(lines: list[str]) -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _upgrade_heads(meta: dict[str, Any], source: Any, compressed: bool) -> tuple[bytes, bytes]:
    url = str(meta.get("url") or "ws://localhost/")
    rest = url.split("://", 1)[-1]
    host, _, path = rest.partition("/")
    request = [f"GET /{path} HTTP/1.1", f"Host: {host or 'localhost'}", "Upgrade: websocket", "Connection: Upgrade"]
    request += [f"Sec-WebSocket-Key: {_KEY}", "Sec-WebSocket-Version: 13"]
    subprotocol = meta.get("subprotocol")
    if subprotocol:
        request.append(f"Sec-WebSocket-Protocol: {subprotocol}")
    extensions = list(getattr(source, "extensions", None) or [])
    if compressed and not extensions:
        extensions = [EXTENSION_NAME]
    if extensions:
        request.append(f"Sec-WebSocket-Extensions: {EXTENSION_NAME}; client_max_window_bits")
    taken = {"host", "upgrade", "connection", "sec-websocket-key", "sec-websocket-version"}
    for name, value in getattr(source, "request_headers", None) or []:
        if name.lower() not in taken and not name.lower().startswith("sec-websocket-"):
            request.append(f"{name}: {value}")
    response = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade"]
    response.append(f"Sec-WebSocket-Accept: {_ACCEPT}")
    if subprotocol:
        response.append(f"Sec-WebSocket-Protocol: {subprotocol}")
    if extensions:
        response.append(f"Sec-WebSocket-Extensions: {extensions[0]}")
    return _head(request), _head(response)


def _deflate_params(extensions: list[str]) -> DeflateParams:
    try:
        for name, params in parse_extensions(extensions):
            if name == EXTENSION_NAME:
                got = dict(params)
                return DeflateParams(
                    "server_no_context_takeover" in got,
                    "client_no_context_takeover" in got,
                    int(got.get("server_max_window_bits") or 15),
                    int(got.get("client_max_window_bits") or 15),
                )
    except (NegotiationFailed, ValueError):
        pass
    return DeflateParams()


class _PcapngOut:
    def __init__(self, fileobj: io.BufferedIOBase) -> None:
        self.writer = dpkt.pcapng.Writer(fileobj, snaplen=65535, linktype=dpkt.pcap.DLT_EN10MB)
        self.packets = 0

    def packet(self, flow: _Flow, from_client: bool, t: int, flags: int, data: bytes, comment: str | None) -> None:
        src, dst = (flow.client, flow.server) if from_client else (flow.server, flow.client)
        seq = flow.seq[from_client]
        ack = flow.seq[not from_client]
        tcp = dpkt.tcp.TCP(sport=src[1], dport=dst[1], seq=seq, ack=ack, flags=flags, win=65535, data=data)
        ip = dpkt.ip.IP(src=src[0], dst=dst[0], p=dpkt.ip.IP_PROTO_TCP, ttl=64, data=tcp)
        ip.len = len(ip)  # dpkt fills the checksums when the packet is built
        macs = (_CLIENT_MAC, _SERVER_MAC) if from_client else (_SERVER_MAC, _CLIENT_MAC)
        eth = dpkt.ethernet.Ethernet(src=macs[0], dst=macs[1], type=dpkt.ethernet.ETH_TYPE_IP, data=ip)
        flow.seq[from_client] = (seq + len(data) + (1 if flags & (dpkt.tcp.TH_SYN | dpkt.tcp.TH_FIN) else 0)) % (
            1 << 32
        )
        raw = bytes(eth)
        opts = []
        if comment:
            opts.append(dpkt.pcapng.PcapngOptionLE(code=dpkt.pcapng.PCAPNG_OPT_COMMENT, text=comment))
        opts.append(dpkt.pcapng.PcapngOptionLE(code=dpkt.pcapng.PCAPNG_OPT_ENDOFOPT))
        us = t // 1000
        block = dpkt.pcapng.EnhancedPacketBlockLE(
            ts_high=us >> 32, ts_low=us & 0xFFFFFFFF, caplen=len(raw), pkt_len=len(raw), pkt_data=raw, opts=opts
        )
        self.writer.writepkt(block)
        self.packets += 1

    def stream(self, flow: _Flow, from_client: bool, t: int, data: bytes, comment: str | None) -> None:
        for start in range(0, max(len(data), 1), _SEGMENT):
            chunk = data[start : start + _SEGMENT]
            flags = dpkt.tcp.TH_ACK | (dpkt.tcp.TH_PUSH if start + _SEGMENT >= len(data) else 0)
            self.packet(flow, from_client, t, flags, chunk, comment if start == 0 else None)


def to_pcapng(source: Any, path: str | Path) -> Path:
    """Write `source` (a session, a timeline DataFrame, a relay or a capture read back)
    as a pcapng file Wireshark opens as WebSocket; returns the path. One TCP connection
    per session, per `connection` of a capture read back, per `flow` and `leg` of a relay
    timeline. See the module docstring for what is synthesised."""
    df = timeline_of(source)
    meta = dict(df.attrs)
    for key in ("url", "subprotocol"):
        if key not in meta and getattr(source, key, None):
            meta[key] = getattr(source, key)
    if "connection" in df.columns:
        groups = list(df.groupby("connection", sort=True))
    elif "flow" in df.columns and "leg" in df.columns:
        groups = list(df.groupby(["flow", "leg"], sort=True))
    else:
        groups = [(0, df)]
    client_side = bool(getattr(source, "client", True))
    path = Path(path)
    with path.open("wb") as fileobj:
        out = _PcapngOut(fileobj)
        for number, (key, rows) in enumerate(groups):
            src = rows["src"].iloc[0] if "src" in rows.columns and len(rows) else None
            dst = rows["dst"].iloc[0] if "dst" in rows.columns and len(rows) else None
            # A relay's client leg is the relay's server side: its tx goes to the client.
            as_client = client_side and not (isinstance(key, tuple) and key[1] == "client")
            tx_client = dir_codes(rows) == 0
            if src is not None and "dir" in rows.columns and not tx_client[:1].all():
                src, dst = dst, src
            flow = _Flow(
                _endpoint(src, (_CLIENT_IP, 40000 + number)),
                _endpoint(dst, (_SERVER_IP, 80)),
            )
            if dst is not None:
                flow.server = (flow.server[0], 80)  # port 80: dissected as HTTP, then WebSocket
            _write_connection(out, flow, rows, meta, source, as_client)
    return path


def _write_connection(
    out: _PcapngOut, flow: _Flow, rows: Any, meta: dict[str, Any], source: Any, as_client: bool
) -> None:
    t = t_ns(rows["t"]) if len(rows) else np.zeros(1, dtype=np.int64)
    t0 = int(t[0]) if len(rows) else int(meta.get("started_at_ns") or 0)
    compressed = (
        rows["compressed"].to_numpy(dtype=bool) if "compressed" in rows.columns else np.zeros(len(rows), dtype=bool)
    )
    request, response = _upgrade_heads(meta, source, bool(compressed.any()))
    syn, ack = dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK
    out.packet(flow, True, t0, syn, b"", None)
    out.packet(flow, False, t0, syn | ack, b"", None)
    out.packet(flow, True, t0, ack, b"", None)
    out.stream(flow, True, t0, request, "HTTP upgrade request" + ("" if source is not None else " (synthesised)"))
    out.stream(flow, False, t0, response, "HTTP upgrade response")
    extensions = list(getattr(source, "extensions", None) or [])
    agreed = _deflate_params(extensions) if extensions else DeflateParams()
    deflaters = {
        True: Deflater(agreed.client_max_window_bits, agreed.client_no_context_takeover),
        False: Deflater(agreed.server_max_window_bits, agreed.server_no_context_takeover),
    }
    direction = dir_codes(rows)
    opcode = opcode_codes(rows)
    fin = rows["fin"].to_numpy(dtype=bool)
    rsv = rsv_codes(rows)
    length = rows["length"].to_numpy()
    errors = rows["error"].tolist() if "error" in rows.columns else [None] * len(rows)
    inflated = (
        rows["inflated_length"].to_numpy(dtype=object, na_value=None)
        if "inflated_length" in rows.columns
        else [None] * len(rows)
    )
    msg_open: dict[bool, bool] = {True: False, False: False}
    for i, (label, payload) in enumerate(zip(rows.index.tolist(), rows["payload"].tolist(), strict=True)):
        from_client = (direction[i] == 0) == as_client
        data = bytes(payload or b"")
        notes = [f"rawws_nb timeline row {label}"]
        op = int(opcode[i]) if opcode[i] >= 0 else 0
        if compressed[i]:
            full = inflated[i]
            if full is not None and len(data) < int(full):
                notes.append(f"payload capped in the timeline: {len(data)} of {int(full)} bytes, zero-filled")
                data += bytes(int(full) - len(data))
            data = deflaters[from_client].compress(data, bool(fin[i]))
            notes.append("recompressed (the timeline keeps the inflated payload)")
        elif len(data) < int(length[i]):
            notes.append(f"payload capped in the timeline: {len(data)} of {int(length[i])} bytes, zero-filled")
            data += bytes(int(length[i]) - len(data))
        if op < 8:
            msg_open[from_client] = not fin[i]
        error = errors[i]
        if isinstance(error, str):
            notes.append(f"error: {error}")
        b0 = (0x80 if fin[i] else 0) | (int(rsv[i]) & 7) << 4 | op
        if from_client:
            key = struct.pack(">I", (int(label) * 2654435761 + 0x5A5A5A5A) & 0xFFFFFFFF)
            wire = bytes(apply_mask(data, key, header_bytes(b0, len(data), key)))
        else:
            wire = header_bytes(b0, len(data)) + data
        out.stream(flow, from_client, int(t[i]), wire, "; ".join(notes))
    t_end = int(t[-1]) if len(rows) else t0
    out.packet(flow, True, t_end, dpkt.tcp.TH_FIN | ack, b"", None)
    out.packet(flow, False, t_end, dpkt.tcp.TH_FIN | ack, b"", None)
    out.packet(flow, True, t_end, ack, b"", None)


# -- reading --------------------------------------------------------------------------------


def _packets(fileobj: io.BufferedIOBase, problems: list[str]) -> Iterator[tuple[int, int, bytes]]:
    """(timestamp ns, link type, frame bytes) for each packet; a truncated file ends the
    iteration with a problem noted."""
    magic = fileobj.read(4)
    fileobj.seek(0)
    if magic == b"\x0a\x0d\x0d\x0a":
        reader: Any = dpkt.pcapng.Reader(fileobj)
    elif magic in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"):
        reader = dpkt.pcap.Reader(fileobj)
    else:
        raise CaptureError(f"not a pcap or pcapng file (it starts with {magic!r})")
    link = reader.datalink()
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    count = 0
    iterator = iter(reader)
    while True:
        try:
            ts, buf = next(iterator)
        except StopIteration:
            return
        except (dpkt.NeedData, dpkt.UnpackError, ValueError, struct.error) as exc:
            problems.append(f"the capture is truncated or damaged after packet {count}: {exc or type(exc).__name__}")
            return
        count += 1
        yield (int(ts) if nano else round(float(ts) * 1e9)), link, buf


# Offset of the network-layer header per link type, and where its protocol field is.
_ETHERTYPE_IPV4, _ETHERTYPE_IPV6, _ETHERTYPE_VLAN = 0x0800, 0x86DD, (0x8100, 0x88A8)
_H = struct.Struct("!H").unpack_from
_TCP = struct.Struct("!HHIIBB").unpack_from  # ports, seq, ack, data offset, flags


def _network(link: int, buf: bytes) -> tuple[int, int]:
    """(offset of the IP header, IP version or 0 when not IP) for a captured frame."""
    if link == dpkt.pcap.DLT_EN10MB:
        offset, ethertype = 14, _H(buf, 12)[0]
        while ethertype in _ETHERTYPE_VLAN:
            ethertype = _H(buf, offset + 2)[0]
            offset += 4
    elif link in (dpkt.pcap.DLT_NULL, dpkt.pcap.DLT_LOOP):
        offset, ethertype = 4, 0
    elif link == dpkt.pcap.DLT_LINUX_SLL:
        offset, ethertype = 16, _H(buf, 14)[0]
    elif link == 276:  # LINKTYPE_LINUX_SLL2
        offset, ethertype = 20, _H(buf, 0)[0]
    elif link in (12, 14, 101):  # raw IP
        offset, ethertype = 0, 0
    else:
        raise CaptureError(f"link type {link} is not supported (Ethernet, loopback, Linux cooked, raw IP are)")
    if ethertype == _ETHERTYPE_IPV4:
        return offset, 4
    if ethertype == _ETHERTYPE_IPV6:
        return offset, 6
    if ethertype == 0 and len(buf) > offset:
        version = buf[offset] >> 4
        return offset, version if version in (4, 6) else 0
    return offset, 0


def _tcp_segment(link: int, buf: bytes) -> tuple[tuple[bytes, int, bytes, int], int, int, bytes] | None:
    """((src, sport, dst, dport), seq, flags, payload) of a TCP segment, or None."""
    offset, version = _network(link, buf)
    if version == 4:
        if buf[offset + 9] != 6:
            return None
        ihl = (buf[offset] & 0x0F) * 4
        total = _H(buf, offset + 2)[0]
        src, dst = buf[offset + 12 : offset + 16], buf[offset + 16 : offset + 20]
        end = offset + total if total else len(buf)  # trailing padding is not TCP data
        tcp = offset + ihl
    elif version == 6:
        if buf[offset + 6] != 6:  # extension headers: not a plain TCP segment
            return None
        src, dst = buf[offset + 8 : offset + 24], buf[offset + 24 : offset + 40]
        end = offset + 40 + _H(buf, offset + 4)[0]
        tcp = offset + 40
    else:
        return None
    sport, dport, seq, _ack, data_offset, flags = _TCP(buf, tcp)
    return (src, sport, dst, dport), seq, flags, buf[tcp + (data_offset >> 4) * 4 : end]


def _endpoint_text(address: bytes, port: int) -> str:
    ip = ipaddress.ip_address(address)
    return f"[{ip}]:{port}" if ip.version == 6 else f"{ip}:{port}"


class _Stream:
    """One direction of a TCP connection, reassembled: in-order bytes come out of `add`."""

    __slots__ = ("gap", "next_seq", "pending", "pending_bytes", "started")

    def __init__(self) -> None:
        self.next_seq: int | None = None
        self.pending: dict[int, bytes] = {}
        self.pending_bytes = 0
        self.started = False  # the SYN (or SYN/ACK) was seen
        self.gap = False

    def syn(self, seq: int) -> None:
        self.next_seq = (seq + 1) % (1 << 32)
        self.started = True
        self.pending.clear()
        self.pending_bytes = 0

    def add(self, seq: int, data: bytes) -> bytes:
        """The bytes that are now contiguous (b"" while a segment before is missing)."""
        if self.next_seq is None or not data or self.gap:
            return b""
        offset = (seq - self.next_seq + (1 << 31)) % (1 << 32) - (1 << 31)
        if offset > 0:  # out of order: keep it until what comes before arrives
            if seq not in self.pending or len(self.pending[seq]) < len(data):
                self.pending_bytes += len(data) - len(self.pending.get(seq, b""))
                self.pending[seq] = data
            if self.pending_bytes > _MAX_PENDING:
                self.gap = True
            return b""
        if -offset >= len(data):
            return b""  # a retransmission of bytes already taken
        out = [data[-offset:]]
        self.next_seq = (self.next_seq + len(out[0])) % (1 << 32)
        while self.pending:
            found = None
            for pseq, pdata in self.pending.items():
                off = (pseq - self.next_seq + (1 << 31)) % (1 << 32) - (1 << 31)
                if off <= 0:
                    found = (pseq, pdata, off)
                    break
            if found is None:
                break
            pseq, pdata, off = found
            del self.pending[pseq]
            self.pending_bytes -= len(pdata)
            if -off < len(pdata):
                out.append(pdata[-off:])
                self.next_seq = (self.next_seq + len(pdata) + off) % (1 << 32)
        return b"".join(out)


class _Side:
    """One direction of a WebSocket connection in a capture: the HTTP head, then frames."""

    __slots__ = ("buffer", "conn", "head", "held")

    def __init__(self) -> None:
        self.head: bytes | None = None
        self.buffer = b""
        self.conn: Connection | None = None
        self.held: list[tuple[int, bytes]] = []  # frame bytes waiting for the other side's head


@dataclass
class _Capture:
    """One TCP connection of the capture."""

    number: int
    client: str
    server: str
    streams: dict[bool, _Stream] = field(default_factory=lambda: {True: _Stream(), False: _Stream()})
    sides: dict[bool, _Side] = field(default_factory=lambda: {True: _Side(), False: _Side()})
    recorder: Recorder | None = None
    websocket: bool | None = None  # None: not known yet
    url: str = ""
    extensions: list[str] = field(default_factory=list)
    reported: bool = False


def _split_head(buffer: bytes) -> tuple[bytes, bytes] | None:
    end = buffer.find(b"\r\n\r\n")
    return None if end < 0 else (buffer[: end + 4], buffer[end + 4 :])


def _header(head: bytes, name: bytes) -> list[str]:
    values = []
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            values.append(value.strip().decode("latin-1"))
    return values


class _Reader:
    def __init__(self, max_message_size: int | None, payload_cap: int) -> None:
        self.captures: dict[tuple[str, str], _Capture] = {}
        self.by_key: dict[tuple[bytes, int, bytes, int], _Capture] = {}  # both directions' 4-tuples
        self.client_key: dict[int, tuple[bytes, int, bytes, int]] = {}  # id(capture) -> client's 4-tuple
        self.problems: list[str] = []
        self.max_message_size = max_message_size
        self.payload_cap = payload_cap

    def packet(self, t: int, link: int, buf: bytes) -> None:
        segment = _tcp_segment(link, buf)
        if segment is None:
            return
        key, seq, flags, payload = segment
        cap = self.by_key.get(key)
        if cap is None:
            src, sport, dst, dport = key
            back = (dst, dport, src, sport)
            if not flags & _SYN or flags & _ACK:
                # Not the opening SYN: the connection started before the capture did.
                cap = _Capture(len(self.captures), _endpoint_text(src, sport), _endpoint_text(dst, dport))
                cap.websocket = False
                if payload:
                    self.problems.append(
                        f"connection {cap.client} <-> {cap.server}: its start is not in the capture (no SYN); not read"
                    )
            else:
                cap = _Capture(len(self.captures), _endpoint_text(src, sport), _endpoint_text(dst, dport))
            self.captures[(cap.client, cap.server)] = cap
            self.by_key[key] = cap
            self.by_key[back] = cap
            self.client_key[id(cap)] = key
        if cap.websocket is False:
            return
        from_client = self.client_key[id(cap)] == key
        stream = cap.streams[from_client]
        if flags & _SYN:
            stream.syn(seq)
            return
        data = stream.add(seq, payload)
        if stream.gap and not cap.reported:
            cap.reported = True
            self.problems.append(f"connection {cap.client} <-> {cap.server}: a gap in the stream; read up to it")
        if data:
            self.data(cap, from_client, t, data)

    def data(self, cap: _Capture, from_client: bool, t: int, data: bytes) -> None:
        side = cap.sides[from_client]
        if side.head is None:
            if not side.buffer and from_client and data[:1] == b"\x16" and data[1:2] == b"\x03":
                cap.websocket = False
                self.problems.append(
                    f"connection {cap.client} <-> {cap.server}: TLS, not read (read_pcap does not decrypt; "
                    "Wireshark does, with the session's keylog= file)"
                )
                return
            side.buffer += data
            split = _split_head(side.buffer)
            if split is None:
                if len(side.buffer) > _MAX_HEAD:
                    cap.websocket = False
                return
            side.head, rest = split
            side.buffer = b""
            if not self.head(cap, from_client, side.head):
                cap.websocket = False
                return
            data = rest
            other = cap.sides[not from_client]
            if side.conn is not None and other.conn is not None:
                for held_t, held in other.held:
                    self.frames(cap, not from_client, held_t, held)
                other.held.clear()
            if not data:
                return
        if side.conn is None or cap.sides[not from_client].conn is None:
            side.held.append((t, data))  # the client's frames wait for the 101 (deflate parameters)
            return
        self.frames(cap, from_client, t, data)

    def head(self, cap: _Capture, from_client: bool, head: bytes) -> bool:
        line = head.split(b"\r\n", 1)[0]
        if from_client:
            parts = line.split()
            if (
                len(parts) < 2
                or parts[0] != b"GET"
                or "websocket" not in [v.lower() for v in _header(head, b"upgrade")]
            ):
                return False
            host = (_header(head, b"host") or [cap.server])[0]
            cap.url = f"ws://{host}{parts[1].decode('latin-1')}"
            cap.sides[True].conn = Connection(client=False, max_message_size=self.max_message_size, state=State.OPEN)
            return True
        if not line.startswith(b"HTTP/1.1 101"):
            self.problems.append(
                f"connection {cap.client} <-> {cap.server}: upgrade refused ({line.decode('latin-1')})"
            )
            return False
        cap.extensions = _header(head, b"sec-websocket-extensions")
        deflate = None
        if any(e.split(";")[0].strip() == EXTENSION_NAME for e in cap.extensions):
            deflate = _deflate_params(cap.extensions)
        client_conn = Connection(
            client=True,
            max_message_size=self.max_message_size,
            state=State.CONNECTING,
        )
        server_conn = cap.sides[True].conn
        if server_conn is None:
            return False
        client_conn.opened(None if deflate is None else PerMessageDeflate(deflate, client=True))
        if deflate is not None:
            server_conn.reader.use_inflater(PerMessageDeflate(deflate, client=False).inflater)
        cap.sides[False].conn = client_conn
        cap.websocket = True
        cap.recorder = Recorder(capacity=1 << 62, payload_cap=self.payload_cap)
        return True

    def frames(self, cap: _Capture, from_client: bool, t: int, data: bytes) -> None:
        conn = cap.sides[from_client].conn
        rec = cap.recorder
        assert conn is not None and rec is not None
        frames, codes, violation = conn.receive_data(data)
        if frames:
            if from_client:
                codes = array("q", [c & ~RX for c in codes])  # client to server: tx, as a client's timeline says
            rec.stage_rx(t, codes, frames, conn.reader.compressed)
        if violation is not None:
            self.violation(rec, t, violation, TX if from_client else RX)

    def violation(self, rec: Recorder, t: int, v: Violation, direction: int) -> None:
        code = header_code(v.opcode or 0, bool(v.fin), v.rsv, direction=direction)
        rec.add_error(t, code, v.payload, v.length or 0, None, f"{v.reason} (the peer fails with {v.code})")

    def finish(self) -> None:
        for cap in self.captures.values():
            if not cap.websocket or cap.recorder is None:
                continue
            for from_client in (True, False):
                conn = cap.sides[from_client].conn
                if conn is None or conn.failure is not None:
                    continue
                partial = conn.receive_eof()
                if partial is not None and partial.payload:
                    self.violation(cap.recorder, 0, partial, TX if from_client else RX)


def read_pcap(path: str | Path, *, max_message_size: int | None = 64 << 20, payload_cap: int = 1 << 20) -> Any:
    """Read a pcap or pcapng file into one timeline DataFrame (see the module docstring):
    the timeline's columns plus `connection`, `src`, `dst`; `attrs` lists the WebSocket
    connections found (`connections`) and what could not be read (`problems`).
    `max_message_size` bounds messages as a session would (inflated sizes included);
    `payload_cap` the bytes kept per payload. Raises `CaptureError` for a file that is
    not a capture."""
    import pandas as pd

    from .timeline.schema import empty_timeline

    reader = _Reader(max_message_size, payload_cap)
    path = Path(path)
    with path.open("rb") as fileobj:
        try:
            for t, link, buf in _packets(fileobj, reader.problems):
                try:
                    reader.packet(t, link, buf)
                except (IndexError, struct.error):
                    continue  # a packet too short to hold its headers (snap length): not TCP data
        except (dpkt.UnpackError, dpkt.NeedData, ValueError, struct.error) as exc:
            if isinstance(exc, CaptureError):
                raise
            raise CaptureError(f"{path}: not a readable capture: {exc}") from None
    reader.finish()
    parts = []
    connections = []
    for cap in reader.captures.values():
        if not cap.websocket or cap.recorder is None:
            continue
        df = cap.recorder.to_dataframe()
        is_tx = (df["dir"] == "tx").to_numpy()
        df["connection"] = cap.number
        df["src"] = pd.array([cap.client if tx else cap.server for tx in is_tx], dtype="string[pyarrow]")
        df["dst"] = pd.array([cap.server if tx else cap.client for tx in is_tx], dtype="string[pyarrow]")
        parts.append(df)
        connections.append(
            {
                "connection": cap.number,
                "client": cap.client,
                "server": cap.server,
                "url": cap.url,
                "extensions": cap.extensions,
                "frames": len(df),
            }
        )
    if parts:
        out = pd.concat(parts, ignore_index=True).sort_values("t", kind="stable").reset_index(drop=True)
        for name, dtype in parts[0].dtypes.items():
            if out[name].dtype != dtype and name not in ("fields",):
                out[name] = out[name].astype(dtype)
    else:
        out = empty_timeline()
        out["connection"] = pd.Series([], dtype="int64")
        out["src"] = pd.Series([], dtype="string[pyarrow]")
        out["dst"] = pd.Series([], dtype="string[pyarrow]")
    out.index.name = "frame"
    if len(out):
        times = t_ns(out["t"])
        out["t_rel"] = (times - int(times.min())) / 1e9
    out.attrs = {"source": str(path), "connections": connections, "problems": reader.problems}
    return out
