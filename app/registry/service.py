"""The filing registry (备案): filing numbers, the hash-chained log, its signed Merkle head, and
verifying a document someone holds against it.

Who calls what: agreements.service files an agreement (`next_filing_no`, then `append`, in the
transaction that takes the last signature); the public API and the /verify page read (`head`,
`proof`, `get_by_filing_no`, `public_record`, `verify_document`); `hejie registry audit` walks the
whole log (`audit`).

Canonical forms, so anyone holding the public key can check the registry without our code:

* Entry hash: SHA-256 (lowercase hex) of the UTF-8 text of these nine lines joined by "\\n", with
  no trailing newline::

      hejie-registry-entry-v1
      seq=<decimal>
      filing_no=HJ-2026-000123
      agreement_id=<32 hex>
      document_sha256=<64 lowercase hex>
      document_signature=<base64 of the 64-byte Ed25519 signature>
      key_id=<16 hex>
      filed_at=<UTC, whole seconds: 2026-11-23T08:21:02Z>
      prev_hash=<64 hex; 64 zeros for seq 1>

* Document signature: Ed25519 over the 32 raw bytes of the sealed PDF's SHA-256.
* Merkle leaves (RFC 6962 / RFC 9162): the 32 raw bytes of each `entry_hash`, in seq order.
* Signed tree head: Ed25519 over the UTF-8 text
  ``hejie-sth-v1\\n{size}\\n{root_hash}\\n{signed_at}`` (root in lowercase hex, signed_at in
  UTC whole seconds with Z; no trailing newline).
"""

import hashlib
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypedDict

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app import locking
from app.agreements.models import Agreement
from app.config import Settings
from app.db import utcnow
from app.errors import Conflict, Invalid, NotFound
from app.i18n import SHANGHAI
from app.registry import keys, merkle
from app.registry.models import RegistryEntry

LOCK_KEY = "registry"
ENTRY_FORMAT = "hejie-registry-entry-v1"
TREE_HEAD_FORMAT = "hejie-sth-v1"
GENESIS_HASH = "0" * 64
FILING_PREFIX = "HJ"
COUNTER_DIGITS = 6
MAX_COUNTER = 10**COUNTER_DIGITS - 1
FILING_NO = re.compile(r"HJ-[0-9]{4}-[0-9]{6}")
# The sealed PDF carries its filing number in its document info as an uncompressed literal.
EMBEDDED_FILING_NO = re.compile(rb"hejie-filing:(HJ-[0-9]{4}-[0-9]{6})")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
AUDIT_BATCH = 1000
# What /verify accepts: a sealed agreement is a few hundred KiB; a scan of one a few MiB.
MAX_DOCUMENT_BYTES = 20 * 1024 * 1024


def is_filing_no(value: str) -> bool:
    """Whether a string has the shape of a filing number (HJ-2026-000123)."""
    return FILING_NO.fullmatch(value) is not None


def utc_text(at: datetime) -> str:
    """A time as the registry writes it: UTC, whole seconds, with Z."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def mask_name(name: str) -> str:
    """A person's name as the public may see it: the first character, then * for each other."""
    name = name.strip()
    return name[:1] + "*" * (len(name) - 1) if name else ""


# --- filing ---------------------------------------------------------------------------------------


async def next_filing_no(session: AsyncSession, *, filed_at: datetime) -> str:
    """The next filing number of the year (Asia/Shanghai) that `filed_at` falls in.

    Takes the registry lock, held until the transaction ends: call `append` with this number in
    the same transaction, and no other filing can take the number (or the next seq) meanwhile.
    """
    year = filed_at.astimezone(SHANGHAI).year
    await locking.hold(session, LOCK_KEY)
    prefix = f"{FILING_PREFIX}-{year:04d}-"
    # Fixed width, zero-padded: the greatest string is the greatest number.
    last = await session.scalar(
        select(func.max(RegistryEntry.filing_no)).where(RegistryEntry.filing_no.startswith(prefix))
    )
    counter = int(last[len(prefix) :]) + 1 if last else 1
    if counter > MAX_COUNTER:
        raise Conflict(
            f"Filing numbers for {year} are used up ({MAX_COUNTER})", code="filing_numbers_used_up"
        )
    return f"{prefix}{counter:0{COUNTER_DIGITS}d}"


