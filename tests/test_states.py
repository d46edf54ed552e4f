"""The state machine's table: complete, and only the transitions DESIGN.md allows."""

import itertools

from app.cases.states import CLOSED, TRANSITIONS, Status, can_transition


def test_every_status_has_an_entry() -> None:
    assert set(TRANSITIONS) == set(Status)


def test_terminal_states_go_nowhere() -> None:
    for status in (Status.FILED, Status.REJECTED, Status.FAILED, Status.WITHDRAWN):
        assert TRANSITIONS[status] == frozenset()


def test_withdraw_allowed_from_every_open_state_before_filing() -> None:
    for status in Status:
        expected = status not in (Status.FILED, *CLOSED)
        assert can_transition(status, Status.WITHDRAWN) is expected, status


def test_main_path() -> None:
    path = [
        Status.SUBMITTED,
        Status.ACCEPTED,
        Status.SCHEDULED,
        Status.IN_SESSION,
        Status.SIGNING,
        Status.FILED,
    ]
    for current, target in itertools.pairwise(path):
        assert can_transition(current, target)


def test_info_request_loop_and_illegal_shortcuts() -> None:
    assert can_transition(Status.SUBMITTED, Status.INFO_REQUESTED)
    assert can_transition(Status.INFO_REQUESTED, Status.SUBMITTED)
    assert not can_transition(Status.INFO_REQUESTED, Status.ACCEPTED)
    assert not can_transition(Status.SUBMITTED, Status.SCHEDULED)
    assert not can_transition(Status.ACCEPTED, Status.FILED)
