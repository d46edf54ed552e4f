"""Lawful contact with borrowers: quiet hours, the daily cap, and what counts as a contact.

The one place these rules live. Every function takes the moment it judges (`now`) from its
caller, so tests can move the clock; nothing here reads the system time.

- Quiet hours: no SMS or call-type message between 22:00 and 08:00 Asia/Shanghai; it is held
  until 08:00. Email is not an interruption (it waits in an inbox), so it is not held at night.
- Daily cap: at most 3 messages a borrower did not ask for per Shanghai calendar day, on every
  channel, email included (being written to four times a day is pressure, whatever the medium).
  A message over the cap is never dropped: it moves to 08:00 of the next day with room.
- Requested messages (a login code the borrower just asked for) go at once and do not count.
- Only the borrower's own contact: the outbox takes the borrower (a user), not an address, and
  looks up the phone it holds for them; there is no way to address a relative or employer.
"""

from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

SHANGHAI = ZoneInfo("Asia/Shanghai")
QUIET_FROM = time(22, 0)
QUIET_UNTIL = time(8, 0)
DAILY_CAP = 3
# Channels that interrupt someone where they are; held during quiet hours.
INTRUSIVE_CHANNELS = frozenset({"sms", "call"})


def _local(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("contact rules need a timezone-aware moment")
    return at.astimezone(SHANGHAI)


def in_quiet_hours(at: datetime) -> bool:
    clock = _local(at).time()
    return clock >= QUIET_FROM or clock < QUIET_UNTIL


def local_day(at: datetime) -> date:
    """The Shanghai calendar day a moment falls on; the cap counts per such day."""
    return _local(at).date()


def morning_of(day: date) -> datetime:
    """08:00 Shanghai on `day`, as an aware datetime."""
    return datetime.combine(day, QUIET_UNTIL, tzinfo=SHANGHAI)


def end_of_quiet_hours(at: datetime) -> datetime:
    """`at` itself outside quiet hours, else the 08:00 that ends them."""
    if not in_quiet_hours(at):
        return at
    local = _local(at)
    day = local.date() if local.time() < QUIET_UNTIL else local.date() + timedelta(days=1)
    return morning_of(day)


def may_deliver_now(*, channel: str, requested: bool, now: datetime) -> bool:
    """Whether a message may go out at `now` (checked again by the dispatcher before sending)."""
    return requested or channel not in INTRUSIVE_CHANNELS or not in_quiet_hours(now)


def earliest_send(
    *,
    channel: str,
    requested: bool,
    now: datetime,
    counted_per_day: Mapping[date, int],
    to_borrower: bool,
) -> datetime:
    """When a new message may first go out.

    `counted_per_day` holds, per Shanghai day, how many capped messages to this borrower are
    already planned for that day (from the outbox).
    """
    if requested:
        return now
    at = end_of_quiet_hours(now) if channel in INTRUSIVE_CHANNELS else now
    if not to_borrower:
        return at
    while counted_per_day.get(local_day(at), 0) >= DAILY_CAP:
        at = morning_of(local_day(at) + timedelta(days=1))
    return at


def counting_window_start(now: datetime) -> datetime:
    """The start of today in Shanghai: messages planned from here on may count toward a cap."""
    return datetime.combine(local_day(now), time(0, 0), tzinfo=SHANGHAI)
