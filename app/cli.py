"""The `hejie` command for operators: serve, migrate, demo data, accounts, outbox, audit.

What a command changes (and the outbox, which it prints) is put into the audit log as an
operator's action (`app.audit.events`).
"""

import argparse
import asyncio
import contextlib
import getpass
import json
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from app import logs
from app.config import Settings, get_settings
from app.db import make_engine, make_sessionmaker
from app.errors import AppError

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent


def _alembic_config() -> Any:
    from alembic.config import Config

    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    return config


def db_upgrade(revision: str = "head") -> None:
    from alembic import command

    command.upgrade(_alembic_config(), revision)


def db_check() -> None:
    from alembic import command

    command.check(_alembic_config())


async def _in_session(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    """Run one unit of work in one transaction, like a request does."""
    engine = make_engine(get_settings().database_url)
    try:
        async with make_sessionmaker(engine)() as session:
            result = await work(session)
            await session.commit()
            return result
    finally:
        await engine.dispose()


def _run(work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    return asyncio.run(_in_session(work))


async def _operator_did(
    session: AsyncSession,
    event: str,
    *,
    outcome: str = "ok",
    subject_type: str | None = None,
    subject_id: str | None = None,
    **detail: str | int | bool | None,
) -> None:
    """Put what an operator did into the audit log, in the command's transaction (codes only)."""
    from app.audit import chain
    from app.audit.events import OPERATOR

    await chain.record(
        session,
        event=event,
        outcome=outcome,
        actor_role=OPERATOR,
        subject_type=subject_type,
        subject_id=subject_id,
        detail={**detail, "via": "cli"},
    )


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        proxy_headers=True,
        log_level="info",
        # Room frames are small JSON; compression would cost CPU per message and mix secrets
        # with attacker-influenced text in one compressed stream.
        ws_per_message_deflate=False,
        ws_max_size=64 * 1024,
    )


def cmd_db(args: argparse.Namespace) -> None:
    if args.action == "upgrade":
        db_upgrade()
        print("database is at the latest revision")
    elif args.action == "check":
        db_check()
        print("models and migrations agree")


def cmd_demo(args: argparse.Namespace) -> None:
    from app import demo

    settings = get_settings()
    if not settings.is_dev:
        # The demo accounts' passwords are published in this repository.
        raise SystemExit("error: `hejie demo` is for development only (HEJIE_ENV=dev)")

    async def work(session: AsyncSession) -> list[demo.StaffLogin] | None:
        if args.if_empty and await demo.has_other_data(session):
            return None
        return await demo.load(session, settings)

    logins = _run(work)
    if logins is None:
        print("The database already holds other data; demo data was not loaded.")
        return
    print(demo.describe(logins, settings))


def cmd_banks(args: argparse.Namespace) -> None:
    from app.audit.events import Event
    from app.orgs import service
    from app.orgs.models import Bank

    async def work(session: AsyncSession) -> Bank:
        bank = await service.create_bank(
            session, code=args.code, name=args.name, institution_code=args.institution
        )
        await _operator_did(
            session, Event.BANK_CREATED, subject_type="bank", subject_id=bank.id, code=bank.code
        )
        return bank

    bank = _run(work)
    print(json.dumps({"id": bank.id, "code": bank.code, "name": bank.name}, ensure_ascii=False))


def cmd_institutions(args: argparse.Namespace) -> None:
    from app.audit.events import Event
    from app.orgs import service
    from app.orgs.models import Institution

    async def work(session: AsyncSession) -> Institution:
        inst = await service.create_institution(session, code=args.code, name=args.name)
        await _operator_did(
            session,
            Event.INSTITUTION_CREATED,
            subject_type="institution",
            subject_id=inst.id,
            code=inst.code,
        )
        return inst

    inst = _run(work)
    print(json.dumps({"id": inst.id, "code": inst.code, "name": inst.name}, ensure_ascii=False))


def cmd_users(args: argparse.Namespace) -> None:
    from app import security
    from app.audit.events import OPERATOR, Event
    from app.users import service
    from app.users.models import Role, User

    if args.action == "create":
        password = args.password
        if password == "-":  # noqa: S105 - "-" means read it from stdin
            password = sys.stdin.readline().rstrip("\n")
        elif password is None:
            password = getpass.getpass("Password: ")

        async def create(session: AsyncSession) -> tuple[User, str]:
            user, secret = await service.create_staff(
                session,
                get_settings(),
                role=Role(args.role),
                username=args.username,
                password=password,
                display_name=args.display_name,
                bank_code=args.bank,
                institution_code=args.institution,
            )
            await _operator_did(
                session, Event.USER_CREATED, subject_type="user", subject_id=user.id, role=user.role
            )
            return user, secret

        user, secret = _run(create)
        print(
            json.dumps(
                {
                    "id": user.id,
                    "role": user.role,
                    "username": user.username,
                    "totp_secret": secret,
                    "totp_uri": security.totp_uri(secret, username=user.username or ""),
                },
                ensure_ascii=False,
            )
        )
    elif args.action == "totp":
        settings = get_settings()
        if not settings.is_dev:
            raise SystemExit("error: `hejie users totp` is for development only (HEJIE_ENV=dev)")
        found = _run(lambda s: service.get_by_username(s, username=args.username))
        current = service.totp_secret_of(settings, found) if found else None
        if current is None:
            raise SystemExit(f"error: no staff user {args.username}")
        print(security.current_totp(current))
    elif args.action in ("activate", "deactivate"):
        active = args.action == "activate"

        async def switch(session: AsyncSession) -> tuple[User, bool]:
            found = await service.get_by_username(session, username=args.username)
            if found is None or found.role == Role.BORROWER:
                raise SystemExit(f"error: no staff user {args.username}")
            changed = await service.set_active(
                session, user=found, active=active, actor_role=OPERATOR, via="cli"
            )
            return found, changed

        user, changed = _run(switch)
        print(json.dumps({"id": user.id, "is_active": user.is_active, "changed": changed}))


def cmd_documents(args: argparse.Namespace) -> None:
    from app.audit.events import Event
    from app.cases import documents

    settings = get_settings()

    async def work(session: AsyncSession) -> int:
        removed = await documents.sweep_unreferenced(session, settings)
        await _operator_did(session, Event.DOCUMENTS_SWEPT, removed=removed)
        return removed

    removed = _run(work)
    print(f"removed {removed} stored file(s) that no document refers to")


def cmd_retention(args: argparse.Namespace) -> None:
    from app.db import utcnow
    from app.rights import erasure, retention

    settings = get_settings()
    report = _run(lambda s: retention.run(s, settings, now=utcnow(), dry_run=args.dry_run))
    # The files go once the erasure that dropped their documents has committed.
    erasure.remove_files(report.files)
    print(json.dumps(report.counts()))


def cmd_outbox(args: argparse.Namespace) -> None:
    if getattr(args, "action", None) == "dispatch":
        _outbox_dispatch(once=args.once, interval=args.interval)
        return
    from app.notifications import service
    from app.validation import normalise_phone

    to = args.to
    if to:
        # Phones are stored as 11 digits; let an operator type +86 138 0000 0001 too.
        with contextlib.suppress(ValueError):
            to = normalise_phone(to)
    from app.audit.events import Event
    from app.notifications.models import OutboxMessage

    async def work(session: AsyncSession) -> list[OutboxMessage]:
        found = await service.recent(session, to=to, last=args.last)
        # It prints phone numbers and message texts: an export of personal data.
        await _operator_did(session, Event.EXPORT_OUTBOX, rows=len(found))
        return found

    messages = _run(work)
    for m in messages:
        print(
            json.dumps(
                {
                    "to": m.to_address,
                    "channel": m.channel,
                    "kind": m.kind,
                    "body": m.body,
                    "status": m.status,
                    "created_at": m.created_at.isoformat(),
                    "send_after": m.send_after.isoformat(),
                    "attempts": m.attempts,
                    "last_error": m.last_error,
                    "sent_at": m.sent_at.isoformat() if m.sent_at else None,
                },
                ensure_ascii=False,
            )
        )


def _outbox_dispatch(*, once: bool, interval: float) -> None:
    from app.notifications import dispatcher
    from app.notifications.senders import senders_from_settings

    settings = get_settings()

    async def work() -> dispatcher.DispatchResult:
        engine = make_engine(settings.database_url)
        try:
            return await dispatcher.run(
                make_sessionmaker(engine),
                senders_from_settings(settings),
                interval_seconds=interval,
                once=once,
            )
        finally:
            await engine.dispose()

    with contextlib.suppress(KeyboardInterrupt):
        result = asyncio.run(work())
        print(
            json.dumps(
                {
                    "sent": result.sent,
                    "retrying": result.retrying,
                    "failed": result.failed,
                    "held_until_morning": result.held,
                }
            )
        )


def cmd_registry(args: argparse.Namespace) -> None:
    from app.registry.keys import RegistryKeyError

    try:
        if args.action == "verify":
            _registry_verify(Path(args.file), filing_no=args.filing_no, as_json=args.json)
        elif args.action == "audit":
            _registry_audit(as_json=args.json)
    except RegistryKeyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


def _registry_verify(path: Path, *, filing_no: str | None, as_json: bool) -> None:
    from app.registry import service

    try:
        data = path.read_bytes()
    except OSError as exc:
        print(f"error: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        raise SystemExit(1) from None
    service.check_pdf(data)
    settings = get_settings()
    verdict = _run(lambda s: service.verify_document(s, settings, data=data, filing_no=filing_no))
    if as_json:
        print(json.dumps(verdict.to_dict(), ensure_ascii=False))
    else:
        line = f"{verdict.status.upper()}: {verdict.message} ({verdict.reason})"
        if verdict.valid and verdict.filed_at is not None:
            parties = ", ".join(f"{k}: {v}" for k, v in (verdict.parties or {}).items())
            line += f"; filed {service.utc_text(verdict.filed_at)}" + (
                f"; {parties}" if parties else ""
            )
        print(line)
    if not verdict.valid:
        raise SystemExit(1)


def _registry_audit(*, as_json: bool) -> None:
    from app.registry import service

    settings = get_settings()
    report = _run(lambda s: service.audit(s, settings))
    if as_json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    elif report.problem is None:
        print(f"registry OK: {report.count} entries, chain intact; root {report.root_hash}")
    else:
        p = report.problem
        where = f"seq {p.seq}" if p.seq is not None else "a filed agreement"
        print(
            f"registry BROKEN at {where} ({p.filing_no or 'no filing number'}): "
            f"{p.code}: {p.detail}"
        )
    if not report.ok:
        raise SystemExit(1)


def cmd_audit(args: argparse.Namespace) -> None:
    """`hejie audit verify`: walk the audit chain; exit 0 when intact, 1 at the first break."""
    from app.audit import chain

    anchor = None
    if args.expect_head:
        try:
            anchor = chain.parse_anchor(args.expect_head)
        except ValueError as exc:
            print(f"error: --expect-head: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
    report = _run(lambda s: chain.verify(s, anchor=anchor))
    head = f"{report.head_seq}:{report.head_hash}"
    if args.json:
        print(json.dumps({**report.to_dict(), "head": head}))
    elif report.problem is None:
        print(f"audit chain OK: {report.count} events, chain intact; head {head}")
    else:
        p = report.problem
        print(
            f"audit chain BROKEN at seq {p.seq}: {p.code}: {p.detail} "
            f"({report.count} events intact before it; last good {head})"
        )
    if not report.ok:
        raise SystemExit(1)


def cmd_repayment(args: argparse.Namespace) -> None:
    from app.db import utcnow
    from app.repayment import ledger

    settings = get_settings()
    if args.action == "due" and args.every:

        async def forever() -> None:
            engine = make_engine(settings.database_url)
            try:
                await ledger.run_due_forever(
                    make_sessionmaker(engine), settings, interval_seconds=args.every
                )
            finally:
                await engine.dispose()

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(forever())
    elif args.action == "due":
        result = _run(lambda s: ledger.run_due(s, settings, now=utcnow()))
        print(
            json.dumps(
                {
                    "defaulted": result.defaulted,
                    "reminded": result.reminded,
                    "reminders_dropped": result.reminders_dropped,
                }
            )
        )
    elif args.action == "import":
        _repayment_import(settings, Path(args.file), username=args.user)


def _repayment_import(settings: Settings, path: Path, *, username: str) -> None:
    from app.audit.events import Event
    from app.repayment import ledger
    from app.repayment.schemas import ImportReport
    from app.users import service as users
    from app.users.models import Role

    try:
        data = path.read_bytes()
    except OSError as exc:
        print(f"error: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        raise SystemExit(1) from None
    rows = ledger.csv_rows(data)

    async def work(session: AsyncSession) -> ImportReport:
        user = await users.get_by_username(session, username=username)
        if user is None or user.role != Role.BANK_STAFF or user.bank_id is None:
            raise SystemExit(f"error: no bank staff user {username}")
        report = await ledger.import_payments(
            session, settings, bank_id=user.bank_id, recorded_by=user, rows=rows
        )
        await _operator_did(
            session,
            Event.PAYMENTS_IMPORTED,
            subject_type="bank",
            subject_id=user.bank_id,
            recorded=report.recorded,
            duplicates=report.duplicates,
            errors=len(report.errors),
        )
        return report

    print(_run(work).model_dump_json())


def cmd_import(args: argparse.Namespace) -> None:
    """`hejie import accounts FILE --bank CODE`: a portfolio of overdue accounts."""
    import csv
    import hashlib

    import app.models  # noqa: F401  (every table, for the foreign keys' targets)
    from app import runtime
    from app.audit.events import Event
    from app.batch import importer
    from app.batch.models import PortfolioImport
    from app.orgs import service as orgs

    settings = get_settings()
    # As in the app: the checking thread and the database driver's thread hand the GIL over
    # within 1 ms (CPython's default 5 ms made the import ~20% slower on SQLite).
    sys.setswitchinterval(runtime.SWITCH_INTERVAL_SECONDS)
    path = Path(args.file)
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    except OSError as exc:
        print(f"error: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
        raise SystemExit(1) from None

    def progress(counts: importer.Counts, total: int | None) -> None:
        if total:
            share = min(counts.done / total, 1.0)
            bar = "#" * int(share * 30)
            line = f"\r[{bar:<30}] {counts.done:,}/{total:,} rows ({share:.0%})"
        else:
            line = f"\r{counts.done:,} rows"
        print(line, end="", file=sys.stderr, flush=True)

    async def work() -> tuple[PortfolioImport, importer.Counts, list[Any]]:
        engine = make_engine(settings.database_url)
        try:
            async with make_sessionmaker(engine)() as session:
                bank = await orgs.get_bank_by_code(session, code=args.bank)
                if bank is None:
                    raise SystemExit(f"error: no bank with code {args.bank}")
                record = await importer.begin(
                    session,
                    bank_id=bank.id,
                    created_by=None,
                    filename=path.name,
                    file_sha256=digest.hexdigest(),
                )
                await session.commit()
            counts = await importer.run_import(
                engine,
                settings.secret_key,
                import_id=record.id,
                path=path,
                progress=progress if sys.stderr.isatty() or args.progress else None,
            )
            async with make_sessionmaker(engine)() as session:
                finished = await session.get(PortfolioImport, record.id)
                assert finished is not None
                problems = await importer.problems(session, import_id=record.id)
                await _operator_did(
                    session,
                    Event.ACCOUNTS_IMPORTED,
                    outcome="ok" if finished.status == "done" else "failed",
                    subject_type="bank",
                    subject_id=finished.bank_id,
                    import_id=record.id,
                    rows=counts.done,
                    created=counts.created,
                    updated=counts.updated,
                    failed=counts.failed,
                )
                await session.commit()
                return finished, counts, problems
        finally:
            await engine.dispose()

    finished, counts, problems = asyncio.run(work())
    print(file=sys.stderr)
    summary: dict[str, Any] = {
        "import_id": finished.id,
        "status": finished.status,
        "rows": counts.done,
        "created": counts.created,
        "updated": counts.updated,
        "unchanged": counts.unchanged,
        "failed": counts.failed,
    }
    rows = [
        {"line": p.line, "field": p.field, "code": p.code, "reason": p.reason} for p in problems
    ]
    if args.problems:
        with open(args.problems, "w", encoding="utf-8-sig", newline="") as report:
            writer = csv.DictWriter(report, fieldnames=list(importer.PROBLEM_HEADER))
            writer.writeheader()
            writer.writerows(rows)
        summary["problems_file"] = args.problems
    else:
        summary["problems"] = rows
    if finished.failure:
        summary["failure"] = finished.failure
    print(json.dumps(summary, ensure_ascii=False))
    if finished.status != "done":
        raise SystemExit(1)


def _positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {raw!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hejie", description="Hejie 和解 operations")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the web application")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(func=cmd_serve)

    db = sub.add_parser("db", help="database migrations")
    db.add_argument("action", choices=["upgrade", "check"])
    db.set_defaults(func=cmd_db)

    demo = sub.add_parser("demo", help="load demo data (idempotent) and print the logins")
    demo.add_argument(
        "--if-empty", action="store_true", help="skip when the database holds non-demo data"
    )
    demo.set_defaults(func=cmd_demo)

    banks = sub.add_parser("banks", help="manage banks")
    banks_sub = banks.add_subparsers(dest="action", required=True)
    bank_create = banks_sub.add_parser("create")
    bank_create.add_argument("--code", required=True)
    bank_create.add_argument("--name", required=True)
    bank_create.add_argument("--institution", help="code of the institution mediating its cases")
    bank_create.set_defaults(func=cmd_banks)

    inst = sub.add_parser("institutions", help="manage mediation institutions")
    inst_sub = inst.add_subparsers(dest="action", required=True)
    inst_create = inst_sub.add_parser("create")
    inst_create.add_argument("--code", required=True)
    inst_create.add_argument("--name", required=True)
    inst_create.set_defaults(func=cmd_institutions)

    users = sub.add_parser("users", help="manage staff accounts")
    users_sub = users.add_subparsers(dest="action", required=True)
    create = users_sub.add_parser("create", help="create a staff account; prints its TOTP secret")
    create.add_argument("--role", required=True, choices=["mediator", "bank_staff", "admin"])
    create.add_argument("--username", required=True)
    create.add_argument("--password", help="the password, or - to read it from stdin")
    create.add_argument("--display-name")
    create.add_argument("--bank", help="bank code (bank_staff)")
    create.add_argument("--institution", help="institution code (mediator)")
    create.set_defaults(func=cmd_users)
    totp = users_sub.add_parser("totp", help="print a staff user's current TOTP code (dev only)")
    totp.add_argument("username")
    totp.set_defaults(func=cmd_users)
    for action, what in (
        ("activate", "let it sign in again"),
        ("deactivate", "stop it signing in"),
    ):
        switch = users_sub.add_parser(action, help=f"{what}: a staff account, by username")
        switch.add_argument("username")
        switch.set_defaults(func=cmd_users)

    docs = sub.add_parser("documents", help="uploaded documents")
    docs_sub = docs.add_subparsers(dest="action", required=True)
    sweep = docs_sub.add_parser(
        "sweep", help="delete stored files of refused uploads (no document refers to them)"
    )
    sweep.set_defaults(func=cmd_documents)

    retention = sub.add_parser("retention", help="personal data past its retention period")
    retention_sub = retention.add_subparsers(dest="action", required=True)
    purge = retention_sub.add_parser(
        "run",
        help="erase what has been kept long enough (closed cases, records of closed accounts, "
        "SMS texts, expired codes); prints the counts as JSON",
    )
    purge.add_argument("--dry-run", action="store_true", help="count only; change nothing")
    purge.set_defaults(func=cmd_retention)

    outbox = sub.add_parser("outbox", help="show what was sent (SMS, email); send what is due")
    outbox.add_argument("--to", help="only messages to this address or phone")
    outbox.add_argument("--last", type=_positive_int, default=20, help="how many (default 20)")
    outbox.set_defaults(func=cmd_outbox)
    outbox_sub = outbox.add_subparsers(dest="action")
    dispatch = outbox_sub.add_parser(
        "dispatch", help="send due messages with the configured senders, until stopped"
    )
    dispatch.add_argument("--once", action="store_true", help="send what is due now, then exit")
    dispatch.add_argument(
        "--interval", type=float, default=5.0, help="seconds between passes (default 5)"
    )
    dispatch.set_defaults(func=cmd_outbox)

    registry = sub.add_parser("registry", help="the filing registry of sealed agreements")
    registry_sub = registry.add_subparsers(dest="action", required=True)
    verify = registry_sub.add_parser(
        "verify", help="is this PDF a filed agreement? exit 0 when valid, 1 otherwise"
    )
    verify.add_argument("file", help="the PDF to check")
    verify.add_argument("--filing-no", help="the filing number it should be filed under")
    verify.add_argument("--json", action="store_true", help="print the verdict as JSON")
    verify.set_defaults(func=cmd_registry)
    audit = registry_sub.add_parser(
        "audit", help="check the whole hash chain; exit 0 when intact, 1 at the first break"
    )
    audit.add_argument("--json", action="store_true", help="print the report as JSON")
    audit.set_defaults(func=cmd_registry)

    audit_log = sub.add_parser("audit", help="the tamper-evident audit log")
    audit_sub = audit_log.add_subparsers(dest="action", required=True)
    audit_verify = audit_sub.add_parser(
        "verify",
        help="check the audit chain; exit 0 when intact, 1 at the first edited or missing row",
        description=(
            "Walks the audit events in order and recomputes each hash. An edited row, a deleted "
            "or moved one shows; rows deleted from the end do not, unless --expect-head names a "
            "row seen before (a head printed earlier, or one from the shipped JSON log)."
        ),
    )
    audit_verify.add_argument("--json", action="store_true", help="print the report as JSON")
    audit_verify.add_argument(
        "--expect-head",
        metavar="SEQ:HASH",
        help="a row seen earlier that must still be in the chain, with this hash",
    )
    audit_verify.set_defaults(func=cmd_audit)

    repayment = sub.add_parser("repayment", help="repayment plans: reminders, default, payments")
    repayment_sub = repayment.add_subparsers(dest="action", required=True)
    due = repayment_sub.add_parser(
        "due", help="send due installment reminders and default plans with too many late"
    )
    due.add_argument(
        "--every", type=_positive_int, help="repeat every SECONDS until stopped (default: once)"
    )
    due.set_defaults(func=cmd_repayment)
    pay_import = repayment_sub.add_parser(
        "import", help="record payments from a CSV: loan_reference,amount,paid_on,reference"
    )
    pay_import.add_argument("file", help="the CSV file (UTF-8)")
    pay_import.add_argument("--user", required=True, help="the bank staff username recording it")
    pay_import.set_defaults(func=cmd_repayment)

    imports = sub.add_parser("import", help="import a bank's portfolio of overdue accounts")
    imports_sub = imports.add_subparsers(dest="action", required=True)
    accounts = imports_sub.add_parser(
        "accounts",
        help="import accounts from a CSV (UTF-8 or GB18030) or XLSX; prints a JSON summary",
    )
    accounts.add_argument("file", help="the CSV or XLSX file")
    accounts.add_argument("--bank", required=True, help="the bank's code")
    accounts.add_argument(
        "--problems", help="write the refused rows to this CSV (default: in the JSON summary)"
    )
    accounts.add_argument(
        "--progress", action="store_true", help="show the progress bar even when not a terminal"
    )
    accounts.set_defaults(func=cmd_import)
    return parser


def _settings_or_exit() -> Settings:
    """Settings, validated before any command runs: a refused setting stops here, once."""
    try:
        settings = get_settings()
    except ValidationError as exc:
        for problem in exc.errors():
            message = str(problem["msg"]).removeprefix("Value error, ")
            if problem["loc"]:
                message = f"HEJIE_{str(problem['loc'][0]).upper()}: {message}"
            print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        # The default SQLite database lives here; in prod nothing else has created it yet.
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"error: cannot create HEJIE_DATA_DIR {settings.data_dir}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return settings


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    # Before `serve` too: with several workers, uvicorn would otherwise restart each worker
    # that dies on a refused setting, forever, instead of refusing to start.
    _settings_or_exit()
    # The audit events a command records, as JSON lines on stderr (stdout is the command's own
    # output); the server writes its own to stdout.
    audit_lines = None if args.command == "serve" else logs.audit_json_lines("stderr")
    try:
        _run_command(args)
    finally:
        if audit_lines is not None:
            logs.stop_audit_json_lines(audit_lines)


def _run_command(args: argparse.Namespace) -> None:
    try:
        args.func(args)
    except AppError as exc:
        print(f"error: {exc.message} ({exc.code})", file=sys.stderr)
        raise SystemExit(1) from None
    except DBAPIError as exc:
        if not _is_missing_table(exc):
            raise
        print(
            f"error: the database has no schema yet ({exc.orig}); run `hejie db upgrade` first",
            file=sys.stderr,
        )
        raise SystemExit(1) from None
    except (ConnectionError, socket.gaierror) as exc:
        print(f"error: cannot connect to the database: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


def _is_missing_table(exc: DBAPIError) -> bool:
    # SQLite says "no such table"; PostgreSQL raises UndefinedTableError (SQLSTATE 42P01).
    return "no such table" in str(exc.orig) or getattr(exc.orig, "sqlstate", None) == "42P01"


if __name__ == "__main__":
    main()
