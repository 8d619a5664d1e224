"""Vault (OpenBao dev server) and AWS Secrets Manager (moto_server) key providers.

Both servers are real processes started here on free ports; when the binaries are not
installed the tests skip, except in CI where that is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from omnify.core.crypto import decrypt_str, encrypt_str, rewrap
from omnify.core.secrets import (
    AwsSecretsManagerBackend,
    MasterKeyBackendError,
    MasterKeyConfigError,
    VaultBackend,
    backend_from_settings,
    load_keyring,
)
from omnify.settings import Settings
from tests.servers import fake_aws_credentials, moto_server, openbao_server

AAD = b'{"org_id":"o","platform":"shopify"}'


@pytest.fixture(scope="module")
def vault_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with openbao_server(tmp_path_factory.mktemp("bao"), root_token="root") as url:
        yield url


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with fake_aws_credentials(), moto_server(tmp_path_factory.mktemp("moto")) as url:
        yield url


# ----------------------------------------------------------------------------------- vault
def vault_settings(url: str, path: str, token: str = "root") -> Settings:
    return Settings(_env_file=None, env="production", secrets_backend="vault",  # type: ignore[call-arg]
                    vault_url=url, vault_token=token, vault_path=path)


def test_vault_rotation_lifecycle(vault_url: str) -> None:
    s = vault_settings(vault_url, f"omnify/test-{uuid.uuid4()}")
    backend = backend_from_settings(s)
    assert isinstance(backend, VaultBackend)
    with pytest.raises(MasterKeyConfigError, match="no master keys"):
        load_keyring(s)

    first = backend.add_key("k1")
    ring1 = load_keyring(s)
    assert ring1.key_ids == (first.key_id,) == ("k1",)
    blob = encrypt_str("shpat_secret_token", ring1, AAD)

    second = backend.add_key()
    ring2 = load_keyring(s)
    assert ring2.active_key_id == second.key_id and set(ring2.key_ids) == {"k1", second.key_id}
    assert decrypt_str(blob, ring2, AAD) == "shpat_secret_token"  # old key still readable
    blob = rewrap(blob, ring2)

    backend.remove_key("k1")
    ring3 = load_keyring(s)
    assert ring3.key_ids == (second.key_id,)
    assert decrypt_str(blob, ring3, AAD) == "shpat_secret_token"


def test_vault_write_uses_check_and_set(vault_url: str) -> None:
    s = vault_settings(vault_url, f"omnify/test-{uuid.uuid4()}")
    backend = backend_from_settings(s)
    assert isinstance(backend, VaultBackend)
    backend.add_key("k1")
    found = backend._read()
    assert found is not None
    stale_ring, stale_version = found
    backend.add_key("k2")  # a concurrent rotation bumps the version
    with pytest.raises(MasterKeyBackendError, match="concurrent change"):
        backend._write(stale_ring.with_new_active("k3", os.urandom(32)), stale_version)
    assert load_keyring(s).key_ids == ("k2", "k1")


def test_vault_bad_token_is_a_clean_error(vault_url: str) -> None:
    s = vault_settings(vault_url, "omnify/anything", token="s.not-the-token")
    with pytest.raises(MasterKeyBackendError) as err:
        load_keyring(s)
    assert "not-the-token" not in str(err.value)


# ------------------------------------------------------------------------------------- aws
def aws_settings(url: str, secret_id: str) -> Settings:
    return Settings(_env_file=None, env="production", secrets_backend="aws",  # type: ignore[call-arg]
                    aws_secret_id=secret_id, aws_endpoint_url=url, aws_region="eu-west-1")


def test_aws_rotation_lifecycle(moto_url: str) -> None:
    s = aws_settings(moto_url, f"omnify/master-keys-{uuid.uuid4()}")
    backend = backend_from_settings(s)
    assert isinstance(backend, AwsSecretsManagerBackend)
    with pytest.raises(MasterKeyConfigError, match="does not exist"):
        load_keyring(s)

    first = backend.add_key()
    ring1 = load_keyring(s)
    assert ring1.key_ids == (first.key_id,)
    blob = encrypt_str("ttk-access-token", ring1, AAD)

    second = backend.add_key()
    ring2 = load_keyring(s)
    assert ring2.active_key_id == second.key_id and first.key_id in ring2
    assert decrypt_str(rewrap(blob, ring2), ring2, AAD) == "ttk-access-token"
    blob = rewrap(blob, ring2)

    backend.remove_key(first.key_id)
    ring3 = load_keyring(s)
    assert ring3.key_ids == (second.key_id,)
    assert decrypt_str(blob, ring3, AAD) == "ttk-access-token"


def test_aws_secret_with_bad_document_is_a_config_error(moto_url: str) -> None:
    import boto3

    secret_id = f"omnify/bad-{uuid.uuid4()}"
    client = boto3.client("secretsmanager", region_name="eu-west-1", endpoint_url=moto_url)
    client.create_secret(Name=secret_id, SecretString="not json at all")
    with pytest.raises(MasterKeyConfigError, match="not valid JSON"):
        load_keyring(aws_settings(moto_url, secret_id))
    client.put_secret_value(SecretId=secret_id, SecretString='{"active": "k1", "keys": {"k1": "c2hvcnQ="}}')
    with pytest.raises(MasterKeyConfigError, match="32 bytes"):
        load_keyring(aws_settings(moto_url, secret_id))
