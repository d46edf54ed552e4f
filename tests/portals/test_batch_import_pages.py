"""The bank portal's portfolio imports: upload, live progress, the refused rows, bank isolation."""

import asyncio
import io
import re

import httpx

from app.batch.import_router import import_tasks
from tests.batch.test_import import BAD_CHECK, GOOD_ID, MIXED, csv_bytes
from tests.helpers import Backend, World
from tests.portals.util import Browser, TotpClock, accessibility_problems, csrf_of, sign_in_staff


async def _upload(bank: httpx.AsyncClient, data: bytes, name: str = "accounts.csv") -> str:
    form = await bank.get("/bank/imports")
    assert form.status_code == 200
    r = await bank.post(
        "/bank/imports",
        data={"csrf_token": csrf_of(form.text)},
        files={"file": (name, io.BytesIO(data), "text/csv")},
    )
    assert r.status_code == 303, r.text
    location = r.headers["location"]
    assert re.fullmatch(r"/bank/imports/[0-9a-f]{32}", location)
    return location


async def _finish(env: Backend) -> None:
    await asyncio.gather(*list(import_tasks(env.app).values()))


async def test_upload_then_progress_and_problems(
    bank: httpx.AsyncClient, env: Backend, world: World
) -> None:
    listing = await bank.get("/bank/imports")
    assert accessibility_problems(listing.text) == []
    assert "贷款编号" in listing.text  # the accepted Chinese headers are documented

    location = await _upload(bank, csv_bytes(MIXED))
    page = await bank.get(location)
    assert page.status_code == 200
    # While (or after) it runs: the progress bar and the script that polls the API.
    assert 'id="import-progress"' in page.text
    assert '<script src="/static/js/progress.js" defer></script>' in page.text
    import_id = location.rsplit("/", 1)[1]
    assert f'data-progress-url="/api/v1/imports/{import_id}"' in page.text

    await _finish(env)
    page = await bank.get(location)
    assert accessibility_problems(page.text) == []
    assert 'data-status="done"' in page.text
    assert (
        '<span id="rows-done" data-field="rows_done">10</span> / '
        '<span id="rows-total" data-field="rows_total">10</span>' in page.text
    )
    assert 'max="10" value="10"' in page.text
    assert '<dd id="rows-created" data-field="rows_created">3</dd>' in page.text
    assert '<dd id="rows-failed" data-field="rows_failed">7</dd>' in page.text
    assert '<th scope="row">3</th><td>id_number</td>' in page.text
    assert f'href="/api/v1/imports/{import_id}/problems.csv"' in page.text
    # Never the refused values; masked values only.
    assert BAD_CHECK not in page.text and GOOD_ID not in page.text
    assert "12812345678" not in page.text

    # The cookie session downloads the report from the API, as the link does.
    report = await bank.get(f"/api/v1/imports/{import_id}/problems.csv")
    assert report.status_code == 200 and "id_number_invalid" in report.text

    listing = await bank.get("/bank/imports")
    assert f'href="{location}"' in listing.text


async def test_the_progress_api_answers_the_cookie_while_running(
    bank: httpx.AsyncClient, env: Backend, world: World
) -> None:
    location = await _upload(bank, csv_bytes(MIXED * 3))
    r = await bank.get("/api/v1/imports/" + location.rsplit("/", 1)[1])
    assert r.status_code == 200
    assert r.json()["status"] in ("running", "done")
    await _finish(env)


async def test_no_file_is_refused_on_the_page(bank: httpx.AsyncClient, world: World) -> None:
    form = await bank.get("/bank/imports")
    r = await bank.post(
        "/bank/imports",
        data={"csrf_token": csrf_of(form.text)},
        files={"file": ("", io.BytesIO(b""), "application/octet-stream")},
    )
    assert r.status_code == 422
    assert 'class="alert error"' in r.text


async def test_another_bank_and_other_roles(
    bank: httpx.AsyncClient,
    browser: Browser,
    env: Backend,
    world: World,
    clock: TotpClock,
) -> None:
    location = await _upload(bank, csv_bytes(MIXED))
    await _finish(env)

    east = await browser()
    await sign_in_staff(east, world.bank_east, clock)
    assert (await east.get(location)).status_code == 404
    listing = await east.get("/bank/imports")
    assert location not in listing.text

    mediator = await browser()
    await sign_in_staff(mediator, world.mediator, clock)
    assert (await mediator.get(location)).status_code == 403
    assert (await mediator.get("/bank/imports")).status_code == 403

    anonymous = await browser()
    r = await anonymous.get("/bank/imports")
    assert r.status_code == 303 and r.headers["location"].startswith("/staff/login")

    # A post without the form's token changes nothing.
    r = await bank.post(
        "/bank/imports", files={"file": ("a.csv", io.BytesIO(csv_bytes(MIXED)), "text/csv")}
    )
    assert r.status_code == 403
    assert len((await bank.get("/api/v1/imports")).json()) == 1
