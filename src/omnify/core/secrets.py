"""Master keys for envelope encryption, fetched from the configured secrets backend.

Master keys never encrypt payloads themselves: they only wrap per-record data keys
(see :mod:`omnify.core.crypto`). A :class:`KeyRing` therefore holds *every* master
key that may still be wrapping a stored data key, plus the one new records use (the
active key). Rotation is "add a key, make it active, re-wrap, then drop the old one";
the backends below implement the first and last steps where the backend is writable.

Backends (``OMNIFY_SECRETS_BACKEND``):

``env``
    ``OMNIFY_MASTER_KEYS="k2:<base64>,k1:<base64>"``; the first entry is active.
    Read-only from the process' point of view, so rotation only *prints* the new value.
``file``
    ``OMNIFY_MASTER_KEY_FILE``: a JSON key-ring document (below), mode 0600.
``vault``
    HashiCorp Vault / OpenBao KV v2 secret holding the key-ring document.
``aws``
    AWS Secrets Manager secret whose ``SecretString`` is the key-ring document.

The key-ring document, shared by file, Vault and AWS so an operator can move keys
between them unchanged::

    {"active": "k2", "keys": {"k2": "<base64 32 bytes>", "k1": "<base64 32 bytes>"}}

On a developer machine (``OMNIFY_ENV`` development or test) with no key configured, a
key is generated once and persisted under ``data_dir`` so ``omnify up`` just works and
restarts can still read what was encrypted. Anywhere else a missing key is a start-up
error: silently generating one would make every stored credential unreadable after
the next restart.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol

import anyio
import structlog
from pydantic import SecretStr

from omnify.core.private_files import create_private_once, replace_private
from omnify.settings import Settings

log = structlog.get_logger(__name__)

MASTER_KEY_BYTES = 32
KEY_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
DEV_KEY_FILE_NAME = "master-keys.json"
#: Environments where a missing master key may be generated on the fly.
_AUTO_GENERATE_ENVS = frozenset({"development", "test"})


class MasterKeyError(RuntimeError):
    """Base of every master-key problem. Messages name settings, never key material."""


class MasterKeyConfigError(MasterKeyError):
    """The configuration cannot yield a usable key ring; raised at start-up."""


class MasterKeyBackendError(MasterKeyError):
    """The secrets backend could not be read or written (network, permissions, conflict)."""


# ------------------------------------------------------------------------------- key ring
def _validate_key_id(key_id: str) -> str:
    if not KEY_ID_PATTERN.fullmatch(key_id):
        raise MasterKeyConfigError(
            f"invalid master key id {key_id[:70]!r}: use 1-64 of letters, digits, '.', '_' or '-'"
        )
    return key_id


def decode_key(encoded: str, *, key_id: str) -> bytes:
    """Decode one base64 (standard or URL-safe, padding optional) master key."""
    text = encoded.strip().replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise MasterKeyConfigError(f"master key {key_id!r} is not valid base64") from None
    if len(raw) != MASTER_KEY_BYTES:
        raise MasterKeyConfigError(
            f"master key {key_id!r} must decode to {MASTER_KEY_BYTES} bytes, got {len(raw)}"
        )
    return raw


def encode_key(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def new_key_id() -> str:
    """A sortable, collision-resistant id: creation time plus a little randomness."""
    return f"mk-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"


def generate_master_key() -> bytes:
    return secrets.token_bytes(MASTER_KEY_BYTES)


@dataclass(frozen=True)
class KeyRing:
    """Every master key that may still wrap a stored data key, and the active one.

    Immutable so a ring handed to a request cannot change under it while a rotation
    swaps the cached ring for a newer one.
    """

    active_key_id: str
    keys: Mapping[str, bytes] = field(repr=False)

    def __post_init__(self) -> None:
        frozen = MappingProxyType(dict(self.keys))
        for key_id, key in frozen.items():
            _validate_key_id(key_id)
            if len(key) != MASTER_KEY_BYTES:
                raise MasterKeyConfigError(f"master key {key_id!r} must be {MASTER_KEY_BYTES} bytes")
        if self.active_key_id not in frozen:
            raise MasterKeyConfigError(f"active master key {self.active_key_id!r} is not in the key ring")
        object.__setattr__(self, "keys", frozen)

    @property
    def active_key(self) -> bytes:
        return self.keys[self.active_key_id]

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Active key first, then the others in a stable order."""
        return (self.active_key_id, *sorted(k for k in self.keys if k != self.active_key_id))

    def get(self, key_id: str) -> bytes | None:
        return self.keys.get(key_id)

    def __contains__(self, key_id: object) -> bool:
        return key_id in self.keys

    def with_new_active(self, key_id: str, key: bytes) -> KeyRing:
        if key_id in self.keys:
            raise MasterKeyConfigError(f"master key id {key_id!r} already exists")
        return KeyRing(active_key_id=key_id, keys={**self.keys, key_id: key})

    def without(self, key_id: str) -> KeyRing:
        if key_id == self.active_key_id:
            raise MasterKeyConfigError("the active master key cannot be removed; rotate first")
        if key_id not in self.keys:
            raise MasterKeyConfigError(f"master key {key_id!r} is not in the key ring")
        return KeyRing(self.active_key_id, {k: v for k, v in self.keys.items() if k != key_id})

    # serialisation ---------------------------------------------------------------------
    def to_document(self) -> dict[str, Any]:
        return {"active": self.active_key_id, "keys": {k: encode_key(self.keys[k]) for k in self.key_ids}}

    @classmethod
    def from_document(cls, doc: object, *, source: str) -> KeyRing:
        if not isinstance(doc, Mapping):
            raise MasterKeyConfigError(f"{source}: key-ring document must be a JSON object")
        active, keys = doc.get("active"), doc.get("keys")
        if not isinstance(active, str) or not isinstance(keys, Mapping) or not keys:
            raise MasterKeyConfigError(
                f"{source}: key-ring document needs 'active' (string) and 'keys' (non-empty object)"
            )
        decoded: dict[str, bytes] = {}
        for key_id, encoded in keys.items():
            if not isinstance(key_id, str) or not isinstance(encoded, str):
                raise MasterKeyConfigError(f"{source}: key ids and keys must be strings")
            decoded[_validate_key_id(key_id)] = decode_key(encoded, key_id=key_id)
        return cls(active_key_id=active, keys=decoded)

    def to_env_value(self) -> str:
        """The ``OMNIFY_MASTER_KEYS`` form: ``id:base64`` pairs, active first."""
        return ",".join(f"{k}:{encode_key(self.keys[k])}" for k in self.key_ids)

    @classmethod
    def from_env_value(cls, value: str) -> KeyRing:
        entries = [e.strip() for e in value.split(",") if e.strip()]
        if not entries:
            raise MasterKeyConfigError("OMNIFY_MASTER_KEYS is empty")
        keys: dict[str, bytes] = {}
        for entry in entries:
            key_id, sep, encoded = entry.partition(":")
            key_id = key_id.strip()
            if not sep:
                raise MasterKeyConfigError("OMNIFY_MASTER_KEYS entries must look like 'key_id:base64key'")
            _validate_key_id(key_id)
            if key_id in keys:
                raise MasterKeyConfigError(f"OMNIFY_MASTER_KEYS lists key id {key_id!r} twice")
            keys[key_id] = decode_key(encoded, key_id=key_id)
        return cls(active_key_id=entries[0].partition(":")[0].strip(), keys=keys)