def entry_message(
    *,
    seq: int,
    filing_no: str,
    agreement_id: str,
    document_sha256: str,
    document_signature: str,
    key_id: str,
    filed_at: datetime,
    prev_hash: str,
) -> bytes:
    """The canonical serialisation an entry hash is taken over (see the module docstring)."""
    lines = (
        ENTRY_FORMAT,
        f"seq={seq}",
        f"filing_no={filing_no}",
        f"agreement_id={agreement_id}",
        f"document_sha256={document_sha256}",
        f"document_signature={document_signature}",
        f"key_id={key_id}",
        f"filed_at={utc_text(filed_at)}",
        f"prev_hash={prev_hash}",
    )
    return "\n".join(lines).encode("utf-8")


def entry_hash_of(entry: RegistryEntry) -> str:
    """The entry hash recomputed from the row's own columns."""
    message = entry_message(
        seq=entry.seq,
        filing_no=entry.filing_no,
        agreement_id=entry.agreement_id,
        document_sha256=entry.document_sha256,
        document_signature=entry.document_signature,
        key_id=entry.key_id,
        filed_at=entry.filed_at,
        prev_hash=entry.prev_hash,
    )
    return hashlib.sha256(message).hexdigest()


async def append(
    session: AsyncSession,
    settings: Settings,
    *,
    agreement_id: str,
    filing_no: str,
    document_sha256: str,
    filed_at: datetime,
) -> RegistryEntry:
    """File a sealed document: sign its SHA-256 and chain a new entry after the last one.

    `filed_at` is recorded to the whole second. The caller's transaction holds the registry lock
    from here (or from `next_filing_no`) until it ends.
    """
    if not is_filing_no(filing_no):
        raise ValueError(f"not a filing number: {filing_no!r}")
    if not _SHA256_HEX.fullmatch(document_sha256):
        raise ValueError("document_sha256 must be 64 lowercase hex characters")
    if filed_at.tzinfo is None:
        raise ValueError("filed_at must be timezone-aware")
    if int(filing_no[3:7]) != filed_at.astimezone(SHANGHAI).year:
        raise ValueError(f"{filing_no} is not a number of the year {filed_at} falls in")
    await locking.hold(session, LOCK_KEY)
    taken = await session.scalar(
        select(RegistryEntry.seq).where(
            (RegistryEntry.filing_no == filing_no) | (RegistryEntry.agreement_id == agreement_id)
        )
    )
    if taken is not None:
        raise Conflict(
            "This filing number or agreement is already in the registry", code="already_filed"
        )
    last = await session.scalar(select(RegistryEntry).order_by(RegistryEntry.seq.desc()).limit(1))
    key = keys.load(settings)
    entry = RegistryEntry(
        seq=last.seq + 1 if last else 1,
        filing_no=filing_no,
        agreement_id=agreement_id,
        document_sha256=document_sha256,
        document_signature=key.sign_b64(bytes.fromhex(document_sha256)),
        key_id=key.key_id,
        filed_at=filed_at.astimezone(UTC).replace(microsecond=0),
        prev_hash=last.entry_hash if last else GENESIS_HASH,
    )
    entry.entry_hash = entry_hash_of(entry)
    session.add(entry)
    await session.flush()
    return entry


# --- reading --------------------------------------------------------------------------------------


async def get_by_filing_no(session: AsyncSession, *, filing_no: str) -> RegistryEntry:
    """The entry of a filing; a malformed or unknown number is simply not found."""
    entry = None
    if is_filing_no(filing_no):
        entry = await session.scalar(
            select(RegistryEntry).where(RegistryEntry.filing_no == filing_no)
        )
    if entry is None:
        raise NotFound("No filing with this number", code="filing_not_found")
    return entry


async def masked_parties(session: AsyncSession, *, agreement_id: str) -> dict[str, str]:
    """The parties of a filed agreement as the public may see them.

    People (borrower, mediator) by masked name; the bank and the institution, being
    organisations, by their full names.
    """
    content = await session.scalar(select(Agreement.content).where(Agreement.id == agreement_id))
    parties = content.get("parties") if isinstance(content, dict) else None
    if not isinstance(parties, dict):
        return {}
    shown: dict[str, str] = {}
    for side, is_person in (
        ("borrower", True),
        ("bank", False),
        ("institution", False),
        ("mediator", True),
    ):
        party = parties.get(side)
        name = party.get("name") if isinstance(party, dict) else None
        if isinstance(name, str) and name.strip():
            shown[side] = mask_name(name) if is_person else name.strip()
    return shown


