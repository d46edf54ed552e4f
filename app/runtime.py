"""Process-wide settings for a long-running server, applied once the app has started."""

import gc
import sys

# The room's writer thread (SQLite) and the event loop share the GIL. At CPython's default 5 ms
# switch interval a finished commit can wait that long for the loop to let go, and the loop for
# the writer; in the chat benchmark that showed in the p99. A shorter interval keeps hand-overs
# short; the cost, more frequent switch requests when both threads are busy, is small.
SWITCH_INTERVAL_SECONDS = 0.001


def settle() -> None:
    """Freeze what start-up loaded and shorten the GIL switch interval."""
    # Modules, table metadata, compiled templates and statements live as long as the process;
    # frozen, they are no longer re-scanned by every full collection, which paused the loop.
    gc.collect()
    gc.freeze()
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
