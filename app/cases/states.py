"""The case state machine: one table of allowed transitions, one function that moves a case.

Nothing else assigns `Case.status`.
"""

from enum import StrEnum
from typing import TYPE_CHECKING

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from app.errors import Conflict

if TYPE_CHECKING:
    from app.cases.models import Case, CaseEvent
    from app.users.models import User


class Status(StrEnum):
    SUBMITTED = "submitted"
    INFO_REQUESTED = "info_requested"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    SCHEDULED = "scheduled"
    IN_SESSION = "in_session"
    SIGNING = "signing"
    FILED = "filed"
    FAILED = "failed"
    WITHDRAWN = "withdrawn"
    NO_SHOW = "no_show"


S = Status
TRANSITIONS: dict[Status, frozenset[Status]] = {
    S.SUBMITTED: frozenset({S.INFO_REQUESTED, S.ACCEPTED, S.REJECTED, S.WITHDRAWN}),
    S.INFO_REQUESTED: frozenset({S.SUBMITTED, S.REJECTED, S.WITHDRAWN}),
    # accepted → signing: only a fast-path case (a pre-approved offer accepted from an
    # invitation), after the mediator's one-page check; see FAST_PATH_ONLY.
    S.ACCEPTED: frozenset({S.SCHEDULED, S.SIGNING, S.WITHDRAWN}),
    S.SCHEDULED: frozenset({S.ACCEPTED, S.IN_SESSION, S.NO_SHOW, S.WITHDRAWN}),
    S.NO_SHOW: frozenset({S.SCHEDULED, S.FAILED, S.WITHDRAWN}),
    S.IN_SESSION: frozenset({S.SIGNING, S.FAILED, S.WITHDRAWN}),
    S.SIGNING: frozenset({S.FILED, S.IN_SESSION, S.ACCEPTED, S.FAILED, S.WITHDRAWN}),
    S.FILED: frozenset(),
    S.REJECTED: frozenset(),
    S.FAILED: frozenset(),
    S.WITHDRAWN: frozenset(),
}

# Moves allowed only for a case on the fast path (`Case.fast_path`): no live session.
# A fast-path agreement declined to renegotiate goes to scheduling, as it never had a session.
FAST_PATH_ONLY = frozenset({(S.ACCEPTED, S.SIGNING), (S.SIGNING, S.ACCEPTED)})

# Every case starts here.
INITIAL = S.SUBMITTED
# A case in one of these no longer blocks a new application for the same account.
CLOSED = frozenset({S.REJECTED, S.FAILED, S.WITHDRAWN})


def can_transition(current: str, target: Status) -> bool:
    return target in TRANSITIONS[Status(current)]


async def transition(
    session: AsyncSession,
    case: "Case",
    target: Status,
    *,
    actor: "User | None",
    kind: str,
    note: str | None = None,
) -> "CaseEvent":
    """Move the case to `target` and write the timeline entry, or refuse with 409.

    The move is a conditional UPDATE on the status this request saw, so two people acting at
    once (a borrower withdrawing while the mediator accepts) cannot both succeed.
    """
    from app.cases.models import Case
    from app.cases.timeline import record_event

    current = Status(case.status)
    if not can_transition(current, target):
        raise Conflict(
            f"A case in status '{current}' cannot move to '{target}'",
            code="illegal_transition",
        )
    if (current, target) in FAST_PATH_ONLY and not case.fast_path:
        raise Conflict(
            f"Only a fast-path case moves from '{current}' to '{target}'",
            code="illegal_transition",
        )
    values: dict[str, object] = {"status": target}
    if target in CLOSED:
        values["open_account_key"] = None
    moved = await session.execute(
        update(Case)
        .where(Case.id == case.id, Case.status == current)
        .values(**values)
        .execution_options(synchronize_session="fetch")
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict(
            "The case changed while you were working on it; reload and try again",
            code="case_changed",
        )
    return await record_event(
        session, case, actor=actor, kind=kind, note=note, from_status=current, to_status=target
    )
