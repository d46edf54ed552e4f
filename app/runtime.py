"""Process-wide settings for a long-running server, applied while the app runs."""

import asyncio
import gc
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# The room's writer thread (SQLite) and the event loop share the GIL. At CPython's default 5 ms
# switch interval a finished commit can wait that long for the loop to let go, and the loop for
# the writer; in the chat benchmark that showed in the p99. A shorter interval keeps hand-overs
# short; the cost, more frequent switch requests when both threads are busy, is small.
SWITCH_INTERVAL_SECONDS = 0.001

# A full collection walks every object the process made since start-up, scattered over its heap:
# with 900 room connections open that was 100-160 ms of CPU, during which no room moved. CPython
# runs one whenever the old generation has grown by a quarter, which under chat load was every
# 10-20 s, enough to decide a room's p99 on its own. The young generations are still collected
# as usual (cycles that die young go at once); the old one is collected in a lull, when the rooms
# have been quiet for a second and something has reached the old generation since the last time,
# and at the latest on this clock.
FULL_COLLECTION_SECONDS = 300.0
LULL_SECONDS = 1.0
# A third threshold no count reaches: the old generation is never collected automatically.
_NEVER = 2**31 - 1


@contextmanager
def settled() -> Iterator[None]:
    """Freeze what start-up loaded, shorten the GIL switch interval, take full collections off
    CPython's trigger; everything as it was afterwards (tests start many apps in one process)."""
    thresholds = gc.get_threshold()
    interval = sys.getswitchinterval()
    # Modules, table metadata, compiled templates and statements live as long as the process;
    # frozen, they are no longer re-scanned by every full collection.
    gc.collect()
    gc.freeze()
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    gc.set_threshold(thresholds[0], thresholds[1], _NEVER)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        sys.setswitchinterval(interval)
        gc.unfreeze()


async def collect_old_forever(
    quiet_for: Callable[[], float],
    *,
    every: float = FULL_COLLECTION_SECONDS,
    lull: float = LULL_SECONDS,
    tick: float = 0.5,
) -> None:
    """Full collections in the rooms' lulls, and at the latest every `every` seconds.

    `quiet_for` says how long the rooms have had no traffic."""
    last = time.monotonic()
    promotions = _promotions()
    while True:
        await asyncio.sleep(tick)
        overdue = time.monotonic() - last >= every
        if overdue or (_promotions() != promotions and quiet_for() >= lull):
            gc.collect()
            last = time.monotonic()
            promotions = _promotions()


def _promotions() -> int:
    """How many times survivors have moved up into the old generation."""
    return int(gc.get_stats()[1]["collections"])
