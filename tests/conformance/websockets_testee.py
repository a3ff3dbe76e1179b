"""The reference testee: the websockets library's client (compression on), echoing
messages, for the same harness (`python -m tests.conformance.run --client
tests.conformance.websockets_testee --agent websockets`). Not part of `make test`: it
gives the table rawws_nb's is compared with."""

from __future__ import annotations

import asyncio
import functools
import time
from urllib.parse import quote

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from . import testee
from .testee import CaseOutcome

__all__ = ["get_case_count", "run_cases", "update_reports"]

OPTIONS: dict = {"compression": "deflate", "max_size": None, "ping_interval": None, "max_queue": None}


async def run_case(base_url: str, index: int, agent: str, timeout: float = 60.0) -> CaseOutcome:
    outcome = CaseOutcome(index)
    start = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            async with connect(f"{base_url}/runCase?case={index}&agent={quote(agent)}", **OPTIONS) as ws:
                async for message in ws:
                    outcome.rx[type(message).__name__] += 1
                    await ws.send(message)
                    outcome.tx[type(message).__name__] += 1
            outcome.ended = "closed"
    except ConnectionClosed as exc:
        outcome.ended = f"ConnectionClosed {exc}"
    except TimeoutError:
        outcome.error = f"case did not end within {timeout:g} s"
    except Exception as exc:
        outcome.error = f"{type(exc).__name__}: {exc}"
    outcome.seconds = time.perf_counter() - start
    return outcome


async def _texts(url: str) -> list[str]:
    async with connect(url, **OPTIONS) as ws:
        return [m if isinstance(m, str) else m.decode() async for m in ws]


async def get_case_count(base_url: str) -> int:
    return int((await _texts(f"{base_url}/getCaseCount"))[0])


async def update_reports(base_url: str, agent: str) -> None:
    await _texts(f"{base_url}/updateReports?agent={quote(agent)}")


run_cases = functools.partial(testee.run_cases, case=run_case)
