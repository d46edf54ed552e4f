"""Portfolio import: rows checked one by one, upserted idempotently, personal values encrypted."""

import asyncio
import csv
import io
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import openpyxl
import pytest
from sqlalchemy import select, text

from app import security
from app.batch import importer
from app.batch.import_router import import_tasks
from app.batch.models import ImportProblem, PortfolioImport
from app.batch.rows import beijing_today
from app.loans.models import LoanAccount
from app.orgs import service as orgs
from tests.helpers import Backend, World, id_number

EN_HEADER = [
    "loan_reference",
    "product",
    "borrower_name",
    "id_number",
    "phone",
    "principal",
    "interest",
    "fees",
    "days_overdue",
    "last_payment_date",
]
ZH_HEADER = [
    "贷款编号",
    "产品",
    "借款人",
    "身份证号",
    "手机号",
    "本金",
    "利息",
    "费用",
    "逾期天数",
    "最后还款日",
]

GOOD_ID = id_number("11010519900307123")
OTHER_ID = id_number("31010419880915234")
BAD_CHECK = GOOD_ID[:17] + ("0" if GOOD_ID[17] != "0" else "1")


def row(ref: str, **overrides: str) -> list[str]:
    values = {
        "loan_reference": ref,
        "product": "credit_card",
        "borrower_name": "张伟",
        "id_number": GOOD_ID,
        "phone": "13812345678",
        "principal": "12000.50",
        "interest": "800",
        "fees": "99.9",
        "days_overdue": "45",
        "last_payment_date": "2026-06-15",
    }
    values.update(overrides)
    return [values[h] for h in EN_HEADER]


def csv_bytes(
    rows: list[list[str]], header: list[str] = EN_HEADER, encoding: str = "utf-8"
) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode(encoding)


def xlsx_bytes(rows: list[list[Any]], header: list[str] = EN_HEADER) -> bytes:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(header)
    for r in rows:
        sheet.append(r)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


TOMORROW = (beijing_today() + timedelta(days=1)).isoformat()
MIXED = [
    row("R-1"),  # line 2
    row("R-2", id_number=BAD_CHECK),  # 3
    row("R-3", phone="12812345678"),  # 4
    row("R-4", principal="-5.00"),  # 5
    row("R-5", last_payment_date=TOMORROW),  # 6
    row("R-6", borrower_name=""),  # 7
    row("R-7", product="mortgage"),  # 8
    row("R-8", product="网贷", id_number=OTHER_ID, phone="+86 139 0000 0002", days_overdue="120"),
    row("R-9", interest="1.234"),  # 10
    row("R-10", product="消费贷", principal="3000", days_overdue="5", last_payment_date=""),
]


async def run(
    env: Backend, data: bytes, tmp_path: Path, *, bank: str = "DEMO", **options: Any
) -> str:
    """Import `data` for the bank; `options` go to `run_import` (workers, batch_rows)."""
    path = tmp_path / "upload.bin"
    path.write_bytes(data)
    async with env.session() as s:
        found = await orgs.get_bank_by_code(s, code=bank)
        assert found is not None
        record = await importer.begin(
            s, bank_id=found.id, created_by=None, filename="accounts.csv", file_sha256="0" * 64
        )
    await importer.run_import(
        env.app.state.engine, env.settings.secret_key, import_id=record.id, path=path, **options
    )
    return record.id


async def load(env: Backend, import_id: str) -> PortfolioImport:
    async with env.session() as s:
        record = await s.get(PortfolioImport, import_id)
        assert record is not None
        return record


async def accounts(env: Backend) -> dict[str, LoanAccount]:
    async with env.session() as s:
        return {a.account_ref: a for a in await s.scalars(select(LoanAccount))}