@dataclass(frozen=True)
class NewMasterKey:
    """Outcome of :meth:`MasterKeyBackend.add_key`.

    ``env_value`` is set only for the env backend, which cannot change the process'
    environment: the operator must deploy it. It is a SecretStr so that printing the
    dataclass (or logging it by mistake) does not leak keys.
    """

    key_id: str
    backend: str
    env_value: SecretStr | None = None


# ------------------------------------------------------------------------------- backends
class MasterKeyBackend(Protocol):
    name: str

    def load(self) -> KeyRing:
        """Read the current key ring. Blocking (network or disk); see :class:`KeyRingCache`."""
        ...

    def add_key(self, key_id: str | None = None) -> NewMasterKey:
        """Generate a master key and make it the active one; older keys stay readable."""
        ...

    def remove_key(self, key_id: str) -> NewMasterKey | None:
        """Drop a retired key once no data key is wrapped by it any more."""
        ...


class EnvBackend:
    """Keys from ``OMNIFY_MASTER_KEYS``; rotation computes the value to deploy."""

    name = "env"

    def __init__(self, value: SecretStr) -> None:
        self._value = value

    def load(self) -> KeyRing:
        return KeyRing.from_env_value(self._value.get_secret_value())

    def add_key(self, key_id: str | None = None) -> NewMasterKey:
        ring = self.load().with_new_active(_validate_key_id(key_id or new_key_id()), generate_master_key())
        return NewMasterKey(ring.active_key_id, self.name, SecretStr(ring.to_env_value()))

    def remove_key(self, key_id: str) -> NewMasterKey | None:
        ring = self.load().without(key_id)
        return NewMasterKey(ring.active_key_id, self.name, SecretStr(ring.to_env_value()))


