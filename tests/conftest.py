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
