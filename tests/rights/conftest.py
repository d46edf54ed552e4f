"""The portal fixtures (a browser per person, signed in through the real forms), for the pages."""

from tests.portals.conftest import alice, bank, browser, clock, mediator

__all__ = ["alice", "bank", "browser", "clock", "mediator"]
