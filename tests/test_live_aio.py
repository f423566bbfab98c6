"""`semcom.live.aio.within`: a deadline like asyncio.wait_for that never loses a cancellation."""

from __future__ import annotations

import asyncio

import pytest

from semcom.live.aio import within


def _cancel_as_it_completes(wait) -> asyncio.Task:
    """A task waiting through ``wait`` on a queue, cancelled in the same loop step as the item arrives (a sender
    stopped by SIGTERM while its reply lands)."""

    async def main():
        q: asyncio.Queue = asyncio.Queue()
        task = asyncio.ensure_future(wait(q.get(), 10))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        q.put_nowait("reply")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return task

    return asyncio.run(main())


def test_a_cancellation_that_lands_with_the_result_propagates():
    assert _cancel_as_it_completes(within).cancelled()


def test_within_returns_and_times_out():
    async def main():
        assert await within(asyncio.sleep(0, "done"), 1) == "done"
        with pytest.raises(TimeoutError):
            await within(asyncio.sleep(5), 0.01)
        with pytest.raises(TimeoutError):
            await within(asyncio.Event().wait(), 0)

    asyncio.run(main())
