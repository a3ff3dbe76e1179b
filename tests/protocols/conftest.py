"""Real MQTT peers: Debian's mosquitto (started here on free 127.0.0.1 ports, stopped by
its PID) and the embedded server's `/proto/mqtt` broker, each reachable by rawws_nb and by
paho-mqtt over websockets (an independent client)."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import rawws_nb as rw
from protocols import mqtt

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / ".ci" / "mosquitto" / "mosquitto.conf.in"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"mosquitto exited with {proc.returncode}: {proc.stderr.read().decode() if proc.stderr else ''}"
            )
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"mosquitto did not listen on 127.0.0.1:{port} within {timeout} s")


@dataclass
class Broker:
    """Where an MQTT-over-WebSocket broker listens."""

    name: str
    host: str
    port: int
    path: str

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}{self.path}"


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    binary = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/bin/mosquitto") if Path(p).exists()), None
    )
    if binary is None:
        pytest.fail("mosquitto is not installed: run `make mqtt-deps` (apt-get install -y mosquitto)", pytrace=False)
    ws_port, mqtt_port = _free_port(), _free_port()
    conf = tmp_path_factory.mktemp("mosquitto") / "mosquitto.conf"
    conf.write_text(CONFIG.read_text().format(ws_port=ws_port, mqtt_port=mqtt_port))
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for_port(ws_port, proc)
        yield Broker("mosquitto", "127.0.0.1", ws_port, "/mqtt")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(params=["mosquitto", "embedded"])
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[Broker]:
    if request.param == "mosquitto":
        yield request.getfixturevalue("mosquitto")
        return
    async with rw.serve(host="127.0.0.1", port=0) as server:
        yield Broker("embedded", "127.0.0.1", server.port, "/proto/mqtt")


class Paho:
    """A paho-mqtt client over websockets, its network loop in paho's own thread;
    what it receives lands in `messages` (a thread-safe queue)."""

    def __init__(self, broker: Broker, client_id: str) -> None:
        import paho.mqtt.client as paho

        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, transport="websockets")
        self.client.ws_set_options(path=broker.path)
        self.broker = broker
        self.messages: queue.Queue[Any] = queue.Queue()
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.client.on_message = lambda c, u, msg: self.messages.put(msg)
        self.client.on_connect = lambda c, u, flags, rc, props: self.events.put(("connect", rc))
        self.client.on_subscribe = lambda c, u, mid, rcs, props: self.events.put(("subscribe", (mid, rcs)))
        self.client.on_publish = lambda c, u, mid, rc, props: self.events.put(("publish", mid))

    async def start(self) -> None:
        # connect() blocks on the handshake: off the loop, which may run the broker.
        await asyncio.to_thread(self.client.connect, self.broker.host, self.broker.port, 30)
        self.client.loop_start()
        kind, rc = await self.event()
        assert kind == "connect" and not rc.is_failure, (kind, rc)

    async def event(self, timeout: float = 10) -> tuple[str, Any]:
        return await asyncio.to_thread(self.events.get, True, timeout)

    async def message(self, timeout: float = 10) -> Any:
        return await asyncio.to_thread(self.messages.get, True, timeout)

    async def subscribe(self, topic: str, qos: int) -> None:
        self.client.subscribe(topic, qos)
        kind, (_mid, codes) = await self.event()
        assert kind == "subscribe" and [int(c.value) for c in codes] == [qos], (kind, codes)

    async def stop(self) -> None:
        self.client.disconnect()
        await asyncio.to_thread(self.client.loop_stop)


@pytest.fixture
async def paho_factory(broker: Broker) -> AsyncIterator[Any]:
    clients: list[Paho] = []

    async def make(client_id: str) -> Paho:
        client = Paho(broker, client_id)
        await client.start()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.stop()


class MqttSession:
    """A rawws_nb session speaking MQTT, with a stream decoder for what arrives."""

    def __init__(self, session: rw.RawSession) -> None:
        self.session = session
        self.decoder = mqtt.PROTOCOL.decoder()
        self.pending: list[Any] = []

    async def send(self, frame: rw.Frame) -> None:
        await self.session.send(frame)

    async def packet(self, timeout: float = 10) -> Any:
        """The next MQTT packet (packets split across frames or sharing one are handled)."""
        async with asyncio.timeout(timeout):
            while not self.pending:
                frame = await self.session.incoming.receive()
                if isinstance(frame, rw.Frame.Binary):
                    self.pending += self.decoder.feed(frame.data)
        return self.pending.pop(0)

    async def expect(self, name: str, timeout: float = 10) -> Any:
        packet = await self.packet(timeout)
        assert packet.name == name, packet
        return packet

    async def ended(self, timeout: float = 10) -> rw.Frame | None:
        """Wait until the peer ends the connection: its Close frame, or None when TCP
        dropped without one (mosquitto does that)."""
        async with asyncio.timeout(timeout):
            while True:
                try:
                    frame = await self.session.incoming.receive()
                except rw.SessionClosed:
                    return None
                if isinstance(frame, rw.Frame.Close):
                    await self.session.close()
                    return frame


@pytest.fixture
async def mqtt_factory(broker: Broker) -> AsyncIterator[Any]:
    sessions: list[MqttSession] = []

    async def make(client_id: str, *, connect: bool = True) -> MqttSession:
        session = await rw.web_socket_raw_session(broker.url, subprotocols=["mqtt"], protocol=mqtt.PROTOCOL)
        assert session.subprotocol == "mqtt"
        client = MqttSession(session)
        sessions.append(client)
        if connect:
            await client.send(mqtt.connect(client_id, keep_alive=30))
            connack = await client.expect("connack")
            assert connack.fields == {"session_present": False, "return_code": "accepted"}
        return client

    yield make
    for client in sessions:
        with contextlib.suppress(rw.RawWsError, TimeoutError):
            await asyncio.wait_for(client.session.close(), 5)
