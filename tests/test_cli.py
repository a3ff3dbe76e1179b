"""The command line: `rawws-nb serve` as a process, `probe` against it, and `demo`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def serve_process():
    port = free_port()
    proc = subprocess.Popen(
        [PY, "-m", "rawws_nb.cli", "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            pytest.fail("rawws-nb serve did not start")
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def probe(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "rawws_nb.cli", "probe", *args], capture_output=True, text=True, timeout=30)


def test_serve_binds_loopback_only(serve_process):
    out = subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout
    lines = [line for line in out.splitlines() if f":{serve_process} " in line]
    assert lines and all("127.0.0.1:" in line for line in lines)


def test_probe_prints_every_frame_in_both_directions(serve_process):
    result = probe(
        f"ws://127.0.0.1:{serve_process}/echo", "--send", "Hello", "--hex", "01020304", "--ping", "--count", "3"
    )
    out = result.stdout
    assert result.returncode == 0, result.stderr
    assert "TX TEXT 'Hello' [5 bytes]" in out
    assert "TX BINARY 01 02 03 04 [4 bytes]" in out
    assert "RX TEXT 'Hello' [5 bytes]" in out
    assert "RX PONG 'probe' [5 bytes]" in out
    assert "             01 02 03 04" in out  # the hex log line under the binary frame
    assert "closed: CloseReason(1000 (NORMAL)" in out


def test_probe_shows_a_violation_and_fails(serve_process):
    result = probe(f"ws://127.0.0.1:{serve_process}/bad/rsv", "--timeout", "2")
    assert result.returncode == 1
    assert "RX TEXT 'about to send: rsv'" in result.stdout
    assert "session ended: session closed: 1002 'rsv bits set" in result.stdout


def test_probe_reports_a_refused_handshake(serve_process):
    result = probe(f"ws://127.0.0.1:{serve_process}/nope")
    assert result.returncode == 2 and "HTTP 404" in result.stderr


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "rawws_nb.cli", *args], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("probe", "http//nowhere"), "cannot connect: not a WebSocket URL"),
        (("probe", "ws://127.0.0.1:9/echo", "--hex", "zz"), "argument --hex: not hex: 'zz'"),
        (("serve", "--port", "70000"), "argument --port: not a TCP port"),
    ],
)
def test_bad_input_gives_one_clear_line_and_exit_2(args, message):
    result = cli(*args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_serve_on_a_port_in_use_says_so(serve_process):
    result = cli("serve", "--port", str(serve_process))
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{serve_process}" in result.stderr and "Traceback" not in result.stderr


def test_demo_help_describes_what_runs():
    result = cli("demo", "--help")
    assert result.returncode == 0 and "Ktor raw-API scenarios" in result.stdout and "seed" not in result.stdout


def test_demo_runs_the_ktor_raw_api_scenarios_offline():
    env = dict(os.environ)
    result = subprocess.run([PY, "-m", "rawws_nb.cli", "demo"], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for title in (
        "manual ping-pong",
        "Direct frame control",
        "1000 messages",
        "Custom heartbeat",
        "Protocol implementation",
        "Low-level debugging",
        "Error handling",
        "Timeline",
    ):
        assert title in out
    assert "Raw frame: PONG 'manual-ping' [11 bytes]" in out
    assert "ping timeout - connection may be dead" in out
