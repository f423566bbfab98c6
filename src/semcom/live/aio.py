"""Waiting with a deadline that never loses a cancellation.

Python 3.11's :func:`asyncio.wait_for` returns the result when a cancellation arrives in the same loop step as
the awaited thing completes, and the cancellation is lost (CPython gh-86296, fixed in 3.12 by building
``wait_for`` on :func:`asyncio.timeout`). A sender stopped by SIGTERM while a reply lands would then carry on
to the end of its clip; a server would hold a lock it was cancelled out of. :func:`within` is ``wait_for`` on
:func:`asyncio.timeout`, as 3.12 has it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def within(aw: Awaitable[T], seconds: float) -> T:
    """``await aw``, raising :class:`TimeoutError` after ``seconds`` (at once where ``seconds <= 0``); a
    cancellation of the calling task always propagates."""
    async with asyncio.timeout(seconds):
        return await aw
