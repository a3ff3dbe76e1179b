"""Echo servers for the benchmarks, each run in its own process.

* `picows`: a WebSocket server echoing every data frame as it came (same opcode, same
  fin), answering Ping with Pong and Close with Close. Written against picows's
  callback API, so the server is not what limits a client.
* `websockets`: the fallback when picows is missing (echoes whole messages).
* `tcp`: a plain asyncio `Protocol` that writes back whatever it reads: the floor.

Run `python -m benchmarks.echo_servers KIND`: the process prints `PORT <n>` once it
listens on 127.0.0.1 (ephemeral port) and serves until stdin closes or it is killed.
`start_server(kind)` does that from another process and returns a handle.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from dataclasses import dataclass

__all__ = [
    "FLOOD_FRAME",
    "FLOOD_PAYLOAD",
    "FLOOD_TRIGGER",
    "ServerProcess",
    "flood_bytes",
    "picows_available",
    "start_server",
]

MAX_FRAME = 64 * 2**20
FLOOD_TRIGGER = b"FLOOD "  # a Text message "FLOOD n": the server sends n FLOOD_FRAMEs at once
FLOOD_PAYLOAD = b"f" * 16
FLOOD_FRAME = bytes((0x81, len(FLOOD_PAYLOAD))) + FLOOD_PAYLOAD  # an unmasked 16-byte Text frame
_flood_cache: dict[int, bytes] = {}


def flood_bytes(n: int) -> bytes:
    """n flood frames, built once per n."""
    data = _flood_cache.get(n)
    if data is None:
        data = _flood_cache[n] = FLOOD_FRAME * n
    return data


def picows_available() -> bool:
    try:
        import picows  # noqa: F401
    except ImportError:
        return False
    return True


# -- the servers (run inside the child process) ---------------------------------------


async def _serve_picows() -> int:
    import picows
    from picows import WSMsgType

    class Echo(picows.WSListener):
        def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
            kind = frame.msg_type
            if kind == WSMsgType.TEXT and frame.fin:
                data = frame.get_payload_as_bytes()
                if data.startswith(FLOOD_TRIGGER):
                    # The flood test: n pre-built frames in one write, so the server is
                    # never what limits a client's receive path.
                    transport.underlying_transport.write(flood_bytes(int(data[len(FLOOD_TRIGGER) :])))
                    return
            if kind == WSMsgType.PING:
                transport.send_pong(frame.get_payload_as_bytes())
            elif kind == WSMsgType.CLOSE:
                # Echo the Close payload as it came (send_close() would put 1005 on the wire
                # when the client's Close had no code).
                transport.send(WSMsgType.CLOSE, frame.get_payload_as_bytes())
                transport.disconnect()
            elif kind != WSMsgType.PONG:
                transport.send(kind, frame.get_payload_as_memoryview(), frame.fin)

        # The echo buffers what the client does not read yet (one bulk message at most).
        def pause_writing(self) -> None:
            pass

        def resume_writing(self) -> None:
            pass

    server = await picows.ws_create_server(
        lambda request: Echo(),
        "127.0.0.1",
        0,
        enable_auto_pong=False,
        max_frame_size=MAX_FRAME,
        read_buffer_init_size=256 * 1024,
    )
    return server.sockets[0].getsockname()[1]


async def _serve_websockets() -> int:
    from websockets.asyncio.server import serve

    async def echo(ws):  # type: ignore[no-untyped-def]
        async for message in ws:
            await ws.send(message)

    server = await serve(echo, "127.0.0.1", 0, compression=None, max_size=None, ping_interval=None)
    return server.sockets[0].getsockname()[1]


class _TcpEcho(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.write = transport.write  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        if data.startswith(FLOOD_TRIGGER):  # the flood test's floor: the same bytes, unframed
            self.write(flood_bytes(int(data[len(FLOOD_TRIGGER) :])))
            return
        self.write(data)


async def _serve_websockets_deflate() -> int:
    """The websockets library's echo server with permessage-deflate (for compressed tests),
    compressing at zlib level 1 so that its own compression is not what limits a client."""
    from websockets.asyncio.server import serve
    from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory

    async def echo(ws):  # type: ignore[no-untyped-def]
        async for message in ws:
            await ws.send(message)

    fast = ServerPerMessageDeflateFactory(compress_settings={"level": 1, "memLevel": 8})
    server = await serve(echo, "127.0.0.1", 0, compression=None, extensions=[fast], max_size=None, ping_interval=None)
    return server.sockets[0].getsockname()[1]


async def _serve_rawws() -> int:
    """rawws_nb's own embedded server ("/" echoes): the scaling test's peer."""
    import rawws_nb as rw

    server = await rw.serve("127.0.0.1", 0)
    return server.port


async def _serve_tcp() -> int:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_TcpEcho, "127.0.0.1", 0)
    return server.sockets[0].getsockname()[1]


SERVERS = {
    "picows": _serve_picows,
    "websockets": _serve_websockets,
    "websockets-deflate": _serve_websockets_deflate,
    "rawws": _serve_rawws,
    "tcp": _serve_tcp,
}


async def _main(kind: str) -> None:
    port = await SERVERS[kind]()
    if kind == "picows":
        # The TCP floor served by the same process and event loop as the WebSocket echo:
        # both then share one placement on the CPUs, so their ratio measures the protocol.
        print(f"PORT {port} {await _serve_tcp()}", flush=True)
    else:
        print(f"PORT {port}", flush=True)
    loop = asyncio.get_running_loop()
    # Serve until the parent closes our stdin (or kills us).
    await loop.run_in_executor(None, sys.stdin.read)


# -- the handle used by the runner ---------------------------------------------------


@dataclass
class ServerProcess:
    kind: str
    port: int
    process: subprocess.Popen[str]
    tcp_port: int | None = None  # the TCP echo in the same process (picows)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    def stop(self) -> None:
        proc = self.process
        if proc.poll() is None:
            with contextlib.suppress(Exception):
                assert proc.stdin is not None
                proc.stdin.close()
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=3)


def start_server(kind: str) -> ServerProcess:
    """Start `kind` in a new process; returns once it listens."""
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.echo_servers", kind],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=root,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"{kind} echo server failed to start (got {line!r})")
    ports = [int(p) for p in line.split()[1:]]
    return ServerProcess(kind, ports[0], proc, ports[1] if len(ports) > 1 else None)


if __name__ == "__main__":
    kind = sys.argv[1] if len(sys.argv) > 1 else "picows"
    if kind not in SERVERS:
        raise SystemExit(f"unknown server {kind!r}; one of {', '.join(SERVERS)}")
    try:  # the servers on uvloop when it is installed (as picows's own benchmarks run)
        import uvloop

        run = uvloop.run
    except ImportError:
        run = asyncio.run
    with contextlib.suppress(KeyboardInterrupt):
        run(_main(kind))
