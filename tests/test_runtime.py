"""The server's process settings: full collections on a clock, everything restored afterwards."""

import asyncio
import contextlib
import gc
import sys
import weakref

from app import runtime


class Node:
    def __init__(self) -> None:
        self.peer: Node | None = None


def _old_cycle() -> weakref.ref[Node]:
    """A reference cycle that has reached the old generation and only then became garbage."""
    a, b = Node(), Node()
    a.peer, b.peer = b, a
    gc.collect(1)
    gc.collect(1)  # survived two young collections: now in the oldest generation
    return weakref.ref(a)


def test_settled_takes_full_collections_off_the_trigger_and_restores_everything() -> None:
    before = (gc.get_threshold(), sys.getswitchinterval(), gc.get_freeze_count())
    with runtime.settled():
        young0, young1, old = gc.get_threshold()
        assert (young0, young1) == before[0][:2]  # young generations as CPython has them
        assert old > 10**9
        assert sys.getswitchinterval() == runtime.SWITCH_INTERVAL_SECONDS
        assert gc.get_freeze_count() > 0
        # Allocation alone never reaches the old generation's cycles now.
        ref = _old_cycle()
        kept = [[] for _ in range(300_000)]  # survivors: they drive the young collections
        assert ref() is not None
        del kept
    assert (gc.get_threshold(), sys.getswitchinterval()) == before[:2]
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert ref() is None


async def _collected_within(ref: weakref.ref[Node], seconds: float) -> bool:
    for _ in range(int(seconds / 0.01)):
        if ref() is None:
            return True
        await asyncio.sleep(0.01)
    return ref() is None


async def _collecting(quiet_for: float, **timing: float) -> "asyncio.Task[None]":
    return asyncio.create_task(runtime.collect_old_forever(lambda: quiet_for, tick=0.01, **timing))


async def _stop(task: "asyncio.Task[None]") -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_the_old_generation_is_collected_in_a_lull() -> None:
    with runtime.settled():
        task = await _collecting(quiet_for=5.0, every=3600, lull=1.0)
        try:
            await asyncio.sleep(0.05)
            ref = _old_cycle()  # something reached the old generation since the task began
            assert await _collected_within(ref, 1.0)
        finally:
            await _stop(task)


async def test_busy_rooms_wait_for_the_clock() -> None:
    with runtime.settled():
        ref = _old_cycle()
        task = await _collecting(quiet_for=0.0, every=3600, lull=1.0)
        try:
            assert not await _collected_within(ref, 0.3)  # traffic: no pause for a full collection
        finally:
            await _stop(task)
        task = await _collecting(quiet_for=0.0, every=0.05, lull=1.0)
        try:
            assert await _collected_within(ref, 1.0)  # the clock comes round all the same
        finally:
            await _stop(task)
