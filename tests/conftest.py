"""Shared fixtures: the embedded server and an independent peer (the websockets library)."""

from __future__ import annotations

import pytest

import rawws_nb as rw

from .peers import WebsocketsPeer


@pytest.fixture
async def server():
    async with rw.serve() as srv:
        yield srv


@pytest.fixture
async def peer():
    p = WebsocketsPeer()
    await p.start()
    yield p
    await p.stop()


@pytest.fixture(scope="session")
def ca():
    import trustme

    return trustme.CA()


@pytest.fixture
def client_tls(ca):
    import ssl

    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


@pytest.fixture
async def tls_server(ca):
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(ctx)
    async with rw.serve(tls=ctx) as srv:
        yield srv