@dataclass(frozen=True)
class PublicRecord:
    """What anyone may see of a filing: no personal data beyond masked names."""

    filing_no: str
    filed_at: datetime
    document_sha256: str
    parties: dict[str, str]


async def public_record(session: AsyncSession, *, filing_no: str) -> PublicRecord:
    entry = await get_by_filing_no(session, filing_no=filing_no)
    return PublicRecord(
        filing_no=entry.filing_no,
        filed_at=entry.filed_at,
        document_sha256=entry.document_sha256,
        parties=await masked_parties(session, agreement_id=entry.agreement_id),
    )


async def _entry_hashes(session: AsyncSession) -> list[tuple[str, str]]:
    """(filing_no, entry_hash) of every entry, in seq order: the tree's leaves."""
    rows = await session.execute(
        select(RegistryEntry.filing_no, RegistryEntry.entry_hash).order_by(RegistryEntry.seq)
    )
    return [(str(no), str(h)) for no, h in rows]


def _leaf_hashes(entry_hashes: Sequence[str]) -> list[bytes]:
    return [merkle.leaf_hash(bytes.fromhex(h)) for h in entry_hashes]


def tree_head_message(*, size: int, root_hash: str, signed_at: str) -> bytes:
    """The canonical text a tree head signature is over (see the module docstring)."""
    return f"{TREE_HEAD_FORMAT}\n{size}\n{root_hash}\n{signed_at}".encode()


class TreeHead(TypedDict):
    size: int
    root_hash: str
    signed_at: str
    signature: str
    key_id: str


async def head(session: AsyncSession, settings: Settings) -> TreeHead:
    """The current signed tree head over every entry."""
    leaves = _leaf_hashes([h for _, h in await _entry_hashes(session)])
    root_hash = merkle.root_of_leaf_hashes(leaves).hex()
    signed_at = utc_text(utcnow())
    key = keys.load(settings)
    message = tree_head_message(size=len(leaves), root_hash=root_hash, signed_at=signed_at)
    return TreeHead(
        size=len(leaves),
        root_hash=root_hash,
        signed_at=signed_at,
        signature=key.sign_b64(message),
        key_id=key.key_id,
    )


class InclusionProof(TypedDict):
    filing_no: str
    leaf_index: int
    tree_size: int
    leaf_hash: str
    audit_path: list[str]
    root_hash: str


async def proof(session: AsyncSession, *, filing_no: str) -> InclusionProof:
    """The audit path of a filing's entry in the current tree (RFC 9162 §2.1.3)."""
    entry = await get_by_filing_no(session, filing_no=filing_no)
    rows = await _entry_hashes(session)
    index = next(i for i, (no, _) in enumerate(rows) if no == entry.filing_no)
    leaves = _leaf_hashes([h for _, h in rows])
    return InclusionProof(
        filing_no=entry.filing_no,
        leaf_index=index,
        tree_size=len(leaves),
        leaf_hash=leaves[index].hex(),
        audit_path=[p.hex() for p in merkle.inclusion_proof_of_leaf_hashes(leaves, index)],
        root_hash=merkle.root_of_leaf_hashes(leaves).hex(),
    )


# --- verifying a document -------------------------------------------------------------------------


class VerdictStatus(StrEnum):
    VALID = "valid"  # exactly the filed document, and the platform's signature on it checks
    ALTERED = "altered"  # names a filing that exists, but is not the document filed under it
    UNKNOWN = "unknown"  # matches no filing
    INVALID = "invalid"  # the registry's own record fails its checks, or names another filing


@dataclass(frozen=True)
class Verdict:
    """What a document someone holds is, as far as the registry knows."""

    status: VerdictStatus
    reason: str  # a stable machine code
    message: str  # the same in English, with the filing number
    document_sha256: str
    filing_no: str | None = None
    filed_at: datetime | None = None
    parties: dict[str, str] | None = None

    @property
    def valid(self) -> bool:
        return self.status == VerdictStatus.VALID

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["status"] = str(self.status)
        data["valid"] = self.valid
        data["filed_at"] = utc_text(self.filed_at) if self.filed_at else None
        return data


