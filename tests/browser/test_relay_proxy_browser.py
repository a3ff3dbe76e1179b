"""Headless Chromium with the relay as its HTTP proxy (`--proxy-server`, and
`--proxy-bypass-list=<-loopback>` so loopback goes through the proxy too): the page
itself is loaded through the proxy (an absolute-form GET, forwarded as plain HTTP), then
the page's own `WebSocket`s to the embedded server go through it: ws:// as a CONNECT
tunnel with plain HTTP inside, wss:// as a CONNECT tunnel whose TLS the relay terminates
with a certificate from `relay.ca` (Chromium accepts it through
`--ignore-certificate-errors-spki-list` with the CA's SPKI hash, which is in the chain the
relay presents). Both legs of both flows are checked in the relay's timeline."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import hashlib
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from playwright.async_api import async_playwright

import rawws_nb as rw
from rawws_nb.relay import LocalCA

from .lab import CHROMIUM_ARGS
from .test_relay_browser import page_server

pytestmark = pytest.mark.timeout(90)

PAGE_SCRIPT = """
async (url) => {
  const events = [];
  const ws = new WebSocket(url);
  const done = new Promise((resolve) => {
    ws.onopen = () => { events.push({open: url}); ws.send("hello from chromium via " + url.split(":")[0]); };
    ws.onmessage = (e) => { events.push({text: e.data}); ws.close(4001, "done"); };
    ws.onerror = () => events.push({error: true});
    ws.onclose = (e) => { events.push({close: e.code, clean: e.wasClean}); resolve(events); };
  });
  return await done;
}
"""


def spki_hash(cert_pem: bytes) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo)): what --ignore-certificate-errors-spki-list takes."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


async def scenario(chromium):
    upstream_ca = LocalCA("upstream test CA")  # the embedded wss server's CA; the relay trusts it
    pages = await page_server()
    page_url = f"http://127.0.0.1:{pages.sockets[0].getsockname()[1]}/"
    async with (
        pages,
        rw.serve() as plain,
        rw.serve(tls=upstream_ca.server_context("127.0.0.1")) as secure,
        rw.relay(None, upstream_tls=upstream_ca.client_context()) as relay,
    ):
        args = [
            *CHROMIUM_ARGS,
            f"--proxy-server=http://127.0.0.1:{relay.port}",
            "--proxy-bypass-list=<-loopback>",
            f"--ignore-certificate-errors-spki-list={spki_hash(relay.ca.cert_pem)}",
        ]
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=chromium, args=args, headless=True)
            try:
                page = await browser.new_page()
                await page.goto(page_url)
                ws_events = await page.evaluate(PAGE_SCRIPT, plain.url + "/echo")
                wss_events = await page.evaluate(PAGE_SCRIPT, secure.url + "/echo")
            finally:
                await browser.close()
        async with asyncio.timeout(10):
            for flow in relay.flows:
                await flow.wait_closed()
        return ws_events, wss_events, relay, plain.url, secure.url, page_url


def test_chromium_websockets_through_the_relay_as_its_proxy(chromium):
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        ws_events, wss_events, relay, plain_url, secure_url, page_url = pool.submit(
            asyncio.run, scenario(chromium)
        ).result(timeout=80)
    print(json.dumps([ws_events, wss_events]))
    print(relay.tunnels, relay.refused)
    assert ws_events == [
        {"open": plain_url + "/echo"},
        {"text": "hello from chromium via ws"},
        {"close": 4001, "clean": True},
    ]
    assert wss_events == [
        {"open": secure_url + "/echo"},
        {"text": "hello from chromium via wss"},
        {"close": 4001, "clean": True},
    ]
    assert [flow.upstream_url for flow in relay.flows] == [plain_url + "/echo", secure_url + "/echo"]
    # The page came through the proxy too: an absolute-form GET, forwarded as plain HTTP.
    page_port = int(page_url.rstrip("/").rsplit(":", 1)[1])
    assert any(t.kind == "http" and t.port == page_port and t.bytes_down > 0 for t in relay.tunnels)
    df = relay.timeline
    frames = df[df.error.isna()]
    for flow_id, scheme in [(1, "ws"), (2, "wss")]:
        for leg, direction in [("client", "rx"), ("upstream", "tx"), ("upstream", "rx"), ("client", "tx")]:
            rows = frames[(frames.flow == flow_id) & (frames.leg == leg) & (frames.dir == direction)]
            assert list(rows.opcode) == ["text", "close"], (flow_id, leg, direction)
            assert rows.text.iloc[0] == f"hello from chromium via {scheme}"
            assert rows.close_code.iloc[1] == 4001
    assert relay.flows[1].client.url == secure_url + "/echo"  # what Chromium asked for
