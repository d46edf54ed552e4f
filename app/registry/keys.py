"""The platform's Ed25519 key: made once on first use, then only ever read.

The private key lives in `settings.registry_key_file` as unencrypted PKCS#8 PEM, mode 0600. It is
written aside and hard-linked into place, so two processes starting together cannot end up with
two different keys: the loser's link fails and it reads the winner's file. An existing file is
never replaced; a file that cannot be read as an Ed25519 key stops the caller instead, because a
new key would make every signature made so far unverifiable.
"""

import base64
import binascii
import contextlib
import hashlib
import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from app.config import Settings

log = logging.getLogger("hejie.registry")
KEY_FILE_MODE = 0o600


class RegistryKeyError(RuntimeError):
    """The key file exists but does not hold a usable Ed25519 private key."""


@dataclass(frozen=True)
class PlatformKey:
    private_key: Ed25519PrivateKey
    public_key: Ed25519PublicKey
    key_id: str
    public_pem: str

    def sign(self, data: bytes) -> bytes:
        return self.private_key.sign(data)

    def sign_b64(self, data: bytes) -> str:
        return base64.b64encode(self.sign(data)).decode("ascii")


def raw_public_bytes(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id_of(public_key: Ed25519PublicKey) -> str:
    """The first 16 hex characters of the SHA-256 of the 32 raw public key bytes."""
    return hashlib.sha256(raw_public_bytes(public_key)).hexdigest()[:16]


def public_pem_of(public_key: Ed25519PublicKey) -> str:
    """The public key as PEM (SubjectPublicKeyInfo)."""
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def public_key_from_pem(pem: str | bytes) -> Ed25519PublicKey:
    """Read a SubjectPublicKeyInfo PEM; anything but an Ed25519 public key is a ValueError."""
    key = serialization.load_pem_public_key(pem.encode("ascii") if isinstance(pem, str) else pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def verify(public_key: Ed25519PublicKey, signature: bytes, data: bytes) -> bool:
    """Whether `signature` is the key's Ed25519 signature of `data`."""
    try:
        public_key.verify(signature, data)
    except InvalidSignature:
        return False
    return True


def verify_b64(public_key: Ed25519PublicKey, signature_b64: str, data: bytes) -> bool:
    """`verify` for a base64 signature as stored and published; malformed base64 is False."""
    try:
        signature = base64.b64decode(signature_b64.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return False
    return len(signature) == 64 and verify(public_key, signature, data)


def _from_private(private_key: Ed25519PrivateKey) -> PlatformKey:
    public_key = private_key.public_key()
    return PlatformKey(
        private_key=private_key,
        public_key=public_key,
        key_id=key_id_of(public_key),
        public_pem=public_pem_of(public_key),
    )


def _read(path: Path) -> PlatformKey:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        log.warning("registry key file %s is readable by others (mode %o); use 0600", path, mode)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise RegistryKeyError(
            f"{path} does not hold an unencrypted PKCS#8 PEM private key; restore it from backup"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise RegistryKeyError(f"{path} holds a private key that is not Ed25519")
    return _from_private(key)


def _create(path: Path) -> None:
    """Write a new key to `path` unless some other process has written one first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd, scratch = tempfile.mkstemp(prefix=".registry-key.", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(scratch, KEY_FILE_MODE)
        try:
            os.link(scratch, path)  # fails if the name exists: never overwrites
        except FileExistsError:
            pass  # another process won the race; its key is the key
        except OSError:
            # A filesystem without hard links: O_EXCL keeps the no-overwrite rule, at the cost
            # of a moment in which another reader could see a partly written file.
            with contextlib.suppress(FileExistsError):
                out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
                with os.fdopen(out, "wb") as fh:
                    fh.write(pem)
                    fh.flush()
                    os.fsync(fh.fileno())
        else:
            log.info("made a new registry signing key at %s", path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(scratch)


_cache: dict[Path, PlatformKey] = {}
_cache_lock = threading.Lock()


def load_or_create(path: Path) -> PlatformKey:
    """The key in `path`, made first if there is none. Read once per process."""
    path = path.resolve()
    with _cache_lock:
        cached = _cache.get(path)
        if cached is not None:
            return cached
        if not path.exists():
            _create(path)
        key = _read(path)
        _cache[path] = key
        return key


def load(settings: Settings) -> PlatformKey:
    """The platform's registry key."""
    return load_or_create(settings.registry_key_file)


def forget_cached() -> None:
    """Read the key file again on next use (tests, and an operator restoring a backup)."""
    with _cache_lock:
        _cache.clear()
