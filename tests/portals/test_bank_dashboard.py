"""The bank's dashboard page, and its case list by status and tier, as an officer gets them.

Texts are checked in English (the source strings) so the checks hold before and after the
Chinese catalog is filled in.
"""

import html
import json
import re
from typing import Any

import httpx

from app.i18n import LANG_COOKIE
from tests.helpers import Backend, World
from tests.portals.util import Browser, TotpClock, accessibility_problems, sign_in_staff
from tests.reports.helpers import DEMO_MONEY, DEMO_STATUS, Known, known_world

CHARTS = ("status", "settlement", "duration", "money")
_SCRIPT = re.compile(r"<script\b([^>]*)>(.*?)</script>", re.S)
_DATA = re.compile(r'<script type="application/json" id="dashboard-data">(.*?)</script>', re.S)


def _english(client: httpx.AsyncClient) -> httpx.AsyncClient:
    client.cookies.set(LANG_COOKIE, "en")
    return client


def _text(page: str, element_id: str) -> str:
    """The text of the element with this id, tags dropped and spaces collapsed."""
    found = re.search(rf'<(\w+)[^>]*\bid="{element_id}"[^>]*>(.*?)</\1>', page, re.S)
    assert found, f"the page has no #{element_id}"
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", found.group(2))).split())


def _chart_data(page: str) -> dict[str, Any]:
    found = _DATA.search(page)
    assert found, "the page has no #dashboard-data"
    data: dict[str, Any] = json.loads(found.group(1))
    return data


def _case_nos(page: str) -> set[str]:
    return set(re.findall(r'<a href="/bank/cases/[0-9a-f]+">(HJ[0-9A-Z-]+)</a>', page))


async def _case_no(client: httpx.AsyncClient, world: World, case_id: str) -> str:
    r = await client.get(f"/api/v1/cases/{case_id}", headers=world.bank_demo.headers)
    return str(r.json()["case_no"])


