"""The sync facade: blocking calls from other threads, a clear error on the loop's own
thread, a background loop for plain scripts, and the nest-asyncio2 opt-in (in a
subprocess: it patches asyncio for the whole process)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import rawws_nb as rw
from rawws_nb import Frame, SessionState, sync


@pytest.fixture
async def session(server):
    s = await rw.web_socket_raw_session(server.url + "/echo", close_timeout=2)
    yield s
    await s.close()


async def test_sync_calls_from_another_thread(session):
    def work():
        sync.send_sync(session, "sync hello", timeout=5)
        echo = sync.receive_sync(session, timeout=5)
        rtt = sync.ping_sync(session, b"sync-ping", timeout=5)
        pong = sync.receive_sync(session, timeout=5)
        sync.send_raw_sync(session, rw.encode_frame(1, b"raw text"), timeout=5)
        raw_echo = sync.receive_sync(session, timeout=5)
        sync.close_sync(session, timeout=5)
        return echo, rtt, pong, raw_echo, threading.get_ident()

    echo, rtt, pong, raw_echo, worker = await asyncio.to_thread(work)
    assert worker != threading.get_ident()
    assert echo == Frame.Text("sync hello") and pong == Frame.Pong(b"sync-ping") and 0 < rtt < 5
    assert raw_echo == Frame.Text("raw text")
    assert session.state is SessionState.CLOSED


async def test_receive_timeout_from_a_thread(server):
    s = await rw.web_socket_raw_session(server.url + "/sink", close_timeout=1)
    with pytest.raises(TimeoutError, match="receive_sync"):
        await asyncio.to_thread(sync.receive_sync, s, 0.1)
    await s.close()


@pytest.mark.filterwarnings("error::RuntimeWarning")
async def test_on_the_loop_thread_the_error_says_await(session):
    assert not sync.nested_enabled()
    with pytest.raises(sync.SyncOnLoopError, match="await") as err:
        sync.send_sync(session, "blocked")
    assert "enable_nested" in str(err.value)
    assert isinstance(err.value, RuntimeError)
    with pytest.raises(sync.SyncOnLoopError):
        sync.connect_sync(session.url)  # the home loop would be this running loop
    assert session.recorder.total == 0


def test_plain_script_uses_a_background_loop():
    """No loop in this thread: the server and the session live on the background loop."""
    try:
        server = sync.serve_sync()
        session = sync.connect_sync(server.url + "/echo", timeout=5)
        assert session.loop is sync.background_loop()
        sync.send_sync(session, Frame.Binary(b"\x01\x02"))
        assert sync.receive_sync(session, timeout=5) == Frame.Binary(b"\x01\x02")
        sync.close_sync(session, timeout=5)
        sync.run_sync(sync.background_loop(), server.close(), timeout=5)
    finally:
        sync.stop_background_loop()
    with pytest.raises(TypeError):
        sync.run_sync(object(), asyncio.sleep(0))


def test_enable_nested_allows_sync_calls_on_the_loop_thread():
    script = textwrap.dedent(
        """
        import asyncio
        import rawws_nb as rw
        from rawws_nb import sync

        async def main():
            server = await rw.serve()
            session = await rw.web_socket_raw_session(server.url + "/echo")
            try:
                sync.send_sync(session, "x")
            except sync.SyncOnLoopError:
                print("refused before opt-in")
            sync.enable_nested()
            sync.send_sync(session, "nested hello")
            print(sync.receive_sync(session, timeout=5).read_text())
            print(round(sync.ping_sync(session, b"n", timeout=5), 1))
            other = sync.connect_sync(server.url + "/echo", timeout=5)
            print(other.loop is session.loop)
            sync.close_sync(other)
            await session.close()
            await server.close()

        asyncio.run(main())
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:4] == ["refused before opt-in", "nested hello", "0.0", "True"]


async def test_ping_timeout_from_a_thread_is_the_pings_own(server):
    """The ping's own time-out propagates as the session raised it: it is not turned
    into ping_sync's wait time-out (timeout + 1 s)."""
    s = await rw.web_socket_raw_session(server.url + "/sink", close_timeout=1)
    try:
        start = time.monotonic()
        with pytest.raises(TimeoutError) as err:
            await asyncio.to_thread(sync.ping_sync, s, b"nobody", 0.2)
        assert time.monotonic() - start < 1.0
        assert "did not finish within" not in str(err.value)
    finally:
        await s.close()
