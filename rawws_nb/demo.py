"""`rawws-nb demo` (`make demo`): the Ktor raw-API scenarios, end to end, on the embedded server.

Each scenario is one example of Ktor's raw WebSocket API (`webSocketRawSession`,
`webSocketRaw`, `wsRaw`) written with rawws_nb: manual ping-pong, direct frame control,
1000 messages, a custom heartbeat, a version-negotiating protocol, low-level logging and
error handling. tests/test_seed_examples.py runs the same scenarios as tests.
"""

from __future__ import annotations

import asyncio
import time

from .connect import web_socket_raw, web_socket_raw_session, ws_raw
from .errors import SessionClosed
from .frames import CloseReason, Frame
from .server import serve
from .session import RawSession


def _title(text: str) -> None:
    print(f"\n== {text} ==", flush=True)


async def manual_ping_pong(url: str) -> None:
    _title("webSocketRawSession: manual ping-pong")
    session = await web_socket_raw_session(url + "/echo")
    try:
        await session.send(Frame.Ping(b"manual-ping"))
        frame = await session.incoming.receive()
        print(f"Raw frame: {frame}")
    finally:
        await session.close()


async def direct_frame_control(url: str) -> RawSession:
    _title("Direct frame control: ping, fragments, binary, custom close")
    async with web_socket_raw(url + "/echo") as session:
        await session.send(Frame.Ping(b"custom-ping-data"))
        await session.send(Frame.Text(fin=False, data=b"Part 1 "))
        await session.send(Frame.Text(fin=False, data=b"Part 2 "))
        await session.send(Frame.Text(fin=True, data=b"Part 3"))
        await session.send(Frame.Binary(fin=True, data=bytes([1, 2, 3, 4, 5])))
        await session.send(Frame.Close(CloseReason(CloseReason.Codes.NORMAL, "Custom close")))
        async for frame in session.incoming:
            print(f"  RX {frame}")
            if isinstance(frame, Frame.Close):
                break
    return session


async def thousand_messages(url: str) -> None:
    _title("Performance: 1000 messages, send and await each echo")

    async def block(session: RawSession) -> None:
        start = time.perf_counter()
        for i in range(1000):
            await session.send(Frame.Text(f"Message {i}"))
            await session.incoming.receive()
        elapsed = (time.perf_counter() - start) * 1000
        print(f"1000 messages in {elapsed:.0f}ms")

    await web_socket_raw(url + "/echo", block=block)


async def custom_heartbeat(url: str) -> None:
    _title("Custom heartbeat with pong timeout")
    for path, label in (("/echo", "echo server answers pings"), ("/sink", "sink never answers")):
        async with ws_raw(url + path) as session:
            counter = 0
            for _ in range(3):
                counter += 1
                try:
                    rtt = await session.ping(f"ping-{counter}", timeout=0.5)
                    print(f"  {label}: pong for ping-{counter} after {rtt * 1000:.2f} ms")
                except TimeoutError:
                    print(f"  {label}: ping timeout - connection may be dead; closing with GOING_AWAY")
                    await session.close(CloseReason(CloseReason.Codes.GOING_AWAY, "Ping timeout"))
                    break
                await asyncio.sleep(0.05)


async def protocol_negotiation(url: str) -> None:
    _title("Protocol implementation: version bytes 01 00, then [type:1][length:4][payload]")
    async with ws_raw(url + "/echo") as session:
        await session.send(Frame.Binary(True, bytes([0x01, 0x00])))
        version = await session.incoming.receive()
        if isinstance(version, Frame.Binary) and version.data[0] == 0x01:
            print("Protocol v1.0 negotiated (the echo path answers with the same bytes)")
        payload = b"Hello Custom Protocol"
        custom = bytes([0x10]) + len(payload).to_bytes(4, "big") + payload
        await session.send(Frame.Binary(True, custom))
        echoed = await session.incoming.receive()
        print(f"  custom frame: {echoed}")


async def low_level_debugging(url: str) -> None:
    _title("Low-level debugging: log every frame in hex")
    async with ws_raw(url + "/ping?n=1&interval=0.05") as session:

        async def log_frames() -> None:
            async for frame in session.incoming:
                if isinstance(frame, Frame.Text):
                    print(f"  RX Text: {frame.read_text()} (fin={frame.fin}, len={len(frame.data)})")
                elif isinstance(frame, Frame.Binary):
                    print(f"  RX Binary: fin={frame.fin}, len={len(frame.data)} data={frame.data.hex(' ')}")
                elif isinstance(frame, Frame.Ping):
                    print(f"  RX Ping: {frame.data.hex(' ')}")
                    await session.send(Frame.Pong(frame.data))
                    print(f"  TX Pong: {frame.data.hex(' ')}")
                elif isinstance(frame, Frame.Pong):
                    print(f"  RX Pong: {frame.data.hex(' ')}")
                elif isinstance(frame, Frame.Close):
                    reason = frame.read_reason()
                    print(f"  RX Close: code={reason and reason.code}, message='{reason and reason.message}'")
                    break

        task = session.launch(log_frames())
        await asyncio.sleep(0.3)
        await session.send(Frame.Close(CloseReason(CloseReason.Codes.NORMAL, "Debug complete")))
        print("  TX Close: Normal")
        await asyncio.wait_for(task, 5)


async def error_handling(url: str) -> None:
    _title("Error handling: server closes, server drops, protocol violation")
    for path in ("/close?code=1001&reason=maintenance", "/bad/drop", "/bad/utf8"):
        async with ws_raw(url + path) as session:
            try:
                async with asyncio.timeout(5):
                    async for frame in session.incoming:
                        if isinstance(frame, Frame.Close):
                            reason = frame.read_reason()
                            print(f"  {path}: server closed: {reason}")
                            await session.close()
                            break
            except TimeoutError:
                await session.close(CloseReason(CloseReason.Codes.GOING_AWAY, "Client timeout"))
            except SessionClosed as exc:
                print(f"  {path}: raw WebSocket error: {exc}")
                await session.close(CloseReason(CloseReason.Codes.INTERNAL_ERROR, "Client error"))


async def main() -> int:
    async with serve() as server:
        print(f"embedded server at {server.url}")
        await manual_ping_pong(server.url)
        session = await direct_frame_control(server.url)
        await thousand_messages(server.url)
        await custom_heartbeat(server.url)
        await protocol_negotiation(server.url)
        await low_level_debugging(server.url)
        await error_handling(server.url)
        _title("Timeline of the direct-frame-control session")
        df = session.timeline
        print(df[["t_rel", "dir", "opcode", "fin", "length", "text", "close_code", "message"]].to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