async def test_the_dashboard_shows_the_banks_figures(
    bank: httpx.AsyncClient, client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    await known_world(client, env, world)
    r = await _english(bank).get("/bank/dashboard")
    assert r.status_code == 200, r.text
    page = r.text
    assert accessibility_problems(page) == []
    assert '<link rel="stylesheet" href="/static/css/dashboard.css">' in page

    # The key figures, money as ¥1,234.56.
    assert _text(page, "summary-settlement") == "66.7%"
    assert _text(page, "summary-median") == "15.0"
    assert _text(page, "summary-recovered") == "¥1,100.00"
    assert _text(page, "summary-waived") == "¥4,500.00"

    # Each chart: a heading, a container the script draws in, and a table of the same figures.
    for name in CHARTS:
        assert f'aria-labelledby="h-{name}"' in page and f'id="h-{name}"' in page
        container = re.search(rf'<div class="chart" id="chart-{name}"([^>]*)></div>', page)
        assert container, name
        assert 'role="img"' in container.group(1)
        assert re.search(r'aria-label="[^"]{20,}"', container.group(1)), name
        assert f'id="table-{name}"' in page, name
    assert _text(page, "table-money").startswith(
        "Overdue tier Filed agreements To repay Recovered Waived "
        "M1 1 ¥11,000.00 ¥1,100.00 ¥1,500.00 "
        "M2 0 ¥0.00 ¥0.00 ¥0.00 "
        "M3 1 ¥23,000.00 ¥0.00 ¥3,000.00 "
        "Total 2 ¥34,000.00 ¥1,100.00 ¥4,500.00"
    )
    assert "Filed 2 Failed 0 Rejected 0 Withdrawn 1 Reached an outcome 3" in _text(
        page, "table-settlement"
    )
    assert _text(page, "table-duration") == (
        "Time to filing Filed cases Up to 7 days 0 7 to 14 days 1 14 to 30 days 1 "
        "30 to 60 days 0 Over 60 days 0"
    )
    # The definition of the settlement rate is on the page.
    assert "Settlement rate = cases filed ÷ cases that reached an outcome" in page

    # The figures for the charts, as JSON the script reads.
    data = _chart_data(page)
    assert data["status"]["values"] == [
        DEMO_STATUS.get(s, 0)
        for s in (
            "submitted",
            "info_requested",
            "accepted",
            "rejected",
            "scheduled",
            "in_session",
            "signing",
            "filed",
            "failed",
            "withdrawn",
            "no_show",
        )
    ]
    assert data["settlement"]["values"] == [2, 0, 0, 1]
    assert data["duration"]["values"] == [0, 1, 1, 0, 0]
    assert data["money"]["labels"] == ["M1", "M2", "M3"]
    assert [s["values_fen"] for s in data["money"]["series"]] == [
        [row["recovered_fen"] for row in DEMO_MONEY],
        [row["waived_fen"] for row in DEMO_MONEY],
    ]


async def test_the_page_runs_no_inline_script(
    bank: httpx.AsyncClient, client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    await known_world(client, env, world)
    r = await bank.get("/bank/dashboard")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    scripts = _SCRIPT.findall(r.text)
    sources = [re.search(r'src="([^"]+)"', attrs) for attrs, _ in scripts]
    assert [m.group(1) for m in sources if m] == [
        "/static/vendor/echarts/echarts.min.js",
        "/static/js/dashboard.js",
    ]
    for attrs, body in scripts:
        if "src=" in attrs:
            assert "defer" in attrs and not body.strip(), attrs
        else:
            # The one block without src is data, which the browser does not run.
            assert attrs.strip() == 'type="application/json" id="dashboard-data"', attrs
    assert " style=" not in r.text and "<style" not in r.text
    # The scripts and styles it names are served, with ECharts' licence next to it.
    for path in (
        "/static/vendor/echarts/echarts.min.js",
        "/static/js/dashboard.js",
        "/static/css/dashboard.css",
        "/static/vendor/echarts/LICENSE",
        "/static/vendor/echarts/NOTICE",
    ):
        assert (await bank.get(path)).status_code == 200, path


async def test_the_json_block_cannot_close_its_script(
    browser: Browser, client: httpx.AsyncClient, env: Backend, world: World, clock: TotpClock
) -> None:
    # A bank name cannot break out of the data block: the page writes it escaped.
    await known_world(client, env, world)
    async with env.session() as s:
        from sqlalchemy import update

        from app.orgs.models import Bank

        await s.execute(update(Bank).where(Bank.code == "DEMO").values(name="</script><b>x"))
    officer = await browser()
    await sign_in_staff(officer, world.bank_demo, clock)
    page = (await officer.get("/bank/dashboard")).text
    assert "</script><b>" not in page
    assert _chart_data(page)["status"]["values"]


async def test_a_bank_with_no_cases_reads_a_sentence_not_empty_charts(
    bank: httpx.AsyncClient,
) -> None:
    r = await _english(bank).get("/bank/dashboard")
    assert r.status_code == 200
    assert "Your bank has no cases on the platform yet." in _text(r.text, "dashboard-empty")
    assert 'class="chart"' not in r.text
    assert "dashboard-data" not in r.text and "echarts" not in r.text


async def test_another_banks_officer_sees_only_that_bank(
    browser: Browser, client: httpx.AsyncClient, env: Backend, world: World, clock: TotpClock
) -> None:
    await known_world(client, env, world)
    east = _english(await browser())
    await sign_in_staff(east, world.bank_east, clock)
    page = (await east.get("/bank/dashboard")).text
    assert _text(page, "summary-waived") == "¥7,777.00"
    assert _text(page, "summary-recovered") == "¥500.00"
    assert _chart_data(page)["status"]["values"][7] == 1  # filed: its one case


async def test_only_bank_staff_open_the_dashboard(
    mediator: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    assert (await mediator.get("/bank/dashboard")).status_code == 403
    r = await client.get("/bank/dashboard")
    assert r.status_code == 303
    assert r.headers["location"].startswith("/staff/login")


# --- the case list: by status and tier -----------------------------------------------------------


async def _listed(bank: httpx.AsyncClient, **params: str) -> tuple[str, set[str]]:
    r = await bank.get("/bank", params=params)
    assert r.status_code == 200, r.text
    return r.text, _case_nos(r.text)


async def test_the_case_list_filters_by_tier_and_status(
    bank: httpx.AsyncClient, client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    known: Known = await known_world(client, env, world)
    no = {
        name: await _case_no(client, world, getattr(known, name))
        for name in ("m1_filed", "m3_filed", "m2_withdrawn", "unconfirmed")
    }
    east_no = (
        await client.get(f"/api/v1/cases/{known.east_filed}", headers=world.bank_east.headers)
    ).json()["case_no"]
    _english(bank)

    page, shown = await _listed(bank)
    assert shown == set(no.values())
    assert east_no not in page
    assert _text(page, "case-count") == "4 case(s) match."
    assert 'href="/bank/dashboard"' in page
    assert accessibility_problems(page) == []

    page, shown = await _listed(bank, tier="M1")
    assert shown == {no["m1_filed"]}
    assert '<option value="M1" selected>' in page
    # Each status counts within the chosen tier; each tier within the chosen status (any).
    assert '<option value="filed" >Filed (1)</option>' in page
    assert '<option value="withdrawn" >Withdrawn (0)</option>' in page
    assert '<option value="M2" >M2 (30 to 90 days overdue) (1)</option>' in page

    page, shown = await _listed(bank, status="filed", tier="m3")
    assert shown == {no["m3_filed"]}
    assert _text(page, "case-count") == "1 case(s) match."
    assert '<option value="M1" >M1 (under 30 days overdue) (1)</option>' in page
    assert '<option value="M2" >M2 (30 to 90 days overdue) (0)</option>' in page

    _, shown = await _listed(bank, status="withdrawn", tier="M2")
    assert shown == {no["m2_withdrawn"]}
    _, shown = await _listed(bank, tier="unconfirmed")
    assert shown == {no["unconfirmed"]}
    page, shown = await _listed(bank, status="filed", tier="M2")
    assert shown == set()
    assert "No cases for your bank match this filter." in page


async def test_an_unknown_filter_value_is_ignored_and_said(
    bank: httpx.AsyncClient, client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    await known_world(client, env, world)
    _english(bank)
    page, shown = await _listed(bank, tier="M9", status="filed")
    assert len(shown) == 2  # the status still applies
    assert "Unknown overdue tier “M9” ignored: showing every overdue tier." in html.unescape(page)
    page, shown = await _listed(bank, status="<b>bogus</b>", tier="M1")
    assert len(shown) == 1
    assert "<b>bogus</b>" not in page
    assert "Unknown status “&lt;b&gt;bogus&lt;/b&gt;” ignored" in page
    # A very long value is cut short in the message, not echoed whole.
    page, _ = await _listed(bank, tier="x" * 5000)
    (note,) = re.findall(r'<p class="alert" role="status">(.*?)</p>', page)
    assert f"“{'x' * 40}”" in note