class FileBackend:
    """A JSON key-ring document on disk, replaced atomically on every change."""

    name = "file"

    def __init__(self, path: Path, *, create_if_missing: bool = False) -> None:
        self.path = path
        self.create_if_missing = create_if_missing

    def load(self) -> KeyRing:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            if not self.create_if_missing:
                raise MasterKeyConfigError(f"master key file {self.path} does not exist") from None
            return self._create()
        except OSError as exc:
            raise MasterKeyBackendError(f"cannot read master key file {self.path}: {exc.strerror}") from None
        self._warn_if_readable_by_others()
        try:
            doc = json.loads(raw)
        except ValueError:
            raise MasterKeyConfigError(f"master key file {self.path} is not valid JSON") from None
        return KeyRing.from_document(doc, source=str(self.path))

    def add_key(self, key_id: str | None = None) -> NewMasterKey:
        ring = self.load().with_new_active(_validate_key_id(key_id or new_key_id()), generate_master_key())
        self._replace(ring)
        return NewMasterKey(ring.active_key_id, self.name)

    def remove_key(self, key_id: str) -> NewMasterKey | None:
        ring = self.load().without(key_id)
        self._replace(ring)
        return None

    # internals ---------------------------------------------------------------------------
    def _create(self) -> KeyRing:
        """Write a fresh ring without racing a sibling process starting at the same time.

        The document goes to a private temporary file first and is then hard-linked into
        place, which fails if another process won: the loser reads the winner's keys
        instead of overwriting them (two different keys would strand data).
        """
        ring = KeyRing(active_key_id=(key_id := new_key_id()), keys={key_id: generate_master_key()})
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not create_private_once(self.path, _ring_text(ring)):
            return self.load()
        log.warning("master_key_generated", path=str(self.path), key_id=ring.active_key_id,
                    hint="development only; back this file up or set OMNIFY_MASTER_KEYS")
        return ring

    def _replace(self, ring: KeyRing) -> None:
        replace_private(self.path, _ring_text(ring))

    def _warn_if_readable_by_others(self) -> None:
        # A warning rather than a refusal: Kubernetes mounts secret volumes 0644 unless told otherwise.
        try:
            mode = stat.S_IMODE(self.path.stat().st_mode)
        except OSError:
            return
        if mode & 0o077:
            log.warning("master_key_file_permissions", path=str(self.path), mode=oct(mode), expected="0600")


class VaultBackend:
    """Key ring stored as one KV v2 secret; writes use check-and-set against lost updates."""

    name = "vault"

    def __init__(self, url: str, token: SecretStr, *, mount: str, path: str, timeout: float = 10.0) -> None:
        import hvac

        self.mount = mount
        self.path = path
        self._client = hvac.Client(url=url, token=token.get_secret_value(), timeout=timeout)

    def _read(self) -> tuple[KeyRing, int] | None:
        import hvac.exceptions
        import requests

        try:
            resp = self._client.secrets.kv.v2.read_secret_version(
                path=self.path, mount_point=self.mount, raise_on_deleted_version=True
            )
        except hvac.exceptions.InvalidPath:
            return None
        except (hvac.exceptions.VaultError, requests.RequestException) as exc:
            raise MasterKeyBackendError(
                f"cannot read vault secret {self.mount}/{self.path}: {type(exc).__name__}"
            ) from None
        data = resp["data"]
        ring = KeyRing.from_document(data["data"], source=f"vault:{self.mount}/{self.path}")
        return ring, int(data["metadata"]["version"])

    def _write(self, ring: KeyRing, cas: int) -> None:
        import hvac.exceptions
        import requests

        try:
            self._client.secrets.kv.v2.create_or_update_secret(
                path=self.path, secret=ring.to_document(), cas=cas, mount_point=self.mount
            )
        except (hvac.exceptions.VaultError, requests.RequestException) as exc:
            raise MasterKeyBackendError(
                f"cannot write vault secret {self.mount}/{self.path} (concurrent change?): "
                f"{type(exc).__name__}"
            ) from None

    def load(self) -> KeyRing:
        found = self._read()
        if found is None:
            raise MasterKeyConfigError(f"no master keys at vault secret {self.mount}/{self.path}")
        return found[0]

    def add_key(self, key_id: str | None = None) -> NewMasterKey:
        found = self._read()
        key_id = _validate_key_id(key_id or new_key_id())
        if found is None:  # first key: cas=0 means "only if it does not exist yet"
            ring, version = KeyRing(key_id, {key_id: generate_master_key()}), 0
        else:
            ring, version = found[0].with_new_active(key_id, generate_master_key()), found[1]
        self._write(ring, version)
        return NewMasterKey(key_id, self.name)

    def remove_key(self, key_id: str) -> NewMasterKey | None:
        found = self._read()
        if found is None:
            raise MasterKeyConfigError(f"no master keys at vault secret {self.mount}/{self.path}")
        self._write(found[0].without(key_id), found[1])
        return None