def entry_problem(entry: RegistryEntry, key: keys.PlatformKey) -> tuple[str, str] | None:
    """What is wrong with one entry on its own (hash, key, signature), or None."""
    if entry_hash_of(entry) != entry.entry_hash:
        return (
            "entry_hash_mismatch",
            f"the registry entry of {entry.filing_no} does not match its entry hash",
        )
    if entry.key_id != key.key_id:
        return (
            "unknown_key",
            f"the entry of {entry.filing_no} was signed with key {entry.key_id}, "
            f"not the platform's key {key.key_id}",
        )
    if not _SHA256_HEX.fullmatch(entry.document_sha256) or not keys.verify_b64(
        key.public_key, entry.document_signature, bytes.fromhex(entry.document_sha256)
    ):
        return (
            "signature_invalid",
            f"the platform's signature in the entry of {entry.filing_no} does not check",
        )
    return None


def embedded_filing_no(data: bytes) -> str | None:
    """The filing number a sealed PDF carries in its document info, if these bytes have one."""
    found = EMBEDDED_FILING_NO.search(data)
    return found.group(1).decode("ascii") if found else None


def check_pdf(data: bytes) -> None:
    """Refuse (422) what cannot be a sealed agreement: nothing at all, or not a PDF."""
    if not data:
        raise Invalid("The file is empty", code="empty_file")
    if not data.startswith(b"%PDF-"):
        raise Invalid("The file is not a PDF", code="not_a_pdf")


def check_filing_no(value: str | None) -> str | None:
    """A filing number typed by a person: blank is none; a malformed one is refused (422)."""
    value = (value or "").strip().upper()
    if not value:
        return None
    if not is_filing_no(value):
        raise Invalid("A filing number looks like HJ-2026-000123", code="invalid_filing_no")
    return value


async def verify_document(
    session: AsyncSession, settings: Settings, *, data: bytes, filing_no: str | None = None
) -> Verdict:
    """Whether `data` is a document filed in the registry (and, if given, under `filing_no`)."""
    claimed = check_filing_no(filing_no)
    sha = hashlib.sha256(data).hexdigest()
    matches = list(
        await session.scalars(
            select(RegistryEntry)
            .where(RegistryEntry.document_sha256 == sha)
            .order_by(RegistryEntry.seq)
        )
    )
    if matches:
        entry = next((e for e in matches if e.filing_no == claimed), matches[0])
        if claimed is not None and entry.filing_no != claimed:
            return Verdict(
                status=VerdictStatus.INVALID,
                reason="filing_mismatch",
                message=f"the document is the one filed under {entry.filing_no}, not {claimed}",
                document_sha256=sha,
                filing_no=entry.filing_no,
                filed_at=entry.filed_at,
            )
        problem = entry_problem(entry, keys.load(settings))
        if problem is not None:
            code, text = problem
            return Verdict(
                status=VerdictStatus.INVALID,
                reason=code,
                message=f"{text}: the registry record has been tampered with",
                document_sha256=sha,
                filing_no=entry.filing_no,
            )
        return Verdict(
            status=VerdictStatus.VALID,
            reason="filed",
            message=f"the document is the one filed under {entry.filing_no}",
            document_sha256=sha,
            filing_no=entry.filing_no,
            filed_at=entry.filed_at,
            parties=await masked_parties(session, agreement_id=entry.agreement_id),
        )
    named = claimed or embedded_filing_no(data)
    if named is not None:
        filed = await session.scalar(select(RegistryEntry).where(RegistryEntry.filing_no == named))
        if filed is not None:
            return Verdict(
                status=VerdictStatus.ALTERED,
                reason="document_differs",
                message=f"the document differs from the one filed under {named}",
                document_sha256=sha,
                filing_no=named,
                filed_at=filed.filed_at,
            )
        return Verdict(
            status=VerdictStatus.UNKNOWN,
            reason="filing_not_found",
            message=f"there is no filing {named}, and no filing matches the document",
            document_sha256=sha,
            filing_no=named,
        )
    return Verdict(
        status=VerdictStatus.UNKNOWN,
        reason="not_filed",
        message="no filing matches the document, and it names no filing number",
        document_sha256=sha,
    )


# --- audit ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditProblem:
    seq: int | None  # None: a filed agreement whose entry is missing altogether
    filing_no: str | None
    code: str
    detail: str


@dataclass(frozen=True)
class AuditReport:
    ok: bool
    count: int  # entries read
    root_hash: str  # of the entries as they are now
    problem: AuditProblem | None = None
    key_id: str = ""
    checked_at: str = field(default_factory=lambda: utc_text(utcnow()))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