async def test_good_rows_stored_bad_rows_reported_with_their_line(
    env: Backend, world: World, tmp_path: Path
) -> None:
    import_id = await run(env, csv_bytes(MIXED), tmp_path)
    record = await load(env, import_id)
    assert (record.status, record.rows_total, record.rows_done) == ("done", 10, 10)
    assert (record.rows_created, record.rows_failed, record.rows_unchanged) == (3, 7, 0)
    stored = await accounts(env)
    assert set(stored) == {"R-1", "R-8", "R-10"}
    r1 = stored["R-1"]
    assert (r1.principal_fen, r1.interest_fen, r1.fees_fen) == (1_200_050, 80_000, 9_990)
    assert (r1.tier, r1.band, r1.product) == ("M2", "medium", "credit_card")
    assert r1.last_payment_date == date(2026, 6, 15)
    assert r1.id_number_masked == GOOD_ID[:6] + "********" + GOOD_ID[-4:]
    assert r1.id_number_hash == security.keyed_hash(env.settings.secret_key, "id-number", GOOD_ID)
    assert r1.phone_hash == security.keyed_hash(env.settings.secret_key, "phone", "13812345678")
    assert security.decrypt_field(env.settings.secret_key, r1.phone_encrypted or "") == (
        "13812345678"
    )
    r8 = stored["R-8"]
    assert (r8.product, r8.tier, r8.band) == ("online_loan", "M3", "medium")
    assert r8.phone_hash == security.keyed_hash(env.settings.secret_key, "phone", "13900000002")
    r10 = stored["R-10"]
    assert (r10.product, r10.tier, r10.band, r10.last_payment_date) == (
        "consumer_loan",
        "M1",
        "small",
        None,
    )
    async with env.session() as s:
        problems = list(await s.scalars(select(ImportProblem).order_by(ImportProblem.line)))
    assert [(p.line, p.field, p.code) for p in problems] == [
        (3, "id_number", "id_number_invalid"),
        (4, "phone", "phone_invalid"),
        (5, "principal", "amount_negative"),
        (6, "last_payment_date", "date_in_future"),
        (7, "borrower_name", "missing"),
        (8, "product", "product_unknown"),
        (10, "interest", "amount_invalid"),
    ]
    for p in problems:  # the reason never carries the refused value
        assert BAD_CHECK not in p.reason and "12812345678" not in p.reason


async def test_reimport_changes_nothing_and_a_changed_row_updates(
    env: Backend, world: World, tmp_path: Path
) -> None:
    await run(env, csv_bytes(MIXED), tmp_path)
    before = {
        ref: (a.id, a.id_number_encrypted, a.row_digest) for ref, a in (await accounts(env)).items()
    }

    again = await load(env, await run(env, csv_bytes(MIXED), tmp_path))
    assert (again.rows_created, again.rows_updated, again.rows_unchanged, again.rows_failed) == (
        0,
        0,
        3,
        7,
    )
    after = {
        ref: (a.id, a.id_number_encrypted, a.row_digest) for ref, a in (await accounts(env)).items()
    }
    assert after == before  # not even re-encrypted
    # ...but stamped with the import that carried them last, in one statement for the batch.
    assert {a.import_id for a in (await accounts(env)).values()} == {again.id}

    changed = [
        row("R-1", days_overdue="95", fees="100"),
        row("R-10", product="消费贷", principal="3000", days_overdue="5", last_payment_date=""),
    ]
    third = await load(env, await run(env, csv_bytes(changed), tmp_path))
    assert (third.rows_created, third.rows_updated, third.rows_unchanged) == (0, 1, 1)
    stored = await accounts(env)
    assert (stored["R-1"].days_overdue, stored["R-1"].tier, stored["R-1"].fees_fen) == (
        95,
        "M3",
        10_000,
    )
    assert stored["R-1"].import_id == third.id
    assert stored["R-10"].import_id == third.id  # unchanged, in the file: restamped
    assert stored["R-8"].import_id == again.id  # not in the file: left as it was
    assert stored["R-1"].id == before["R-1"][0]
    assert await env.count(LoanAccount) == 3


