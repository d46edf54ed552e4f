"""The platform's Ed25519 key: made once, kept private, never replaced, the same after reload."""

import base64
import hashlib
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from app.config import Settings
from app.registry import keys

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_cached_keys() -> Iterator[None]:
    keys.forget_cached()
    yield
    keys.forget_cached()


def test_made_once_private_and_the_same_after_reload(tmp_path: Path) -> None:
    path = tmp_path / "data" / "registry-ed25519.pem"
    first = keys.load_or_create(path)
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, unencrypted
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no scratch file left
    stored = path.read_bytes()

    assert keys.load_or_create(path) is first  # read once per process
    keys.forget_cached()
    again = keys.load_or_create(path)
    assert again is not first
    assert again.key_id == first.key_id
    assert again.public_pem == first.public_pem
    assert path.read_bytes() == stored


def test_settings_name_the_key_file(tmp_path: Path) -> None:
    settings = Settings(env="dev", data_dir=tmp_path, secret_key="x" * 40)
    key = keys.load(settings)
    assert settings.registry_key_file.is_file()
    assert keys.load_or_create(settings.registry_key_file) is key


def test_key_id_public_pem_and_signatures(tmp_path: Path) -> None:
    key = keys.load_or_create(tmp_path / "k.pem")
    raw = key.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert key.key_id == hashlib.sha256(raw).hexdigest()[:16]
    assert key.public_pem.startswith("-----BEGIN PUBLIC KEY-----")  # SubjectPublicKeyInfo
    public = keys.public_key_from_pem(key.public_pem)
    assert keys.key_id_of(public) == key.key_id

    digest = hashlib.sha256(b"sealed agreement").digest()
    signature = key.sign(digest)
    assert len(signature) == 64
    assert keys.verify(public, signature, digest)
    assert not keys.verify(public, signature, hashlib.sha256(b"sealed agreement!").digest())
    assert not keys.verify(public, bytes([signature[0] ^ 1]) + signature[1:], digest)
    assert keys.verify_b64(public, key.sign_b64(digest), digest)
    assert base64.b64decode(key.sign_b64(digest)) == signature  # Ed25519 is deterministic
    for junk in ("", "not base64!", base64.b64encode(b"short").decode(), "汉字"):
        assert not keys.verify_b64(public, junk, digest)
    # Another key's signature does not check.
    other = keys.load_or_create(tmp_path / "other.pem")
    assert other.key_id != key.key_id
    assert not keys.verify(other.public_key, signature, digest)


def test_a_public_key_of_another_kind_is_refused() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(ValueError, match="Ed25519"):
        keys.public_key_from_pem(pem)


def test_an_unreadable_key_file_stops_and_is_never_replaced(tmp_path: Path) -> None:
    path = tmp_path / "registry-ed25519.pem"
    path.write_bytes(b"not a key")
    path.chmod(0o600)
    with pytest.raises(keys.RegistryKeyError, match="restore it from backup"):
        keys.load_or_create(path)
    assert path.read_bytes() == b"not a key"


def test_processes_starting_together_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "shared" / "registry-ed25519.pem"
    script = (
        "import sys; from pathlib import Path; from app.registry import keys; "
        "print(keys.load_or_create(Path(sys.argv[1])).key_id)"
    )
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(path)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    ids = set()
    for run in runs:
        out, err = run.communicate(timeout=60)
        assert run.returncode == 0, err
        ids.add(out.strip())
    assert len(ids) == 1
    assert keys.load_or_create(path).key_id == ids.pop()
    assert [p.name for p in path.parent.iterdir()] == [path.name]


async def test_the_app_makes_the_key_when_it_starts(tmp_path: Path) -> None:
    from app.main import create_app

    data = tmp_path / "data"
    settings = Settings(
        data_dir=data,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}",
        secret_key="x" * 40,
        dispatch_in_app=False,
    )
    app = create_app(settings)
    assert not settings.registry_key_file.exists()
    async with app.router.lifespan_context(app):
        assert settings.registry_key_file.exists()
        assert stat.S_IMODE(settings.registry_key_file.stat().st_mode) == 0o600
