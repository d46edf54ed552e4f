"""The registry service: numbers, the chain, the signed head, proofs, verdicts and the audit."""

import asyncio
import base64
import hashlib
import itertools
from datetime import UTC, datetime

import pytest
from sqlalchemy import delete, select, text, update

from app.agreements.models import Agreement
from app.errors import Conflict, Invalid, NotFound
from app.registry import keys, merkle, service
from app.registry.models import RegistryEntry
from tests.helpers import Backend
from tests.registry.helpers import (
    BANK_NAME,
    BORROWER_ID_MASKED,
    BORROWER_NAME,
    INSTITUTION_NAME,
    MEDIATOR_NAME,
    Filed,
    file_agreement,
    make_parties,
    one_byte_changed,
    sealed_pdf,
)

pytestmark = pytest.mark.usefixtures("env")


async def file_several(env: Backend, count: int) -> list[Filed]:
    filed = []
    async with env.session() as s:
        parties = await make_parties(s)
    for _ in range(count):
        async with env.session() as s:
            filed.append(await file_agreement(s, env.settings, parties))
    return filed


def canonical(entry: RegistryEntry) -> bytes:
    """The documented entry serialisation, written out here independently of the service."""
    return (
        "hejie-registry-entry-v1\n"
        f"seq={entry.seq}\n"
        f"filing_no={entry.filing_no}\n"
        f"agreement_id={entry.agreement_id}\n"
        f"document_sha256={entry.document_sha256}\n"
        f"document_signature={entry.document_signature}\n"
        f"key_id={entry.key_id}\n"
        f"filed_at={entry.filed_at.astimezone(UTC):%Y-%m-%dT%H:%M:%S}Z\n"
        f"prev_hash={entry.prev_hash}"
    ).encode()


async def entries(env: Backend) -> list[RegistryEntry]:
    async with env.session() as s:
        return list(await s.scalars(select(RegistryEntry).order_by(RegistryEntry.seq)))


# --- numbers and the chain ------------------------------------------------------------------------


async def test_filing_numbers_count_up_within_the_year_in_shanghai(env: Backend) -> None:
    async with env.session() as s:
        parties = await make_parties(s)
        # 16:30 UTC on New Year's Eve is already 00:30 on 1 January in Shanghai.
        new_year = datetime(2026, 12, 31, 16, 30, tzinfo=UTC)
        before = datetime(2026, 12, 31, 15, 59, 59, tzinfo=UTC)
        assert await service.next_filing_no(s, filed_at=before) == "HJ-2026-000001"
        a = await file_agreement(s, env.settings, parties, filed_at=before)
        b = await file_agreement(s, env.settings, parties, filed_at=before)
        c = await file_agreement(s, env.settings, parties, filed_at=new_year)
        assert [a.filing_no, b.filing_no, c.filing_no] == [
            "HJ-2026-000001",
            "HJ-2026-000002",
            "HJ-2027-000001",
        ]
        # The seq runs on across years; the counter restarts.
        assert [a.entry.seq, b.entry.seq, c.entry.seq] == [1, 2, 3]
        assert await service.next_filing_no(s, filed_at=before) == "HJ-2026-000003"
        assert await service.next_filing_no(s, filed_at=new_year) == "HJ-2027-000002"


async def test_entries_chain_sign_and_hash_as_documented(env: Backend) -> None:
    filed = await file_several(env, 3)
    rows = await entries(env)
    key = keys.load(env.settings)
    assert [r.seq for r in rows] == [1, 2, 3]
    assert rows[0].prev_hash == "0" * 64
    for prev, row in itertools.pairwise(rows):
        assert row.prev_hash == prev.entry_hash
    for row, f in zip(rows, filed, strict=True):
        assert row.filing_no == f.filing_no
        assert row.document_sha256 == f.sha256
        assert row.entry_hash == hashlib.sha256(canonical(row)).hexdigest()
        assert row.key_id == key.key_id
        signature = base64.b64decode(row.document_signature)
        assert keys.verify(key.public_key, signature, bytes.fromhex(f.sha256))
        assert row.filed_at.microsecond == 0
        # Nothing personal: names, the masked ID number.
        values = " ".join(str(getattr(row, c.key)) for c in RegistryEntry.__table__.columns)
        for personal in (BORROWER_NAME, "王*", BORROWER_ID_MASKED, MEDIATOR_NAME, BANK_NAME):
            assert personal not in values