async def test_raw_columns_hold_neither_id_number_nor_phone(
    env: Backend, world: World, tmp_path: Path
) -> None:
    await run(env, csv_bytes([row("R-1")]), tmp_path)
    async with env.app.state.engine.connect() as conn:
        raw = (await conn.execute(text("SELECT * FROM loan_accounts"))).all()
    assert len(raw) == 1
    dump = " ".join(str(v) for v in raw[0])
    assert GOOD_ID not in dump and GOOD_ID[6:14] not in dump
    assert "13812345678" not in dump


async def test_chinese_headers_gb18030_and_bom(env: Backend, world: World, tmp_path: Path) -> None:
    rows = [row("Z-1", product="信用卡"), row("Z-2", product="消费贷")]
    gb = await load(env, await run(env, csv_bytes(rows, ZH_HEADER, "gb18030"), tmp_path))
    assert (gb.status, gb.rows_created) == ("done", 2)
    bom = await load(env, await run(env, csv_bytes(rows, ZH_HEADER, "utf-8-sig"), tmp_path))
    assert (bom.status, bom.rows_unchanged) == ("done", 2)
    assert {a.borrower_name for a in (await accounts(env)).values()} == {"张伟"}


async def test_xlsx_with_typed_cells(env: Backend, world: World, tmp_path: Path) -> None:
    rows: list[list[Any]] = [
        ["X-1", "信用卡", "李娜", OTHER_ID, 13900000002, 5000.5, 0, 12, 10, date(2026, 5, 1)],
        ["X-2", "credit_card", "李娜", BAD_CHECK, "13900000002", "1", "0", "0", "3", None],
    ]
    record = await load(env, await run(env, xlsx_bytes(rows, ZH_HEADER), tmp_path))
    assert (record.status, record.rows_created, record.rows_failed) == ("done", 1, 1)
    x1 = (await accounts(env))["X-1"]
    assert (x1.principal_fen, x1.fees_fen, x1.last_payment_date) == (
        500_050,
        1_200,
        date(2026, 5, 1),
    )
    async with env.session() as s:
        (problem,) = await importer.problems(s, import_id=record.id)
    assert (problem.line, problem.code) == (3, "id_number_invalid")
    # The same rows as CSV: the same digests, so nothing changes.
    as_csv = [[str(c) if c is not None else "" for c in r] for r in rows[:1]]
    as_csv[0][5], as_csv[0][9] = "5000.50", "2026-05-01"
    again = await load(env, await run(env, csv_bytes(as_csv, ZH_HEADER), tmp_path))
    assert again.rows_unchanged == 1


async def test_a_file_without_a_required_column_fails_as_a_whole(
    env: Backend, world: World, tmp_path: Path
) -> None:
    header = [h for h in EN_HEADER if h != "phone"]
    record = await load(env, await run(env, csv_bytes([], header), tmp_path))
    assert record.status == "failed"
    assert "phone" in (record.failure or "")


async def test_duplicate_reference_in_one_file(env: Backend, world: World, tmp_path: Path) -> None:
    data = csv_bytes([row("D-1"), row("D-1", fees="1")])
    record = await load(env, await run(env, data, tmp_path))
    assert (record.rows_created, record.rows_failed) == (1, 1)


async def test_same_reference_at_another_bank_is_another_account(
    env: Backend, world: World, tmp_path: Path
) -> None:
    await run(env, csv_bytes([row("R-1")]), tmp_path)
    record = await load(env, await run(env, csv_bytes([row("R-1")]), tmp_path, bank="EAST"))
    assert record.rows_created == 1
    assert await env.count(LoanAccount) == 2


