"""Master-key providers that need no server: env, file, the dev default, and the cache."""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
from pathlib import Path

import pytest
from pydantic import SecretStr

from omnify.core.crypto import decrypt_str, encrypt_str, rewrap
from omnify.core.secrets import (
    EnvBackend,
    FileBackend,
    KeyRing,
    KeyRingCache,
    MasterKeyConfigError,
    backend_from_settings,
    dev_key_file,
    load_keyring,
)
from omnify.settings import Settings

K1, K2 = os.urandom(32), os.urandom(32)


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def settings(tmp_path: Path, **kw: object) -> Settings:
    return Settings(data_dir=tmp_path, _env_file=None, **kw)  # type: ignore[call-arg]


# ------------------------------------------------------------------------------------ env
def test_env_first_key_is_active(tmp_path: Path) -> None:
    s = settings(tmp_path, secrets_backend="env", master_keys=f"k2:{b64(K2)}, k1:{b64(K1)}")
    ring = load_keyring(s)
    assert ring.active_key_id == "k2" and ring.active_key == K2 and ring.get("k1") == K1
    assert ring.key_ids == ("k2", "k1")
    assert not dev_key_file(s).exists()


def test_env_accepts_urlsafe_unpadded_base64(tmp_path: Path) -> None:
    raw = bytes(range(250, 256)) * 5 + b"\xfb\xff"
    encoded = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    assert "-" in encoded or "_" in encoded
    ring = load_keyring(settings(tmp_path, master_keys=f"k1:{encoded}"))
    assert ring.active_key == raw


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("k1:" + b64(b"x" * 16), "32 bytes"),
        ("k1:not*base64", "not valid base64"),
        ("k1" + b64(K1), "key_id:base64key"),
        (f"k1:{b64(K1)},k1:{b64(K2)}", "twice"),
        (f"../k:{b64(K1)}", "invalid master key id"),
        (" , ", "empty"),
    ],
    ids=["short-key", "not-base64", "no-colon", "twice", "bad-key-id", "empty"],  # values are random: stable ids
)
def test_env_rejects_bad_values_without_echoing_keys(tmp_path: Path, value: str, message: str) -> None:
    with pytest.raises(MasterKeyConfigError) as err:
        EnvBackend(SecretStr(value)).load()
    assert message in str(err.value)
    assert b64(K1) not in str(err.value) and b64(K2) not in str(err.value)


def test_env_rotation_prints_value_to_deploy(tmp_path: Path) -> None:
    backend = EnvBackend(SecretStr(f"k1:{b64(K1)}"))
    new = backend.add_key()
    assert new.env_value is not None and new.backend == "env"
    assert b64(K1) not in repr(new) and "**********" in repr(new)
    ring = KeyRing.from_env_value(new.env_value.get_secret_value())
    assert ring.active_key_id == new.key_id != "k1" and ring.get("k1") == K1

    retired = EnvBackend(new.env_value).remove_key("k1")
    assert retired is not None and retired.env_value is not None
    assert KeyRing.from_env_value(retired.env_value.get_secret_value()).key_ids == (new.key_id,)
    with pytest.raises(MasterKeyConfigError, match="active master key cannot be removed"):
        EnvBackend(new.env_value).remove_key(new.key_id)


# ----------------------------------------------------------------------------------- file
def write_doc(path: Path, doc: object) -> None:
    path.write_text(json.dumps(doc))
    path.chmod(0o600)


