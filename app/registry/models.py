from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime


class RegistryEntry(Base):
    """One filing. Rows are only ever inserted; no personal data lives here.

    `entry_hash` covers every other column and `prev_hash` (the previous entry's `entry_hash`, 64
    zeros for the first), so editing or deleting a row breaks the chain from there on. The entry
    hashes are also the leaves of the RFC 6962 Merkle tree whose signed head is published.
    """

    __tablename__ = "registry_entries"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)  # 1, 2, …
    filing_no: Mapped[str] = mapped_column(String(20), unique=True)  # HJ-2026-000123
    agreement_id: Mapped[str] = mapped_column(ForeignKey("agreements.id"), unique=True)
    document_sha256: Mapped[str] = mapped_column(String(64), index=True)  # of the sealed PDF
    # Ed25519 signature of the document's SHA-256 (the 32 raw bytes), base64; key_id names the key.
    document_signature: Mapped[str] = mapped_column(String(100))
    key_id: Mapped[str] = mapped_column(String(16))
    filed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64), unique=True)
