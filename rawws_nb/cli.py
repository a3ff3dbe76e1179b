"""`rawws-nb`: the embedded server, a terminal frame debugger, and the demo.

rawws-nb serve [--host 127.0.0.1] [--port 8765]
rawws-nb probe URL [--send TEXT] [--hex HEX] [--ping] [--count N] [--timeout S]
rawws-nb demo
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from .errors import HandshakeError, SessionClosed
from .frames import Binary, Close, CloseReason, Frame, Ping, Pong, Text


def _stamp() -> str:
    t = time.time()
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"


def describe(direction: str, frame: Frame) -> str:
    """One log line per frame (time, direction, the frame), with a hex line under a
    binary frame, ping or pong that has a payload."""
    head = f"{_stamp()} {direction} {frame!r}"
    if isinstance(frame, (Binary, Ping, Pong)) and frame.data:
        head += "\n" + " " * 13 + frame.data[:64].hex(" ") + (" …" if len(frame.data) > 64 else "")
    return head


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


async def _probe(args: argparse.Namespace) -> int:
    from .connect import web_socket_raw_session

    try:
        session = await web_socket_raw_session(
            args.url, open_timeout=args.timeout, max_message_size=args.max_message_size
        )
    except HandshakeError as exc:
        print(f"handshake failed: {exc}", file=sys.stderr)
        return 2
    except (OSError, TimeoutError) as exc:
        print(f"cannot connect: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # not a ws:// or wss:// URL
        print(f"cannot connect: {exc}", file=sys.stderr)
        return 2
    print(
        f"{_stamp()} connected to {session.url}"
        + (f" (subprotocol {session.subprotocol})" if session.subprotocol else "")
    )
    outgoing: list[Frame] = []
    if args.send is not None:
        outgoing.append(Text(args.send))
    if args.hex is not None:
        outgoing.append(Binary(args.hex))
    if args.ping:
        outgoing.append(Ping(b"probe"))
    for frame in outgoing:
        await session.send(frame)
        print(describe("TX", frame), flush=True)
    received = 0
    code = 0
    try:
        while args.count is None or received < args.count:
            try:
                frame = await asyncio.wait_for(session.incoming.receive(), args.timeout)
            except TimeoutError:
                print(f"{_stamp()} no frame for {args.timeout:g} s", flush=True)
                break
            received += 1
            print(describe("RX", frame), flush=True)
            if isinstance(frame, Close):
                break
    except SessionClosed as exc:
        print(f"{_stamp()} session ended: {exc}", flush=True)
        code = 0 if exc.clean else 1
    await session.close(CloseReason(CloseReason.Codes.NORMAL, "probe done"))
    print(f"{_stamp()} closed: {session.close_reason}", flush=True)
    return code


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port (0-65535): {text!r}")
    return port


def _hex(text: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not hex: {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rawws-nb", description="raw WebSocket toolkit")
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="run the embedded test server")
    p_serve.add_argument("--host", default="127.0.0.1")
    p_serve.add_argument("--port", type=_port, default=8765)
    p_probe = sub.add_parser("probe", help="connect and print every frame")
    p_probe.add_argument("url")
    p_probe.add_argument("--send", help="send a Text frame")
    p_probe.add_argument("--hex", type=_hex, help="send a Binary frame given in hex")
    p_probe.add_argument("--ping", action="store_true", help="send a Ping")
    p_probe.add_argument("--count", type=int, help="stop after N received frames")
    p_probe.add_argument("--timeout", type=float, default=5.0, help="stop when no frame comes for S seconds")
    p_probe.add_argument("--max-message-size", type=int, default=16 << 20)
    demo_text = "run the Ktor raw-API scenarios (ping-pong, fragments, heartbeat, errors) on the embedded server"
    sub.add_parser("demo", help=demo_text, description=demo_text)
    args = parser.parse_args(argv)
    try:
        if args.command == "serve":
            try:
                asyncio.run(_serve(args.host, args.port))
            except OSError as exc:
                print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
                return 2
            return 0
        if args.command == "probe":
            return asyncio.run(_probe(args))
        from .demo import main as demo_main

        return asyncio.run(demo_main())
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
