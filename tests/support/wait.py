"""
Waiting on a condition instead of sleeping a fixed time: as fast as the
condition allows on an idle machine, as patient as C{timeout} on a loaded one.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable


async def waitUntil(predicate: Callable[[], object], timeout: float,
                    what: str | Callable[[], str] = "the condition",
                    every: float = 0.02) -> float:
    """
    Poll C{predicate} until it is true; return the seconds that took. After
    C{timeout} seconds raise C{AssertionError} naming C{what} (a string, or
    a callable for a message describing the state at that moment).
    """
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for "
                                 f"{what() if callable(what) else what}")
        await asyncio.sleep(every)
    return time.monotonic() - start


async def waitForLog(server, text: str, timeout: float = 5.0) -> float:
    """
    Wait until C{text} is in the server's log: for the tests where the log
    line is the behaviour (a warning logged once, rate-limited).
    """
    return await waitUntil(lambda: text in server.log(), timeout,
                           lambda: f"{text!r} in the server log:\n{server.log()[-3000:]}")