async def test_append_refuses_reuse_and_bad_values(env: Backend) -> None:
    (first,) = await file_several(env, 1)
    now = datetime.now(UTC)
    async with env.session() as s:
        with pytest.raises(Conflict) as refused:
            await service.append(
                s,
                env.settings,
                agreement_id=first.agreement_id,
                filing_no=await service.next_filing_no(s, filed_at=now),
                document_sha256="ab" * 32,
                filed_at=now,
            )
        assert refused.value.code == "already_filed"
        for bad in (
            {"filing_no": "HJ-26-1"},
            {"document_sha256": "AB" * 32},
            {"document_sha256": "ab" * 31},
            {"filed_at": now.replace(tzinfo=None)},
            {"filing_no": "HJ-1999-000001"},
        ):
            args = {
                "agreement_id": first.agreement_id,
                "filing_no": f"HJ-{now.year}-000099",
                "document_sha256": "ab" * 32,
                "filed_at": now,
                **bad,
            }
            with pytest.raises(ValueError):
                await service.append(s, env.settings, **args)


async def test_two_filings_at_once_take_different_numbers(env: Backend) -> None:
    async with env.session() as s:
        parties = await make_parties(s)

    async def one() -> Filed:
        async with env.session() as s:
            return await file_agreement(s, env.settings, parties)

    a, b = await asyncio.gather(one(), one())
    assert {a.filing_no[-6:], b.filing_no[-6:]} == {"000001", "000002"}
    rows = await entries(env)
    assert [r.seq for r in rows] == [1, 2]
    assert rows[1].prev_hash == rows[0].entry_hash
    async with env.session() as s:
        assert (await service.audit(s, env.settings)).ok


def test_names_of_people_are_masked() -> None:
    assert service.mask_name("王芳") == "王*"
    assert service.mask_name("欧阳娜娜") == "欧***"
    assert service.mask_name(" 李 ") == "李"
    assert service.mask_name("") == ""


# --- head and proofs ------------------------------------------------------------------------------


async def test_signed_tree_head_and_inclusion_proofs(env: Backend) -> None:
    async with env.session() as s:
        empty = await service.head(s, env.settings)
    assert empty["size"] == 0
    assert empty["root_hash"] == hashlib.sha256(b"").hexdigest()

    filed = await file_several(env, 5)
    rows = await entries(env)
    key = keys.load(env.settings)
    async with env.session() as s:
        head = await service.head(s, env.settings)
    assert head["size"] == 5
    assert head["key_id"] == key.key_id
    assert head["root_hash"] == merkle.root([bytes.fromhex(r.entry_hash) for r in rows]).hex()
    message = f"hejie-sth-v1\n5\n{head['root_hash']}\n{head['signed_at']}".encode()
    assert keys.verify(key.public_key, base64.b64decode(head["signature"]), message)
    assert head["signed_at"].endswith("Z")

    for index, f in enumerate(filed):
        async with env.session() as s:
            proof = await service.proof(s, filing_no=f.filing_no)
        assert proof["leaf_index"] == index
        assert proof["tree_size"] == 5
        assert proof["root_hash"] == head["root_hash"]
        leaf_hash = merkle.leaf_hash(bytes.fromhex(rows[index].entry_hash))
        assert proof["leaf_hash"] == leaf_hash.hex()
        assert merkle.verify_inclusion(
            leaf_hash=leaf_hash,
            leaf_index=proof["leaf_index"],
            tree_size=proof["tree_size"],
            proof=[bytes.fromhex(p) for p in proof["audit_path"]],
            root=bytes.fromhex(head["root_hash"]),
        )
    async with env.session() as s:
        for missing in ("HJ-2026-999999", "nonsense", ""):
            with pytest.raises(NotFound):
                await service.proof(s, filing_no=missing)


