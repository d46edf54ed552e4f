"""A per-key lock held until the transaction ends, on SQLite and PostgreSQL alike.

Taking it is an upsert on the key's row: PostgreSQL makes a second taker wait on the row lock,
SQLite on its single writer lock. A check-then-write (at most five codes an hour for a phone)
done after taking the key's lock cannot be raced past.
"""

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import String
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, dialect_insert, utcnow


class KeyLock(Base):
    __tablename__ = "key_locks"

    key: Mapped[str] = mapped_column(String(120), primary_key=True)
    taken_at: Mapped[datetime] = mapped_column(UTCDateTime())


async def hold(session: AsyncSession, key: str) -> None:
    """Wait for and take the lock on `key` until this transaction commits or rolls back.

    Call it before reading what the lock protects: on SQLite a transaction that has read first
    cannot upgrade to writing while another writer holds the lock.
    """
    now = utcnow()
    statement = (
        dialect_insert(session)(KeyLock)
        .values(key=key, taken_at=now)
        .on_conflict_do_update(index_elements=[KeyLock.key], set_={"taken_at": now})
    )
    await session.execute(statement)


async def hold_all(session: AsyncSession, keys: Iterable[str]) -> None:
    """`hold` for many keys: one statement, run once per key (executemany).

    The keys are taken in sorted order, as a loop of `hold` over sorted keys would: two
    transactions never wait on each other. The statement is the same whatever the keys, so it
    is compiled once (a many-row VALUES was compiled anew each time: ~70 µs a key).
    """
    ordered = sorted(set(keys))
    if not ordered:
        return
    now = utcnow()
    statement = dialect_insert(session)(KeyLock)
    statement = statement.on_conflict_do_update(
        index_elements=[KeyLock.key], set_={"taken_at": statement.excluded.taken_at}
    )
    conn = await session.connection()
    await conn.execute(statement, [{"key": key, "taken_at": now} for key in ordered])