def test_file_backend_load_add_remove(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    write_doc(path, {"active": "k1", "keys": {"k1": b64(K1)}})
    s = settings(tmp_path, env="production", secrets_backend="file", master_key_file=path)
    backend = backend_from_settings(s)
    assert isinstance(backend, FileBackend)
    first = backend.load()
    blob = encrypt_str("token", first, b"ctx")

    new = backend.add_key()
    assert new.env_value is None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = backend.load()
    assert second.active_key_id == new.key_id and second.get("k1") == K1
    blob = rewrap(blob, second)

    backend.remove_key("k1")
    third = load_keyring(s)
    assert third.key_ids == (new.key_id,)
    assert decrypt_str(blob, third, b"ctx") == "token"
    assert not list(tmp_path.glob(".keys.json.*"))  # no temp files left behind


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('["k1"]', "JSON object"),
        (json.dumps({"active": "k9", "keys": {"k1": b64(K1)}}), "not in the key ring"),
        ('{"active": "k1", "keys": {}}', "non-empty"),
    ],
    ids=["not-json", "not-an-object", "unknown-active-key", "no-keys"],
)
def test_file_backend_rejects_malformed_documents(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "keys.json"
    path.write_text(content)
    with pytest.raises(MasterKeyConfigError, match=message):
        FileBackend(path).load()


def test_file_missing_in_production_is_an_error(tmp_path: Path) -> None:
    s = settings(tmp_path, env="production", secrets_backend="file", master_key_file=tmp_path / "none.json")
    with pytest.raises(MasterKeyConfigError, match="does not exist"):
        load_keyring(s)
    with pytest.raises(MasterKeyConfigError, match="OMNIFY_MASTER_KEY_FILE"):
        load_keyring(settings(tmp_path, env="production", secrets_backend="file"))


# ------------------------------------------------------------------------------ dev default
def test_dev_default_generates_and_persists_a_private_key(tmp_path: Path) -> None:
    s = settings(tmp_path / "data", env="development", secrets_backend="env")
    first = load_keyring(s)
    path = dev_key_file(s)
    assert path.exists() and stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_keyring(s)
    assert again.active_key_id == first.active_key_id and again.active_key == first.active_key


def test_dev_key_creation_race_yields_one_key(tmp_path: Path) -> None:
    path = tmp_path / "race" / "master-keys.json"
    rings: list[KeyRing] = []
    barrier = threading.Barrier(6)

    def start() -> None:
        barrier.wait()
        rings.append(FileBackend(path, create_if_missing=True).load())

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r.active_key for r in rings}) == 1
    assert [p.name for p in path.parent.iterdir()] == ["master-keys.json"]


@pytest.mark.parametrize("env", ["production", "staging"])
def test_missing_key_outside_development_is_a_startup_error(tmp_path: Path, env: str) -> None:
    with pytest.raises(MasterKeyConfigError, match="OMNIFY_MASTER_KEYS is not set"):
        load_keyring(settings(tmp_path, env=env, secrets_backend="env"))
    assert not dev_key_file(settings(tmp_path)).exists()


def test_remote_backends_require_their_settings(tmp_path: Path) -> None:
    with pytest.raises(MasterKeyConfigError, match="OMNIFY_VAULT_URL"):
        backend_from_settings(settings(tmp_path, secrets_backend="vault"))
    with pytest.raises(MasterKeyConfigError, match="OMNIFY_AWS_SECRET_ID"):
        backend_from_settings(settings(tmp_path, secrets_backend="aws"))


# ---------------------------------------------------------------------------------- cache
class CountingBackend(FileBackend):
    loads = 0

    def load(self) -> KeyRing:
        self.loads += 1
        return super().load()


async def test_cache_reloads_for_a_key_rotated_elsewhere(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    write_doc(path, {"active": "k1", "keys": {"k1": b64(K1)}})
    backend = CountingBackend(path)
    cache = KeyRingCache(backend, ttl=3600, min_refresh_interval=0)
    assert (await cache.get()).active_key_id == "k1"
    await cache.get()
    assert backend.loads == 1

    new = FileBackend(path).add_key()  # another process rotates
    ring = await cache.for_key(new.key_id)
    assert new.key_id in ring and backend.loads == 2


async def test_cache_does_not_hammer_backend_for_unknown_ids(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    write_doc(path, {"active": "k1", "keys": {"k1": b64(K1)}})
    backend = CountingBackend(path)
    cache = KeyRingCache(backend, ttl=3600, min_refresh_interval=3600)
    await cache.get()
    for _ in range(5):
        ring = await cache.for_key("forged")
        assert "forged" not in ring
    assert backend.loads == 1
    cache.invalidate()
    await cache.get()
    assert backend.loads == 2


def test_every_domain_shares_one_cached_ring_per_configuration(tmp_path: Path) -> None:
    """Retiring a key invalidates the one cache that credentials and webhook secrets both seal
    with (two caches let webhook secrets be sealed with a retired key until the TTL ran out)."""
    from omnify.credentials.keys import keyrings_for
    from omnify.webhooks.keys import keyring_cache

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, other = settings(tmp_path / "a"), settings(tmp_path / "b")
    assert keyrings_for(first) is keyring_cache(first) is keyring_cache(settings(tmp_path / "a"))
    assert keyring_cache(other) is not keyring_cache(first)