# --- verdicts -------------------------------------------------------------------------------------


async def verify(env: Backend, data: bytes, filing_no: str | None = None) -> service.Verdict:
    async with env.session() as s:
        return await service.verify_document(s, env.settings, data=data, filing_no=filing_no)


async def test_the_filed_pdf_is_valid_with_masked_parties(env: Backend) -> None:
    _, filed, _ = await file_several(env, 3)
    for given in (None, filed.filing_no, filed.filing_no.lower()):
        verdict = await verify(env, filed.pdf, given)
        assert verdict.valid, verdict
        assert verdict.status == "valid"
        assert verdict.reason == "filed"
        assert verdict.filing_no == filed.filing_no
        assert verdict.filed_at == filed.entry.filed_at
        assert verdict.parties == {
            "borrower": "王*",
            "bank": BANK_NAME,
            "institution": INSTITUTION_NAME,
            "mediator": "欧***",
        }
    as_dict = verdict.to_dict()
    assert as_dict["valid"] is True
    assert as_dict["status"] == "valid"
    assert as_dict["filed_at"].endswith("Z")
    assert BORROWER_NAME not in str(as_dict)


async def test_a_pdf_with_one_byte_changed_is_altered(env: Backend) -> None:
    (filed,) = await file_several(env, 1)
    verdict = await verify(env, one_byte_changed(filed.pdf))
    assert verdict.status == "altered"
    assert not verdict.valid
    assert verdict.reason == "document_differs"
    assert verdict.filing_no == filed.filing_no
    assert verdict.message == f"the document differs from the one filed under {filed.filing_no}"
    assert verdict.parties is None
    # Named by the person rather than found in the file: still altered.
    other = b"%PDF-1.4\n% a retyped copy\n%%EOF\n"
    verdict = await verify(env, other, filed.filing_no)
    assert (verdict.status, verdict.filing_no) == ("altered", filed.filing_no)


async def test_unknown_documents_and_numbers(env: Backend) -> None:
    (filed,) = await file_several(env, 1)
    verdict = await verify(env, b"%PDF-1.4\n% something else\n%%EOF\n")
    assert (verdict.status, verdict.reason, verdict.filing_no) == ("unknown", "not_filed", None)
    # A number that was never issued, in the file or typed.
    verdict = await verify(env, sealed_pdf("HJ-2026-999999"))
    assert (verdict.status, verdict.reason) == ("unknown", "filing_not_found")
    assert verdict.filing_no == "HJ-2026-999999"
    verdict = await verify(env, b"%PDF-1.4\n%%EOF\n", "HJ-2031-000001")
    assert (verdict.status, verdict.reason) == ("unknown", "filing_not_found")
    with pytest.raises(Invalid) as refused:
        await verify(env, filed.pdf, "HJ 2026 1")
    assert refused.value.code == "invalid_filing_no"


async def test_the_right_document_under_the_wrong_number(env: Backend) -> None:
    first, second = await file_several(env, 2)
    verdict = await verify(env, first.pdf, second.filing_no)
    assert (verdict.status, verdict.reason) == ("invalid", "filing_mismatch")
    assert verdict.filing_no == first.filing_no
    assert second.filing_no in verdict.message


async def test_a_tampered_entry_is_invalid(env: Backend) -> None:
    _, filed = await file_several(env, 2)
    forged = one_byte_changed(filed.pdf)
    forged_sha = hashlib.sha256(forged).hexdigest()
    # Someone points the entry at a forged document.
    async with env.session() as s:
        await s.execute(
            update(RegistryEntry)
            .where(RegistryEntry.filing_no == filed.filing_no)
            .values(document_sha256=forged_sha)
        )
    verdict = await verify(env, forged)
    assert (verdict.status, verdict.reason) == ("invalid", "entry_hash_mismatch")
    assert not verdict.valid
    # ... and recomputes the entry hash too: the platform's signature still gives it away.
    async with env.session() as s:
        entry = await s.scalar(select(RegistryEntry).where(RegistryEntry.seq == 2))
        assert entry is not None
        entry.entry_hash = service.entry_hash_of(entry)
    verdict = await verify(env, forged)
    assert (verdict.status, verdict.reason) == ("invalid", "signature_invalid")
    assert "tampered" in verdict.message


