"""Headless Chromium's own `WebSocket` through the relay to the embedded server: the
browser is an independent client that offers permessage-deflate, so each leg negotiates
compression, hooks see inflated text, and the timeline shows both legs. Playwright's
async API drives Debian's chromium (never a downloaded browser)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json

import pytest
from playwright.async_api import async_playwright

import rawws_nb as rw
from rawws_nb.relay import rewrite_text

from .lab import CHROMIUM_ARGS

pytestmark = pytest.mark.timeout(90)

PAGE_SCRIPT = """
async (url) => {
  const events = [];
  const ws = new WebSocket(url, ["chat.v1"]);
  ws.binaryType = "arraybuffer";
  const done = new Promise((resolve) => {
    ws.onopen = () => {
      events.push({open: ws.protocol, extensions: ws.extensions});
      ws.send("hello 123 from chromium");
      ws.send(new Uint8Array([1, 2, 3, 250]));
    };
    ws.onmessage = (e) => {
      events.push(typeof e.data === "string" ? {text: e.data} : {binary: Array.from(new Uint8Array(e.data))});
      if (events.length === 3) ws.close(4000, "bye from chromium");
    };
    ws.onclose = (e) => { events.push({close: e.code, reason: e.reason, clean: e.wasClean}); resolve(events); };
  });
  return await done;
}
"""


async def page_server():
    """A loopback HTTP server for the page: Chromium lets a page reach loopback WebSockets
    when the page itself comes from loopback (not from about:blank)."""

    async def answer(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        body = b"<!doctype html><title>relay test page</title><p>relay test page</p>"
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n" % len(body))
        writer.write(b"Connection: close\r\n\r\n" + body)
        await writer.drain()
        writer.close()

    return await asyncio.start_server(answer, "127.0.0.1", 0)


async def scenario(chromium):
    pages = await page_server()
    page_url = f"http://127.0.0.1:{pages.sockets[0].getsockname()[1]}/"
    async with pages, rw.serve() as server, rw.relay(server.url, on_frame=rewrite_text(r"\d+", "<n>", "down")) as relay:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS, headless=True)
            try:
                page = await browser.new_page()
                await page.goto(page_url)
                events = await page.evaluate(PAGE_SCRIPT, relay.url + "/echo")
            finally:
                await browser.close()
        await relay.flows[0].wait_closed()
    return events, relay


def test_chromium_websocket_through_the_relay(chromium):
    # Its own thread and event loop: the package's sync-Playwright fixtures may keep a loop
    # running on the main thread (see conftest.py).
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        events, relay = pool.submit(asyncio.run, scenario(chromium)).result(timeout=80)
    print(json.dumps(events))
    assert events[0]["open"] == "chat.v1"  # the embedded server picks the first offered
    assert "permessage-deflate" in events[0]["extensions"]
    assert events[1] == {"text": "hello <n> from chromium"}  # rewritten on the way down
    assert events[2] == {"binary": [1, 2, 3, 250]}
    assert events[3] == {"close": 4000, "reason": "", "clean": True}

    flow = relay.flows[0]
    assert flow.client.extensions and flow.upstream.extensions  # negotiated on each leg
    df = relay.timeline
    frames = df[df.error.isna()]
    for leg, direction in [("client", "rx"), ("upstream", "tx"), ("upstream", "rx"), ("client", "tx")]:
        rows = frames[(frames.leg == leg) & (frames.dir == direction)]
        assert list(rows.opcode) == ["text", "binary", "close"], (leg, direction)
    texts = frames[frames.opcode == "text"]
    assert list(texts.text) == ["hello 123 from chromium"] * 3 + ["hello <n> from chromium"]
    data = frames[frames.opcode.isin(["text", "binary"])]
    assert data.compressed.all()  # Chromium compressed, the relay inflated and compressed anew
