"""The attacks send floods of refused sign-ins and requests: the audit log's flood caps (kept
per process) start afresh for each test and are left fresh for the tests after."""

from collections.abc import Iterator

import pytest

from app.audit import throttle


@pytest.fixture(autouse=True)
def _fresh_throttles() -> Iterator[None]:
    throttle.clear_all()
    yield
    throttle.clear_all()