# --- audit ----------------------------------------------------------------------------------------


async def audit(env: Backend) -> service.AuditReport:
    async with env.session() as s:
        return await service.audit(s, env.settings)


async def test_audit_of_an_intact_registry(env: Backend) -> None:
    empty = await audit(env)
    assert (empty.ok, empty.count, empty.problem) == (True, 0, None)
    await file_several(env, 4)
    report = await audit(env)
    assert report.ok
    assert report.count == 4
    async with env.session() as s:
        assert report.root_hash == (await service.head(s, env.settings))["root_hash"]
    assert report.to_dict()["problem"] is None


async def test_audit_finds_an_edited_row(env: Backend) -> None:
    filed = await file_several(env, 4)
    async with env.session() as s:
        await s.execute(
            text("UPDATE registry_entries SET document_sha256 = :sha WHERE seq = 2"),
            {"sha": "0" * 64},
        )
    report = await audit(env)
    assert not report.ok
    assert report.problem is not None
    assert (report.problem.seq, report.problem.filing_no) == (2, filed[1].filing_no)
    assert report.problem.code == "entry_hash_mismatch"
    assert report.count == 4


async def test_audit_finds_a_rehashed_row_by_its_signature_or_the_next_link(
    env: Backend,
) -> None:
    await file_several(env, 3)
    async with env.session() as s:
        entry = await s.scalar(select(RegistryEntry).where(RegistryEntry.seq == 2))
        assert entry is not None
        entry.document_sha256 = "1" * 64
        entry.entry_hash = service.entry_hash_of(entry)
    report = await audit(env)
    assert report.problem is not None
    assert (report.problem.seq, report.problem.code) == (2, "signature_invalid")


async def test_audit_finds_a_deleted_row(env: Backend) -> None:
    await file_several(env, 4)
    async with env.session() as s:
        await s.execute(text("DELETE FROM registry_entries WHERE seq = 3"))
    report = await audit(env)
    assert report.problem is not None
    assert (report.problem.seq, report.problem.code) == (3, "entry_missing")
    assert report.count == 3


async def test_audit_finds_the_newest_rows_deleted(env: Backend) -> None:
    filed = await file_several(env, 3)
    async with env.session() as s:
        await s.execute(delete(RegistryEntry).where(RegistryEntry.seq == 3))
    report = await audit(env)
    assert report.problem is not None
    assert report.problem.code == "entry_missing"
    assert report.problem.filing_no == filed[2].filing_no
    assert report.problem.seq is None


async def test_audit_finds_a_broken_link_and_a_seq_that_does_not_start_at_one(
    env: Backend,
) -> None:
    await file_several(env, 3)
    async with env.session() as s:
        await s.execute(
            text("UPDATE registry_entries SET prev_hash = :h WHERE seq = 3"), {"h": "f" * 64}
        )
    report = await audit(env)
    assert report.problem is not None
    assert (report.problem.seq, report.problem.code) == (3, "prev_hash_mismatch")

    async with env.session() as s:
        await s.execute(text("DELETE FROM registry_entries"))
        await s.execute(update(Agreement).values(filing_no=None))
    await file_several(env, 1)
    async with env.session() as s:
        await s.execute(text("UPDATE registry_entries SET seq = 7"))
    report = await audit(env)
    assert report.problem is not None
    assert (report.problem.seq, report.problem.code) == (1, "entry_missing")


async def test_audit_finds_an_agreement_that_no_longer_matches_its_entry(env: Backend) -> None:
    filed = await file_several(env, 2)
    async with env.session() as s:
        await s.execute(
            update(Agreement)
            .where(Agreement.id == filed[0].agreement_id)
            .values(sealed_sha256="2" * 64)
        )
    report = await audit(env)
    assert report.problem is not None
    assert (report.problem.seq, report.problem.code) == (1, "agreement_mismatch")
