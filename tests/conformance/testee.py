"""A raw-mode Autobahn|Testsuite testee, written only with rawws_nb's public API.

For every case the fuzzing server runs, the testee opens a raw session to
``/runCase?case=N&agent=NAME`` and, by hand (a raw session does nothing on its own):

- answers each Ping with ``Frame.Pong(ping.data)``; ignores Pongs;
- echoes each data frame as it arrives, frame by frame: the same frame type with the
  same ``fin`` (the session puts CONTINUATION on the wire for follow-up fragments);
- answers a Close with the peer's code, or with an empty Close when the peer's had none;
- on a protocol error (the session failed the connection) just ends.

Run it alone against a fuzzing server that is already listening::

    python -m tests.conformance.testee ws://127.0.0.1:9001 --agent rawws_nb

``tests/conformance/run.py`` starts the server, runs this testee and reads the reports.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import quote

import rawws_nb as rw
from rawws_nb import CloseReason, Frame, SessionClosed

__all__ = ["CaseOutcome", "SESSION_OPTIONS", "get_case_count", "run_case", "run_cases", "update_reports"]

MiB = 1 << 20

# Section 9 sends messages of up to 16 MiB, single frames of up to 16 MiB, and messages
# of up to 65,536 fragments; the testee consumes as fast as it can, so the queue bound
# only limits how far the reader runs ahead.
SESSION_OPTIONS: dict = {
    "max_message_size": 64 * MiB,
    "max_frame_size": 64 * MiB,
    "max_queue": 4096,
    "record": False,
    # Offered on every case: the fuzzing server accepts it only in sections 12 and 13.
    "compression": "deflate",
}


@dataclass
class CaseOutcome:
    """What the testee saw in one case (the fuzzing server's report says what it saw)."""

    index: int
    rx: Counter = field(default_factory=Counter)  # frames received, by type name
    tx: Counter = field(default_factory=Counter)  # frames sent, by type name
    peer_close: str | None = None  # the peer's Close, as received
    ended: str = ""  # how the session ended, as the testee saw it
    error: str | None = None  # a testee-side problem (timeout, unexpected exception)
    seconds: float = 0.0

    def summary(self) -> str:
        rx = " ".join(f"{k}={v}" for k, v in sorted(self.rx.items())) or "-"
        tx = " ".join(f"{k}={v}" for k, v in sorted(self.tx.items())) or "-"
        text = f"rx[{rx}] tx[{tx}] ended: {self.ended}"
        if self.error:
            text += f"; TESTEE ERROR: {self.error}"
        return text


def _describe_closed(exc: SessionClosed) -> str:
    return f"{type(exc).__name__} {exc}"


async def _answer_close(session, reason: CloseReason | None) -> None:
    """Answer the peer's Close with its code, or with an empty Close if it had none,
    then wait for the peer to end the connection."""
    if reason is None:
        await session.send(Frame.Close())
        await session.close()  # our Close is already sent: this only waits for the peer
    else:
        await session.close(CloseReason(reason.code))


async def _echo_until_closed(session, outcome: CaseOutcome) -> None:
    async def send(frame: Frame, compress: bool = True) -> None:
        try:
            await session.send(frame, compress)
        except SessionClosed as exc:
            outcome.ended = f"{type(frame).__name__} reply refused, session already ended: {_describe_closed(exc)}"
            raise
        outcome.tx[type(frame).__name__] += 1

    while True:
        try:
            frame = await session.incoming.receive()
        except SessionClosed as exc:  # includes PeerProtocolError: the session failed it
            outcome.ended = _describe_closed(exc)
            return
        outcome.rx[type(frame).__name__] += 1
        if isinstance(frame, Frame.Ping):
            await send(Frame.Pong(frame.data))
        elif isinstance(frame, Frame.Pong):
            pass
        elif isinstance(frame, (Frame.Text, Frame.Binary)):
            await send(type(frame)(frame.data, fin=frame.fin), compress=frame.compressed)
        elif isinstance(frame, Frame.Close):
            reason = frame.read_reason()
            outcome.peer_close = repr(reason) if reason is not None else "empty Close"
            outcome.tx["Close"] += 1
            try:
                await _answer_close(session, reason)
            except SessionClosed as exc:
                outcome.ended = "answered Close, then " + _describe_closed(exc)
                return
            outcome.ended = f"answered Close ({'empty' if reason is None else reason.code})"
            return
        else:  # pragma: no cover - every frame type is handled above
            raise AssertionError(f"unexpected frame {frame!r}")


async def run_case(base_url: str, index: int, agent: str, timeout: float = 60.0) -> CaseOutcome:
    """Run case number `index` (1-based, in the server's case order) and echo until closed."""
    outcome = CaseOutcome(index)
    url = f"{base_url}/runCase?case={index}&agent={quote(agent)}"
    start = time.perf_counter()
    session = None
    try:
        async with asyncio.timeout(timeout):
            session = await rw.web_socket_raw_session(url, **SESSION_OPTIONS)
            await _echo_until_closed(session, outcome)
    except TimeoutError:
        outcome.error = f"case did not end within {timeout:g} s"
    except SessionClosed as exc:  # ended while opening or while answering
        outcome.ended = outcome.ended or _describe_closed(exc)
    except Exception as exc:  # report it, go on with the next case
        outcome.error = f"{type(exc).__name__}: {exc}"
    if outcome.error and session is not None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await session.close(CloseReason(CloseReason.Codes.INTERNAL_ERROR, "testee error"))
    outcome.seconds = time.perf_counter() - start
    return outcome


async def _read_text_messages(url: str) -> list[str]:
    """Open `url`, collect Text messages until the server closes, answer its Close."""
    session = await rw.web_socket_raw_session(url, **SESSION_OPTIONS)
    texts: list[str] = []
    parts: list[bytes] = []
    try:
        while True:
            frame = await session.incoming.receive()
            if isinstance(frame, Frame.Ping):
                await session.send(Frame.Pong(frame.data))
            elif isinstance(frame, Frame.Text):
                parts.append(frame.data)
                if frame.fin:
                    texts.append(b"".join(parts).decode("utf-8"))
                    parts.clear()
            elif isinstance(frame, Frame.Close):
                await _answer_close(session, frame.read_reason())
                break
    except SessionClosed:
        pass
    return texts


async def get_case_count(base_url: str) -> int:
    texts = await _read_text_messages(f"{base_url}/getCaseCount")
    if not texts:
        raise RuntimeError("getCaseCount: the fuzzing server sent no count")
    return int(json.loads(texts[0]))


async def update_reports(base_url: str, agent: str) -> None:
    await _read_text_messages(f"{base_url}/updateReports?agent={quote(agent)}")


async def run_cases(
    base_url: str,
    agent: str,
    indices: Iterable[int],
    case_timeout: float = 60.0,
    progress: Callable[[CaseOutcome], None] | None = None,
    *,
    case: Callable[[str, int, str, float], Awaitable[CaseOutcome]] | None = None,
) -> list[CaseOutcome]:
    """Run the cases one after the other (`case`: another testee's `run_case`)."""
    run = case or run_case
    outcomes = []
    for index in indices:
        outcome = await run(base_url, index, agent, case_timeout)
        outcomes.append(outcome)
        if progress is not None:
            progress(outcome)
    return outcomes


async def _main(args: argparse.Namespace) -> int:
    base = args.url.rstrip("/")
    count = await get_case_count(base)
    print(f"{count} cases")

    def progress(o: CaseOutcome) -> None:
        if args.verbose or o.error:
            print(f"case {o.index}: {o.summary()} ({o.seconds:.2f} s)")

    outcomes = await run_cases(base, args.agent, range(1, count + 1), args.case_timeout, progress)
    await update_reports(base, args.agent)
    errors = [o for o in outcomes if o.error]
    print(f"ran {len(outcomes)} cases, {len(errors)} testee errors; reports updated for {args.agent!r}")
    return 1 if errors else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="rawws_nb raw-mode Autobahn testee")
    parser.add_argument("url", nargs="?", default="ws://127.0.0.1:9001", help="fuzzing server base URL")
    parser.add_argument("--agent", default="rawws_nb")
    parser.add_argument("--case-timeout", type=float, default=60.0)
    parser.add_argument("-v", "--verbose", action="store_true")
    return asyncio.run(_main(parser.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
