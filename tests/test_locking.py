"""Per-key locks: many keys taken at once, each key once, again without error."""

from sqlalchemy import func, select

from app import locking
from app.locking import KeyLock
from tests.helpers import Backend


async def test_hold_all_takes_every_key_and_again(env: Backend) -> None:
    keys = [f"contact:phone:{i:05d}" for i in range(2_007)]
    async with env.session() as s:
        await locking.hold_all(s, [*keys, keys[0], keys[-1]])  # repeats taken once
        await s.commit()
    async with env.session() as s:
        first = await s.scalar(select(KeyLock.taken_at).where(KeyLock.key == keys[-1]))
        await locking.hold_all(s, reversed(keys))  # already there: taken again, refreshed
        await s.commit()
    async with env.session() as s:
        count = await s.scalar(select(func.count()).select_from(KeyLock))
        again = await s.scalar(select(KeyLock.taken_at).where(KeyLock.key == keys[-1]))
    assert count == len(keys)
    assert first is not None and again is not None and again >= first


async def test_hold_all_of_nothing_does_nothing(env: Backend) -> None:
    async with env.session() as s:
        await locking.hold_all(s, [])
        await s.commit()
    assert await env.count(KeyLock) == 0
