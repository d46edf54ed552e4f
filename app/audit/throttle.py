"""A cap on how many audit rows one source of noise may write, so a flood cannot fill the chain.

A refused request or a failed sign-in can be repeated as fast as a script can send it; each
would otherwise take the chain's lock and leave a row forever. The cap is per process and kept
in memory: at most `limit` rows per key in each `window_seconds`; the row that is written next
carries how many were left out (`unrecorded`), so the count is not lost, only the rows. Several
processes each allow their own `limit`, and a restart starts afresh: a bound on volume, not an
exact tally.
"""

import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass

_ALL: "weakref.WeakSet[Throttle]" = weakref.WeakSet()


@dataclass
class _Window:
    started: float
    recorded: int
    unrecorded: int


class Throttle:
    def __init__(self, *, limit: int, window_seconds: float, max_keys: int = 10_000) -> None:
        self.limit = limit
        self.window_seconds = window_seconds
        # Least recently seen keys go first when there are too many: memory stays bounded.
        self.max_keys = max_keys
        self._windows: OrderedDict[str, _Window] = OrderedDict()
        _ALL.add(self)

    def admit(self, key: str) -> int | None:
        """None: leave this one out. Otherwise record it, noting how many were left out before."""
        now = time.monotonic()
        window = self._windows.get(key)
        if window is None or now - window.started >= self.window_seconds:
            left_out = window.unrecorded if window is not None else 0
            self._windows[key] = _Window(started=now, recorded=1, unrecorded=0)
            self._windows.move_to_end(key)
            while len(self._windows) > self.max_keys:
                self._windows.popitem(last=False)
            return left_out
        self._windows.move_to_end(key)
        if window.recorded >= self.limit:
            window.unrecorded += 1
            return None
        window.recorded += 1
        left_out, window.unrecorded = window.unrecorded, 0
        return left_out

    def clear(self) -> None:
        self._windows.clear()


def clear_all() -> None:
    """Forget every count (tests start each from nothing)."""
    for throttle in list(_ALL):
        throttle.clear()