async def test_batches_share_a_transaction_until_it_is_committed(
    env: Backend, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three 2-row batches per commit: another connection sees the accounts three batches at a
    time. (On SQLite, a batch's savepoint opened the transaction and releasing it committed.)"""
    monkeypatch.setattr(importer, "COMMIT_ROWS", 6)
    monkeypatch.setattr(importer, "COMMIT_SECONDS", 3600.0)
    monkeypatch.setattr(importer, "SQLITE_COMMIT_SECONDS", 3600.0)
    seen: list[tuple[int, int]] = []
    write_batch = importer._write_batch

    async def write_then_look(*args: Any) -> None:
        await write_batch(*args)
        seen.append((await env.count(LoanAccount), (await load(env, import_id)).rows_done))

    monkeypatch.setattr(importer, "_write_batch", write_then_look)
    path = tmp_path / "seven.csv"
    path.write_bytes(csv_bytes([row(f"T-{i}") for i in range(7)]))
    async with env.session() as s:
        bank = await orgs.get_bank_by_code(s, code="DEMO")
        assert bank is not None
        import_id = (
            await importer.begin(
                s, bank_id=bank.id, created_by=None, filename="a.csv", file_sha256="0" * 64
            )
        ).id
    await importer.run_import(
        env.app.state.engine,
        env.settings.secret_key,
        import_id=import_id,
        path=path,
        workers=0,
        batch_rows=2,
    )
    assert seen == [(0, 0), (0, 0), (0, 0), (6, 6)]
    assert await env.count(LoanAccount) == 7
    assert (await load(env, import_id)).rows_done == 7


async def test_an_import_beside_other_writers(
    env: Backend, world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Other connections commit while the import's batches read and write: the import waits for
    the database's write lock instead of failing (on SQLite, a transaction that read first and
    then wrote after another's commit was refused at once)."""
    monkeypatch.setattr(importer, "COMMIT_ROWS", 4)
    stop = asyncio.Event()
    writes = 0

    async def write_elsewhere() -> None:
        nonlocal writes
        while not stop.is_set():
            async with env.session() as s:
                await s.execute(
                    text("UPDATE banks SET name = :name WHERE code = 'EAST'"),
                    {"name": f"东{writes}"},
                )
            writes += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(write_elsewhere())
    try:
        import_id = await run(
            env, csv_bytes([row(f"W-{i}") for i in range(60)]), tmp_path, workers=0, batch_rows=2
        )
    finally:
        stop.set()
        await other
    record = await load(env, import_id)
    assert (record.status, record.rows_created) == ("done", 60)
    assert writes > 0


# --- the API ------------------------------------------------------------------------------------


async def post_file(
    client: httpx.AsyncClient, actor: Any, data: bytes, name: str = "accounts.csv"
) -> httpx.Response:
    return await client.post(
        "/api/v1/imports", headers=actor.headers, files={"file": (name, io.BytesIO(data))}
    )


async def finish(env: Backend) -> None:
    await asyncio.gather(*list(import_tasks(env.app).values()))


async def test_api_upload_progress_and_report(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    r = await post_file(client, world.bank_demo, csv_bytes(MIXED))
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "running" and body["rows_done"] == 0
    await finish(env)
    r = await client.get(f"/api/v1/imports/{body['id']}", headers=world.bank_demo.headers)
    assert r.status_code == 200
    got = r.json()
    assert (got["status"], got["rows_total"], got["rows_done"]) == ("done", 10, 10)
    assert (got["rows_created"], got["rows_failed"]) == (3, 7)
    # Same bytes again: accepted, and nothing changes.
    r2 = await post_file(client, world.bank_demo, csv_bytes(MIXED))
    await finish(env)
    again = (
        await client.get(f"/api/v1/imports/{r2.json()['id']}", headers=world.bank_demo.headers)
    ).json()
    assert (again["rows_created"], again["rows_unchanged"]) == (0, 3)
    assert again["file_sha256"] == got["file_sha256"]

    listed = (await client.get("/api/v1/imports", headers=world.bank_demo2.headers)).json()
    assert [i["id"] for i in listed] == [r2.json()["id"], body["id"]]

    report = await client.get(
        f"/api/v1/imports/{body['id']}/problems.csv", headers=world.bank_demo.headers
    )
    assert report.status_code == 200
    assert report.headers["content-type"].startswith("text/csv")
    lines = report.content.decode("utf-8-sig").splitlines()
    assert lines[0] == "line,field,code,reason"
    assert lines[1].startswith("3,id_number,id_number_invalid,")
    assert len(lines) == 8
    assert BAD_CHECK not in report.text and "12812345678" not in report.text
    # The stored upload is gone once imported.
    assert not importer.stored_file(env.settings.data_dir, body["id"]).exists()


async def test_api_other_bank_and_other_roles(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    r = await post_file(client, world.bank_demo, csv_bytes([row("R-1")]))
    await finish(env)
    import_id = r.json()["id"]
    for path in (f"/api/v1/imports/{import_id}", f"/api/v1/imports/{import_id}/problems.csv"):
        other = await client.get(path, headers=world.bank_east.headers)
        assert other.status_code == 404
        assert (await client.get(path, headers=world.mediator.headers)).status_code == 403
        assert (await client.get(path)).status_code == 401
    assert (await client.get("/api/v1/imports", headers=world.bank_east.headers)).json() == []
    assert (await post_file(client, world.alice, csv_bytes([]))).status_code == 403
    assert (
        await client.get("/api/v1/imports/not-an-id", headers=world.bank_demo.headers)
    ).status_code == 404


async def test_api_refuses_an_empty_file(client: httpx.AsyncClient, world: World) -> None:
    r = await post_file(client, world.bank_demo, b"")
    assert r.status_code == 422
    assert r.json()["code"] == "empty_file"


async def test_api_xlsx_upload(client: httpx.AsyncClient, env: Backend, world: World) -> None:
    data = xlsx_bytes([row("X-1")])
    r = await post_file(client, world.bank_demo, data, name="portfolio.xlsx")
    await finish(env)
    got = (
        await client.get(f"/api/v1/imports/{r.json()['id']}", headers=world.bank_demo.headers)
    ).json()
    assert (got["status"], got["rows_created"], got["filename"]) == ("done", 1, "portfolio.xlsx")


async def test_an_interrupted_import_is_marked_failed_when_read(
    client: httpx.AsyncClient, env: Backend, world: World
) -> None:
    async with env.session() as s:
        bank = await orgs.get_bank_by_code(s, code="DEMO")
        assert bank is not None
        record = await importer.begin(
            s,
            bank_id=bank.id,
            created_by=world.bank_demo.user_id,
            filename="a.csv",
            file_sha256="0" * 64,
        )
        record.started_at = record.started_at - importer.STALE_AFTER * 2
    got = (await client.get(f"/api/v1/imports/{record.id}", headers=world.bank_demo.headers)).json()
    assert got["status"] == "failed"
    assert "interrupted" in got["failure"]


async def test_imports_have_their_own_size_limit(env: Backend, world: World) -> None:
    """Other uploads stay under max_upload_bytes; an import file may be larger, up to its own."""
    from app.main import create_app

    # The app-wide cap is max_upload_bytes plus 256 KiB of multipart framing.
    settings = env.settings.model_copy(
        update={"max_upload_bytes": 4_000, "max_import_bytes": 600_000}
    )
    app = create_app(settings)
    try:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            big = csv_bytes([row(f"BIG-{i}") for i in range(4000)])  # ~420 KB
            assert 4_000 + 256 * 1024 < len(big) < 600_000
            r = await post_file(c, world.bank_demo, big)
            assert r.status_code == 202, r.text
            await asyncio.gather(*list(import_tasks(app).values()))
            r = await post_file(c, world.bank_demo, big * 2)
            assert r.status_code == 413
            # Elsewhere the general limit still holds.
            r = await c.post(
                "/api/v1/payments/import",
                headers=world.bank_demo.headers,
                files={"file": ("p.csv", io.BytesIO(big))},
            )
            assert r.status_code == 413
    finally:
        await app.state.engine.dispose()
    assert await env.count(LoanAccount) == 4000
