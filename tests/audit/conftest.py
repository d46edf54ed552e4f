"""Audit fixtures: every test starts with no refusal or sign-in counts left by another, and the
portal clients (signed in through the real forms) for the compliance pages."""

from collections.abc import Iterator

import pytest

from app.audit import throttle
from tests.portals.conftest import bank, browser, clock, mediator  # noqa: F401


@pytest.fixture(autouse=True)
def _fresh_throttles() -> Iterator[None]:
    throttle.clear_all()
    yield
    throttle.clear_all()
