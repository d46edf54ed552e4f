"""Portal fixtures: one browser (cookie jar) per person, each signed in through the real forms."""

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.helpers import Actor, Backend, World
from tests.portals.util import Browser, TotpClock, sign_in_borrower, sign_in_staff


@pytest.fixture
def clock() -> TotpClock:
    return TotpClock()


@pytest.fixture
async def browser(env: Backend) -> AsyncIterator[Browser]:
    """Open another browser, with its own cookies, on the same app."""
    opened: list[httpx.AsyncClient] = []

    async def open_browser() -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=env.app, raise_app_exceptions=False)
        c = httpx.AsyncClient(transport=transport, base_url="http://testserver")
        opened.append(c)
        return c

    yield open_browser
    for c in opened:
        await c.aclose()


@pytest.fixture
async def alice(client: httpx.AsyncClient, env: Backend, world: World) -> httpx.AsyncClient:
    """The default client, signed in as the borrower Alice by SMS code."""
    assert world.alice.phone
    await sign_in_borrower(client, env, world.alice.phone)
    return client


async def _staff(browser: Browser, actor: Actor, clock: TotpClock) -> httpx.AsyncClient:
    c = await browser()
    await sign_in_staff(c, actor, clock)
    return c


@pytest.fixture
async def mediator(browser: Browser, world: World, clock: TotpClock) -> httpx.AsyncClient:
    return await _staff(browser, world.mediator, clock)


@pytest.fixture
async def bank(browser: Browser, world: World, clock: TotpClock) -> httpx.AsyncClient:
    return await _staff(browser, world.bank_demo, clock)
