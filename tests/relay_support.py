"""Helpers shared by the relay's tests (tests/test_relay.py, tests/test_relay_proxy.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pandas as pd


def data_rows(df: pd.DataFrame, leg: str, direction: str) -> pd.DataFrame:
    """The data frames (text, binary, continuation) of one leg and direction, notes left out."""
    rows = df[(df.leg == leg) & (df.dir == direction) & df.error.isna()]
    return rows[rows.opcode.isin(["text", "binary", "continuation"])]


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until `predicate()` holds (TimeoutError after `timeout` seconds)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)