class AwsSecretsManagerBackend:
    """Key ring stored as the ``SecretString`` of one AWS Secrets Manager secret."""

    name = "aws"

    def __init__(self, secret_id: str, *, region: str, endpoint_url: str | None = None) -> None:
        import boto3
        from botocore.config import Config

        self.secret_id = secret_id
        self._client = boto3.client(
            "secretsmanager",
            region_name=region,
            endpoint_url=endpoint_url,
            config=Config(retries={"mode": "standard", "max_attempts": 3},
                          connect_timeout=5, read_timeout=10),
        )

    def _read(self) -> KeyRing | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            resp = self._client.get_secret_value(SecretId=self.secret_id)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "ResourceNotFoundException":
                return None
            raise MasterKeyBackendError(f"cannot read AWS secret {self.secret_id}: {code}") from None
        except BotoCoreError as exc:
            raise MasterKeyBackendError(
                f"cannot read AWS secret {self.secret_id}: {type(exc).__name__}"
            ) from None
        if "SecretString" not in resp:
            raise MasterKeyConfigError(f"AWS secret {self.secret_id} has no SecretString")
        try:
            doc = json.loads(resp["SecretString"])
        except ValueError:
            raise MasterKeyConfigError(f"AWS secret {self.secret_id} is not valid JSON") from None
        return KeyRing.from_document(doc, source=f"aws:{self.secret_id}")

    def _write(self, ring: KeyRing, *, create: bool) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        body = json.dumps(ring.to_document())
        try:
            if create:
                self._client.create_secret(Name=self.secret_id, SecretString=body,
                                           Description="Omnify master keys for envelope encryption")
            else:
                self._client.put_secret_value(SecretId=self.secret_id, SecretString=body)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            raise MasterKeyBackendError(f"cannot write AWS secret {self.secret_id}: {code}") from None
        except BotoCoreError as exc:
            raise MasterKeyBackendError(
                f"cannot write AWS secret {self.secret_id}: {type(exc).__name__}"
            ) from None

    def load(self) -> KeyRing:
        ring = self._read()
        if ring is None:
            raise MasterKeyConfigError(f"AWS secret {self.secret_id} does not exist")
        return ring

    def add_key(self, key_id: str | None = None) -> NewMasterKey:
        current = self._read()
        key_id = _validate_key_id(key_id or new_key_id())
        if current is None:
            self._write(KeyRing(key_id, {key_id: generate_master_key()}), create=True)
        else:
            self._write(current.with_new_active(key_id, generate_master_key()), create=False)
        return NewMasterKey(key_id, self.name)

    def remove_key(self, key_id: str) -> NewMasterKey | None:
        self._write(self.load().without(key_id), create=False)
        return None


def _ring_text(ring: KeyRing) -> str:
    return json.dumps(ring.to_document(), indent=2) + "\n"


def dev_key_file(settings: Settings) -> Path:
    return settings.data_dir / DEV_KEY_FILE_NAME


def backend_from_settings(settings: Settings) -> MasterKeyBackend:
    """Pick the backend; raises :class:`MasterKeyConfigError` when it lacks its settings."""
    may_generate = settings.env in _AUTO_GENERATE_ENVS
    backend = settings.secrets_backend
    if backend == "env":
        if settings.master_keys is not None and settings.master_keys.get_secret_value().strip():
            return EnvBackend(settings.master_keys)
        if may_generate:
            return FileBackend(dev_key_file(settings), create_if_missing=True)
        raise MasterKeyConfigError(
            f"OMNIFY_MASTER_KEYS is not set (required when OMNIFY_ENV={settings.env}); "
            "generate one with `omnify keys rotate` or: python -c "
            "\"import base64,os;print('k1:'+base64.b64encode(os.urandom(32)).decode())\""
        )
    if backend == "file":
        if settings.master_key_file is not None:
            return FileBackend(settings.master_key_file, create_if_missing=may_generate)
        if may_generate:
            return FileBackend(dev_key_file(settings), create_if_missing=True)
        raise MasterKeyConfigError("OMNIFY_MASTER_KEY_FILE is required for the file secrets backend")
    if backend == "vault":
        if not settings.vault_url or settings.vault_token is None:
            raise MasterKeyConfigError("OMNIFY_VAULT_URL and OMNIFY_VAULT_TOKEN are required for vault")
        return VaultBackend(settings.vault_url, settings.vault_token,
                            mount=settings.vault_mount, path=settings.vault_path)
    if backend == "aws":
        if not settings.aws_secret_id:
            raise MasterKeyConfigError("OMNIFY_AWS_SECRET_ID is required for the aws secrets backend")
        return AwsSecretsManagerBackend(settings.aws_secret_id, region=settings.aws_region,
                                        endpoint_url=settings.aws_endpoint_url)
    raise MasterKeyConfigError(f"unknown secrets backend {backend!r}")  # pragma: no cover - Literal-typed


