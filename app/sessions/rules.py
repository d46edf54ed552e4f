"""Who is in the room, which channels each side may read and write, and what each one sees.

The same rules serve the live room and `GET .../messages`, so the caucus of one side can never
reach the other by either path.
"""

from enum import StrEnum
from typing import Any


class Side(StrEnum):
    BORROWER = "borrower"
    BANK = "bank"
    MEDIATOR = "mediator"


JOINT = "joint"
CAUCUS = {Side.BORROWER: "caucus:borrower", Side.BANK: "caucus:bank"}
CHANNELS = frozenset({JOINT, *CAUCUS.values()})
PARTIES = (Side.BORROWER, Side.BANK)

_READABLE = {
    Side.BORROWER: frozenset({JOINT, CAUCUS[Side.BORROWER]}),
    Side.BANK: frozenset({JOINT, CAUCUS[Side.BANK]}),
    Side.MEDIATOR: CHANNELS,
}


def readable_channels(side: Side) -> frozenset[str]:
    return _READABLE[side]


def can_write(side: Side, channel: str) -> bool:
    # Writing and reading coincide: a party talks in the joint channel and in its own caucus.
    return channel in _READABLE[side]


def view(record: dict[str, Any], side: Side, user_id: str) -> dict[str, Any] | None:
    """What this reader sees of a message record, or None when it is not theirs to see."""
    if record["channel"] not in _READABLE[side]:
        return None
    mine = record["sender_id"] == user_id
    state = record["state"]
    if side != Side.MEDIATOR:
        if state == "held" and not mine:
            return None
        out = {k: v for k, v in record.items() if k not in _STAFF_ONLY}
        if state == "removed":
            out["body"] = None
            out["payload"] = None
    else:
        out = {k: v for k, v in record.items() if k != "sender_id"}
    if not mine:
        out["client_msg_id"] = None
    return out


def view_key(record: dict[str, Any], side: Side, user_id: str) -> tuple[str, bool]:
    """Readers with the same key see the same thing: views are rendered once per key."""
    return side.value, record["sender_id"] == user_id


# The conduct flags are for the mediator; the sender id is internal.
_STAFF_ONLY = frozenset({"flagged", "sender_id"})