async def _agreement_sealed(session: AsyncSession, agreement_ids: list[str]) -> dict[str, Any]:
    if not agreement_ids:
        return {}
    rows = await session.execute(
        select(Agreement.id, Agreement.filing_no, Agreement.sealed_sha256).where(
            Agreement.id.in_(agreement_ids)
        )
    )
    return {row.id: row for row in rows}


async def audit(session: AsyncSession, settings: Settings) -> AuditReport:
    """Walk the whole log: seq from 1 without gaps, each prev_hash link, each entry hash, each
    document signature, and each filed agreement's entry. Reports the first thing broken."""
    key = keys.load(settings)
    leaves: list[bytes] = []
    expected_seq = 1
    prev_hash = GENESIS_HASH
    problem: AuditProblem | None = None
    last_seq = 0
    while problem is None:
        batch = list(
            await session.scalars(
                select(RegistryEntry)
                .where(RegistryEntry.seq > last_seq)
                .order_by(RegistryEntry.seq)
                .limit(AUDIT_BATCH)
            )
        )
        if not batch:
            break
        sealed = await _agreement_sealed(session, [e.agreement_id for e in batch])
        for entry in batch:
            problem = _chain_problem(entry, expected_seq, prev_hash, key, sealed)
            if problem is not None:
                break
            leaves.append(merkle.leaf_hash(bytes.fromhex(entry.entry_hash)))
            expected_seq, prev_hash = entry.seq + 1, entry.entry_hash
        last_seq = batch[-1].seq
    if problem is None:
        problem = await _unrecorded_filing(session)
    if problem is not None:
        # Count what is there, past the break too.
        count = int(await session.scalar(select(func.count()).select_from(RegistryEntry)) or 0)
        hashes = [h for _, h in await _entry_hashes(session)]
        leaves = _leaf_hashes([h for h in hashes if _SHA256_HEX.fullmatch(h)])
    else:
        count = len(leaves)
    return AuditReport(
        ok=problem is None,
        count=count,
        root_hash=merkle.root_of_leaf_hashes(leaves).hex(),
        problem=problem,
        key_id=key.key_id,
    )


def _chain_problem(
    entry: RegistryEntry,
    expected_seq: int,
    prev_hash: str,
    key: keys.PlatformKey,
    sealed: dict[str, Any],
) -> AuditProblem | None:
    if entry.seq != expected_seq:
        return AuditProblem(
            seq=expected_seq,
            filing_no=None,
            code="entry_missing",
            detail=f"entry {expected_seq} is missing: after {expected_seq - 1} comes "
            f"{entry.seq} ({entry.filing_no})",
        )
    if entry.prev_hash != prev_hash:
        return AuditProblem(
            seq=entry.seq,
            filing_no=entry.filing_no,
            code="prev_hash_mismatch",
            detail=f"prev_hash {entry.prev_hash} is not the entry hash before it ({prev_hash})",
        )
    if not _SHA256_HEX.fullmatch(entry.entry_hash):
        return AuditProblem(
            seq=entry.seq,
            filing_no=entry.filing_no,
            code="entry_hash_mismatch",
            detail="the entry hash is not 64 lowercase hex characters",
        )
    found = entry_problem(entry, key)
    if found is not None:
        code, text = found
        return AuditProblem(seq=entry.seq, filing_no=entry.filing_no, code=code, detail=text)
    agreement = sealed.get(entry.agreement_id)
    if agreement is None or (
        (agreement.filing_no is not None and agreement.filing_no != entry.filing_no)
        or (
            agreement.sealed_sha256 is not None and agreement.sealed_sha256 != entry.document_sha256
        )
    ):
        return AuditProblem(
            seq=entry.seq,
            filing_no=entry.filing_no,
            code="agreement_mismatch",
            detail="the agreement this entry files does not carry its filing number and document",
        )
    return None


async def _unrecorded_filing(session: AsyncSession) -> AuditProblem | None:
    """A filed agreement with no entry: the newest entries were deleted, say."""
    filing_no = await session.scalar(
        select(Agreement.filing_no)
        .where(
            Agreement.filing_no.is_not(None),
            ~select(RegistryEntry.seq).where(RegistryEntry.agreement_id == Agreement.id).exists(),
        )
        .order_by(Agreement.filing_no)
        .limit(1)
    )
    if filing_no is None:
        return None
    return AuditProblem(
        seq=None,
        filing_no=filing_no,
        code="entry_missing",
        detail=f"agreement {filing_no} is filed but the registry has no entry for it",
    )