def load_keyring(settings: Settings) -> KeyRing:
    """Start-up entry point: the key ring or a :class:`MasterKeyError` naming the problem."""
    return backend_from_settings(settings).load()


class KeyRingCache:
    """Process-wide view of the key ring that notices rotations.

    Fetching from Vault or AWS on every decrypt would be slow and costly, so the ring
    is cached for ``ttl`` seconds. During a rotation another process may already have
    re-wrapped a record under a key this process has not seen; :meth:`for_key` then
    reloads at once (but at most every ``min_refresh_interval`` seconds, so a blob with
    a bogus key id cannot be used to hammer the backend).
    """

    def __init__(self, backend: MasterKeyBackend, *, ttl: float = 300.0,
                 min_refresh_interval: float = 5.0) -> None:
        self.backend = backend
        self.ttl = ttl
        self.min_refresh_interval = min_refresh_interval
        self._ring: KeyRing | None = None
        self._loaded_at = 0.0
        self._lock = anyio.Lock()

    async def get(self) -> KeyRing:
        if self._ring is None or time.monotonic() - self._loaded_at >= self.ttl:
            return await self.refresh(force=True)
        return self._ring

    async def for_key(self, key_id: str) -> KeyRing:
        """A ring that holds ``key_id`` if the backend has it (the caller reports if not)."""
        ring = await self.get()
        if key_id in ring:
            return ring
        return await self.refresh(force=False)

    async def refresh(self, *, force: bool = True) -> KeyRing:
        seen = self._loaded_at
        async with self._lock:
            if self._ring is not None:
                if self._loaded_at != seen:  # a concurrent caller reloaded while we waited
                    return self._ring
                if not force and time.monotonic() - self._loaded_at < self.min_refresh_interval:
                    return self._ring
            self._ring = await anyio.to_thread.run_sync(self.backend.load)
            self._loaded_at = time.monotonic()
            return self._ring

    def invalidate(self) -> None:
        """Forget the cached ring, e.g. right after this process rotated keys."""
        self._ring = None


# ------------------------------------------------------------------ one cached ring per process
#: How long a process trusts its cached ring; also the wait before retiring a key.
KEY_RING_TTL_SECONDS = 300.0
_ring_caches: dict[tuple[Any, ...], KeyRingCache] = {}


def _ring_cache_key(settings: Settings) -> tuple[Any, ...]:
    env = settings.master_keys.get_secret_value() if settings.master_keys else ""
    token = settings.vault_token.get_secret_value() if settings.vault_token else ""
    return (
        settings.secrets_backend, settings.env, str(settings.data_dir), str(settings.master_key_file),
        hashlib.sha256(env.encode()).hexdigest(), settings.vault_url, hashlib.sha256(token.encode()).hexdigest(),
        settings.vault_mount, settings.vault_path, settings.aws_secret_id, settings.aws_region,
        settings.aws_endpoint_url,
    )


def keyring_cache(settings: Settings) -> KeyRingCache:
    """The process-wide cached key ring of this configuration (built on first use).

    One cache for every domain that seals with the master keys (platform credentials, webhook
    secrets): a rotation or a retirement that invalidates it reaches them all. With one cache per
    domain, a retired key stayed active in the other domain's copy until its TTL ran out, and new
    secrets were sealed with a key no longer in the ring.
    """
    key = _ring_cache_key(settings)
    cache = _ring_caches.get(key)
    if cache is None:
        cache = _ring_caches[key] = KeyRingCache(backend_from_settings(settings), ttl=KEY_RING_TTL_SECONDS)
    return cache
