"""Counters for "at most N of these per window" limits that are not about one account: login
codes asked for from one network address, whatever the phone numbers.

With `HEJIE_REDIS_URL` the counts live in Redis, shared by every worker and instance and kept
across restarts (a restart must not hand out a fresh allowance). Without it they are kept in
this process: each worker counts alone and a restart starts afresh, which is what a single
machine without Redis can offer. Limits on one account or one phone (codes per phone, failed
sign-ins) are kept with the account, in the database, and do not need this.

A Redis that does not answer does not stop sign-in: the count falls back to this process's
until it answers again (logged).
"""

import asyncio
import logging
import time
from typing import Any

log = logging.getLogger("hejie.ratelimit")

KEY_PREFIX = "hejie:rate:"
# A Redis slower than this is treated as down for this count.
REDIS_TIMEOUT = 0.5
# Memory stays bounded whatever the number of keys (addresses) seen.
MAX_LOCAL_KEYS = 50_000


class RateLimiter:
    """Fixed-window counts: `hit` counts one event under a key and says whether it is over."""

    def __init__(self, redis_url: str | None = None) -> None:
        self._redis: Any = None
        if redis_url:
            import redis.asyncio as redis

            self._redis = redis.from_url(redis_url)
        # slot -> (when its window ends, count)
        self._local: dict[str, tuple[float, int]] = {}
        self._warned_at = 0.0

    async def hit(self, key: str, *, limit: int, window_seconds: int) -> float | None:
        """Count one event; None while at most `limit` fell in this window, else the seconds
        until the window ends (when the next event would be allowed)."""
        now = time.time()
        window = int(now // window_seconds)
        slot = f"{KEY_PREFIX}{key}:{window_seconds}:{window}"
        count = await self._count_in_redis(slot, window_seconds)
        if count is None:
            count = self._count_here(slot, expires=(window + 1) * window_seconds)
        if count <= limit:
            return None
        return (window + 1) * window_seconds - now

    async def _count_in_redis(self, slot: str, window_seconds: int) -> int | None:
        if self._redis is None:
            return None
        try:
            async with asyncio.timeout(REDIS_TIMEOUT):
                async with self._redis.pipeline(transaction=True) as pipe:
                    pipe.incr(slot)
                    pipe.expire(slot, window_seconds + 60)
                    count, _ = await pipe.execute()
            return int(count)
        except Exception:
            if time.monotonic() - self._warned_at > 60:
                self._warned_at = time.monotonic()
                log.warning("rate limit counts fall back to this process: Redis", exc_info=True)
            return None

    def _count_here(self, slot: str, *, expires: float) -> int:
        if len(self._local) >= MAX_LOCAL_KEYS and slot not in self._local:
            now = time.time()
            self._local = {k: v for k, v in self._local.items() if v[0] > now}
            if len(self._local) >= MAX_LOCAL_KEYS:
                self._local.clear()  # bounded memory before exact counts
        count = self._local.get(slot, (expires, 0))[1] + 1
        self._local[slot] = (expires, count)
        return count

    def clear(self) -> None:
        """Forget this process's counts (tests start each from nothing); Redis keeps its own."""
        self._local.clear()

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
