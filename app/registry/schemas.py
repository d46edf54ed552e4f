"""Public registry responses. Times are UTC with Z, as the registry hashes and signs them."""

from pydantic import BaseModel, Field


class FilingRead(BaseModel):
    """One filing's public entry: no personal data. With the public key, anyone can recompute
    `entry_hash` from these fields and check `document_signature`."""

    filing_no: str = Field(examples=["HJ-2026-000123"])
    filed_at: str = Field(examples=["2026-11-23T08:21:02Z"])
    document_sha256: str
    entry_hash: str
    prev_hash: str
    seq: int
    agreement_id: str
    document_signature: str = Field(description="base64 Ed25519 signature of the SHA-256 bytes")
    key_id: str


class TreeHeadRead(BaseModel):
    """The signed head of the registry's Merkle tree (RFC 6962) over every entry hash.

    `signature` is base64 Ed25519 over "hejie-sth-v1\\n{size}\\n{root_hash}\\n{signed_at}".
    """

    size: int
    root_hash: str
    signed_at: str
    signature: str
    key_id: str


class InclusionProofRead(BaseModel):
    """A filing's audit path (RFC 9162 §2.1.3); leaf data is the 32 bytes of its entry hash."""

    filing_no: str
    leaf_index: int
    tree_size: int
    leaf_hash: str
    audit_path: list[str]
    root_hash: str


class MaskedParties(BaseModel):
    """People by masked name (王*), organisations in full."""

    borrower: str | None = None
    bank: str | None = None
    institution: str | None = None
    mediator: str | None = None


class VerifyResult(BaseModel):
    """The verdict on an uploaded document; every verdict is a 200."""

    valid: bool
    status: str = Field(description="valid | altered | unknown | invalid")
    reason: str = Field(
        description="stable code: filed, document_differs, filing_not_found, not_filed, "
        "filing_mismatch, entry_hash_mismatch, unknown_key, signature_invalid"
    )
    message: str = Field(description="the verdict in English")
    document_sha256: str = Field(description="SHA-256 of the uploaded bytes")
    filing_no: str | None = None
    filed_at: str | None = None
    parties: MaskedParties | None = None
