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


async def test_the_clock_collects_the_old_generation() -> None:
    with runtime.settled():
        ref = _old_cycle()
        assert ref() is not None
        task = asyncio.create_task(runtime.collect_old_forever(every=0.01))
        try:
            for _ in range(100):
                await asyncio.sleep(0.01)
                if ref() is None:
                    break
            assert ref() is None
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
