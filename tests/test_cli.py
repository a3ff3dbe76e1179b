"""The command line as real processes: `rawws-nb serve` in a process, `probe` and
`connect` against it, every flag, every bad input (one line on stderr, no traceback,
non-zero exit), `--version` and `demo`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rawws_nb import __version__

PY = sys.executable
ENV = {**os.environ, "NO_COLOR": ""}


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


@pytest.fixture(scope="module")
def url(serve_process):
    return f"ws://127.0.0.1:{serve_process}"


def cli(*args: str, stdin: str | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "rawws_nb.cli", *args], capture_output=True, text=True, timeout=timeout, input=stdin
    )


def probe(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    return cli("probe", *args, **kw)


def frame_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if " TX " in line or " RX " in line]


def test_serve_binds_loopback_only(serve_process):
    out = subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout
    lines = [line for line in out.splitlines() if f":{serve_process} " in line]
    assert lines and all("127.0.0.1:" in line for line in lines)


def test_version():
    result = cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"rawws-nb {__version__}"


def test_probe_prints_every_frame_both_ways_with_both_closes(url):
    start = time.monotonic()
    result = probe(f"{url}/echo", "--send", "Hello", "--hex", "01020304", "--ping")
    elapsed = time.monotonic() - start
    assert result.returncode == 0, result.stderr
    lines = frame_lines(result.stdout)
    kinds = [" ".join(line.split()[1:4]) for line in lines]
    assert kinds[:3] == ["→ TX TEXT", "→ TX BINARY", "→ TX PING"]
    assert "← RX TEXT" in kinds and "← RX BINARY" in kinds and "← RX PONG" in kinds
    assert kinds[-2:] == ["→ TX CLOSE", "← RX CLOSE"], "its own Close and the peer's"
    assert "'Hello'" in lines[0] and "01 02 03 04" in lines[1] and "'probe'" in lines[2]
    assert lines[-1].endswith("1000 NORMAL")
    assert "ping 'probe': round trip " in result.stdout and " ms" in result.stdout
    assert "closing handshake done: 1000 NORMAL" in result.stdout
    # µs times since the opening handshake
    assert all(line.split()[0].startswith("+") and len(line.split()[0].split(".")[1]) == 6 for line in lines)
    assert elapsed < 5, f"probe returns when the closing handshake ends ({elapsed:.1f} s)"


def test_probe_shows_the_wire_opcode_of_continuations(url):
    result = probe(f"{url}/fragments", "--wait", "0.5")
    assert result.returncode == 0, result.stderr
    lines = frame_lines(result.stdout)
    assert "← RX TEXT" in lines[0] and "'Part 1 '" in lines[0] and " ... " in lines[0]
    assert "← RX CONTINUATION" in lines[1] and "'Part 2 '" in lines[1]
    assert any("← RX PING" in line for line in lines), "the ping between fragments"


def test_probe_wait_is_an_idle_wait(url):
    start = time.monotonic()
    result = probe(f"{url}/ping", "--answer-pings", "--wait", "1.0")
    elapsed = time.monotonic() - start
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "← RX PING" in out and "→ TX PONG" in out, "--answer-pings answers each Ping"
    assert "received after" in out  # the server saw the pongs
    assert elapsed < 15


def test_probe_without_answer_pings_sends_no_pong(url):
    result = probe(f"{url}/ping", "--count", "2")
    assert result.returncode == 0, result.stderr
    assert "← RX PING" in result.stdout and "TX PONG" not in result.stdout


def test_probe_count(url):
    result = probe(f"{url}/fragments", "--count", "2")
    lines = frame_lines(result.stdout)
    assert result.returncode == 0 and len([line for line in lines if " RX " in line]) >= 2


def test_probe_close_code_and_reason(url):
    result = probe(f"{url}/echo", "--close", "4001:going home")
    assert result.returncode == 0, result.stderr
    closes = [line for line in frame_lines(result.stdout) if "CLOSE" in line]
    assert "→ TX CLOSE" in closes[0] and "4001 'going home'" in closes[0]
    assert "← RX CLOSE" in closes[1] and "4001" in closes[1]


def test_probe_peer_close_is_shown_and_answered(url):
    result = probe(f"{url}/close?code=4002&reason=bye", "--wait", "2")
    assert result.returncode == 0, result.stderr
    closes = [line for line in frame_lines(result.stdout) if "CLOSE" in line]
    assert "← RX CLOSE" in closes[0] and "4002 'bye'" in closes[0]
    assert "→ TX CLOSE" in closes[1] and "4002" in closes[1]


def test_probe_headers_and_subprotocol(url):
    result = probe(f"{url}/echo", "-H", "X-Trace: abc", "--header", "X-Other: 1", "--subprotocol", "chat")
    assert result.returncode == 0, result.stderr
    assert "subprotocol chat" in result.stdout


def test_probe_hexdump(url):
    result = probe(f"{url}/echo", "--send", "héllo", "--hexdump")
    assert result.returncode == 0, result.stderr
    assert "00000000  68 c3 a9 6c 6c 6f" in result.stdout and "|h..llo|" in result.stdout


def test_probe_json_is_one_object_per_frame_with_timeline_columns(url):
    import rawws_nb as rw

    result = probe(f"{url}/fragments", "--json", "--wait", "0.5")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows, "frames on stdout"
    timeline_columns = set(rw.timeline.COLUMNS)
    assert all(set(row) == set(rows[0]) for row in rows)
    assert set(rows[0]) <= timeline_columns | {"compressed", "inflated_length"}
    assert {"t", "t_rel", "dir", "opcode", "fin", "length", "payload", "close_code"} <= set(rows[0])
    assert rows[0]["opcode"] == "text" and rows[0]["fin"] is False and rows[1]["opcode"] == "continuation"
    assert bytes.fromhex(rows[0]["payload"]) == b"Part 1 "
    assert rows[-1]["opcode"] == "close" and rows[-1]["dir"] == "rx"
    assert "connected to" in result.stderr, "notes go to stderr in JSON mode"


def test_probe_colour_on_request(url):
    result = probe(f"{url}/echo", "--send", "x", "--color", "always")
    assert "\033[34m" in result.stdout and "\033[32m" in result.stdout
    assert "\033[" not in probe(f"{url}/echo", "--send", "x").stdout, "no colour when not a TTY"


def test_probe_shows_a_violation_and_fails(url):
    result = probe(f"{url}/bad/rsv", "--wait", "2")
    assert result.returncode == 1
    assert "← RX TEXT" in result.stdout and "'about to send: rsv'" in result.stdout
    assert "error: rsv bits set" in result.stdout
    assert "→ TX CLOSE" in result.stdout and "1002 PROTOCOL_ERROR" in result.stdout
    assert "session ended: 1002" in result.stdout


def test_connect_interactive(url):
    lines = "hello\n/ping abc\n/hex 01 ff\n//slash\n/bogus\n/hex zz\n/close 4000 see you\n"
    result = cli("connect", f"{url}/echo", stdin=lines)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "→ TX TEXT" in out and "'hello'" in out
    assert "→ TX PING" in out and "← RX PONG" in out and "ping 'abc': round trip" in out
    assert "→ TX BINARY" in out and "01 ff" in out
    assert "'/slash'" in out
    assert "4000 'see you'" in out and "closing handshake done: 4000" in out
    errors = result.stderr.strip().splitlines()
    assert errors == [
        "rawws-nb: unknown command /bogus (/ping, /pong, /hex, /close, /help; //text sends '/text')",
        "rawws-nb: not hex: 'zz' ('z' at position 0 is not a hex digit)",
    ]


def test_connect_eof_closes_normally(url):
    result = cli("connect", f"{url}/echo", "--json", stdin="x\n")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["dir"], r["opcode"]) for r in rows] == [("tx", "text"), ("rx", "text"), ("tx", "close"), ("rx", "close")]
    assert rows[2]["close_code"] == 1000


def test_connect_ends_when_the_peer_closes():
    port = free_port()
    srv = subprocess.Popen([PY, "-m", "rawws_nb.cli", "serve", "--port", str(port)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        proc = subprocess.Popen(
            [PY, "-m", "rawws_nb.cli", "connect", f"ws://127.0.0.1:{port}/close?code=4002&reason=go"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        out, err = proc.communicate(timeout=20)  # stdin stays open until communicate closes it
        assert proc.returncode == 0, err
        assert "← RX CLOSE" in out and "4002 'go'" in out and "closing handshake done: 4002 'go'" in out
    finally:
        srv.terminate()
        srv.wait(10)


BAD_INPUT = [
    (("probe", "localhost:8765/echo"), "not a WebSocket URL: 'localhost:8765/echo' has no scheme"),
    (("probe", "http://127.0.0.1:9/echo"), "http:// is not a WebSocket URL: use ws://127.0.0.1:9/echo"),
    (("probe", "https://example.org/"), "https:// is not a WebSocket URL: use wss://example.org/"),
    (("probe", "ftp://x/"), "not a WebSocket URL (ws:// or wss://)"),
    (("probe", "ws:///x"), "no host in 'ws:///x'"),
    (("probe", "ws://127.0.0.1:99999/"), "bad URL"),
    (("probe", "ws://127.0.0.1:9/echo", "--hex", "zz"), "argument --hex: not hex: 'zz'"),
    (("probe", "ws://127.0.0.1:9/echo", "--hex", "abc"), "odd number of hex digits"),
    (("probe", "ws://127.0.0.1:9/echo", "--close", "1005"), "close code 1005 may not be sent"),
    (("probe", "ws://127.0.0.1:9/echo", "--close", "abc"), "not a close code: 'abc'"),
    (("probe", "ws://127.0.0.1:9/echo", "--close", "1000:" + "x" * 124), "close reason too long"),
    (("probe", "ws://127.0.0.1:9/echo", "-H", "nocolon"), "not a header: 'nocolon'"),
    (("probe", "ws://127.0.0.1:9/echo", "-H", "bad name: v"), "not a header"),
    (("probe", "ws://127.0.0.1:9/echo", "--ping", "x" * 126), "a Ping payload is at most 125 bytes"),
    (("probe", "ws://127.0.0.1:9/echo", "--wait", "-1"), "not a number of seconds"),
    (("probe", "ws://127.0.0.1:9/echo", "--count", "0"), "not a positive count"),
    (("probe", "ws://127.0.0.1:9/echo", "--timeout", "nan"), "not a number of seconds"),
    (("probe", "ws://127.0.0.1:9/echo", "--bogus"), "unrecognized arguments: --bogus"),
    (("probe",), "the following arguments are required: url"),
    (("nonsense",), "invalid choice: 'nonsense'"),
    (("serve", "--port", "70000"), "argument --port: not a TCP port"),
    (("probe", "ws://127.0.0.1:1/echo", "--timeout", "3"), "cannot connect to ws://127.0.0.1:1/echo"),
    (("probe", "ws://nonexistent.invalid/echo", "--timeout", "5"), "cannot connect to ws://nonexistent.invalid/echo"),
    (("connect", "http://127.0.0.1:9/"), "http:// is not a WebSocket URL"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUT, ids=[" ".join(a)[:60] for a, _ in BAD_INPUT])
def test_bad_input_gives_one_clear_line_and_a_non_zero_exit(args, message):
    result = cli(*args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_refused_handshake(url):
    result = probe(f"{url}/nope")
    assert result.returncode == 2 and "handshake failed" in result.stderr and "HTTP 404" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_serve_on_a_port_in_use_says_so(serve_process):
    result = cli("serve", "--port", str(serve_process))
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{serve_process}" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_help_texts_name_every_flag():
    out = cli("probe", "--help").stdout
    for flag in (
        "--send",
        "--hex",
        "--ping",
        "--header",
        "--subprotocol",
        "--close",
        "--answer-pings",
        "--json",
        "--hexdump",
        "--wait",
        "--count",
        "--color",
    ):
        assert flag in out, flag
    assert "/ping [data]" in cli("connect", "--help").stdout


def test_demo_help_describes_what_runs():
    result = cli("demo", "--help")
    assert result.returncode == 0 and "Ktor raw-API scenarios" in result.stdout and "seed" not in result.stdout


def test_demo_runs_the_ktor_raw_api_scenarios_offline():
    result = cli("demo", timeout=120)
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


# -- rawws-nb pcap ---------------------------------------------------------------------------

CAPTURE = Path(__file__).resolve().parent.parent / "notebooks" / "data" / "websockets-echo.pcap"


def test_pcap_prints_every_frame_of_a_real_capture():
    result = cli("pcap", str(CAPTURE))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("connection 0: 127.0.0.1:") and "permessage-deflate" in lines[0]
    frames = [line for line in lines if "→ TX" in line or "← RX" in line]
    assert len(frames) == 50 and "CONTINUATION" in result.stdout and "PONG" in result.stdout


def test_pcap_json_and_parquet(tmp_path):
    result = cli("pcap", str(CAPTURE), "--json")
    assert result.returncode == 0
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 50 and {"connection", "src", "dst", "compressed", "inflated_length"} <= set(rows[0])
    out = tmp_path / "capture.parquet"
    result = cli("pcap", str(CAPTURE), "--to", str(out))
    assert result.returncode == 0 and "50 frames saved" in result.stderr
    import rawws_nb as rw

    assert len(rw.read_timeline(out)) == 50


@pytest.mark.parametrize(
    ("content", "words"),
    [(None, "no such file"), (b"definitely not a capture", "not a pcap or pcapng file")],
)
def test_pcap_bad_input_is_one_line_and_exit_2(tmp_path, content, words):
    path = tmp_path / "input.pcap"
    if content is not None:
        path.write_bytes(content)
    result = cli("pcap", str(path))
    assert result.returncode == 2 and words in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
