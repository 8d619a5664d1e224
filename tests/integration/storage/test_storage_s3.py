"""S3 backend against a real moto_server process started by this module."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from omnify.core.errors import PayloadTooLarge
from omnify.core.storage import (
    ObjectNotFound,
    S3Storage,
    Storage,
    build_object_key,
    content_disposition,
    storage_from_settings,
)
from omnify.settings import Settings
from tests.servers import edge_proxy, fake_aws_credentials, moto_server

MiB = 1024 * 1024
ORG, CLIENT = uuid.UUID(int=10), uuid.UUID(int=20)


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with fake_aws_credentials(), moto_server(tmp_path_factory.mktemp("moto")) as url:
        yield url


@pytest.fixture
def bucket(moto_url: str) -> str:
    import boto3

    name = f"omnify-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", region_name="us-east-1", endpoint_url=moto_url).create_bucket(Bucket=name)
    return name


def make(moto_url: str, bucket: str, **kw: Any) -> S3Storage:
    return S3Storage(bucket, prefix="tenant-files/", region="us-east-1", endpoint_url=moto_url, sse="AES256",
                     part_size=5 * MiB, **kw)


async def chunks(data: bytes, size: int = MiB) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def raw_client(moto_url: str) -> Any:
    import boto3

    return boto3.client("s3", region_name="us-east-1", endpoint_url=moto_url)


def test_factory(moto_url: str, bucket: str) -> None:
    s = Settings(_env_file=None, storage_backend="s3", s3_bucket=bucket,  # type: ignore[call-arg]
                 s3_endpoint_url=moto_url)
    storage = storage_from_settings(s)
    assert isinstance(storage, S3Storage) and isinstance(storage, Storage)
    with pytest.raises(ValueError, match="OMNIFY_S3_BUCKET"):
        storage_from_settings(Settings(_env_file=None, storage_backend="s3"))  # type: ignore[call-arg]


async def test_upload_presigned_download_delete(moto_url: str, bucket: str) -> None:
    storage = make(moto_url, bucket)
    await storage.check()
    key = build_object_key(ORG, CLIENT, "brand_guide")
    data = os.urandom(300_000)
    stored = await storage.put_stream(key, chunks(data, 64 * 1024), content_type="application/pdf",
                                      max_bytes=MiB)
    assert (stored.size, stored.sha256) == (len(data), hashlib.sha256(data).hexdigest())

    head = raw_client(moto_url).head_object(Bucket=bucket, Key=f"tenant-files/{key}")
    assert head["ServerSideEncryption"] == "AES256"
    assert head["ContentType"] == "application/pdf"
    assert await storage.exists(key)
    assert b"".join([c async for c in await storage.get_stream(key, chunk_size=50_000)]) == data

    filename = "Guía de marca \"2025\".pdf"
    url = await storage.signed_download_url(key, filename=filename, ttl=120, content_type="application/pdf")
    assert "X-Amz-Signature=" in url and "X-Amz-Expires=120" in url
    async with httpx.AsyncClient() as client:
        resp = await client.get(url)
        assert resp.status_code == 200
        assert resp.content == data
        assert resp.headers["content-disposition"] == content_disposition(filename)
        assert resp.headers["content-type"] == "application/pdf"
        # (moto does not verify SigV4 signatures, so tampering is not asserted here.)

    await storage.delete(key)
    await storage.delete(key)
    assert not await storage.exists(key)
    with pytest.raises(ObjectNotFound):
        await storage.get_stream(key)
    await storage.close()


async def test_multipart_upload_streams_large_objects(moto_url: str, bucket: str) -> None:
    storage = make(moto_url, bucket)
    key = build_object_key(ORG, CLIENT, "creative")
    data = os.urandom(11 * MiB + 123)
    stored = await storage.put_stream(key, chunks(data, 700_000), content_type="video/mp4")
    assert stored.size == len(data) and stored.sha256 == hashlib.sha256(data).hexdigest()
    obj = raw_client(moto_url).get_object(Bucket=bucket, Key=f"tenant-files/{key}")
    assert obj["ContentLength"] == len(data)
    assert obj["ETag"].strip('"').endswith("-3")  # three parts: 5 MiB, 5 MiB, remainder
    assert obj["Body"].read() == data


async def test_size_limit_aborts_multipart_and_leaves_nothing(moto_url: str, bucket: str) -> None:
    storage = make(moto_url, bucket)
    key = build_object_key(ORG, CLIENT, "creative")
    with pytest.raises(PayloadTooLarge):
        await storage.put_stream(key, chunks(os.urandom(8 * MiB)), max_bytes=7 * MiB)
    client = raw_client(moto_url)
    assert not await storage.exists(key)
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


async def test_failing_source_after_first_part_aborts(moto_url: str, bucket: str) -> None:
    storage = make(moto_url, bucket)
    key = build_object_key(ORG, CLIENT, "other")

    async def broken() -> AsyncIterator[bytes]:
        yield os.urandom(6 * MiB)
        raise RuntimeError("sniffer refused the rest")

    with pytest.raises(RuntimeError):
        await storage.put_stream(key, broken())
    client = raw_client(moto_url)
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert not await storage.exists(key)


async def test_cdn_base_serves_the_object_through_an_edge(moto_url: str, bucket: str) -> None:
    """The rebased link works through a CDN that forwards to the bucket with the origin's Host
    (the signature covers the host), not merely starts with the CDN's address."""
    with edge_proxy(moto_url) as edge:
        storage = make(moto_url, bucket, cdn_base_url=edge)
        body = os.urandom(200_000)
        await storage.put_stream("a/b", chunks(body))
        url = await storage.signed_download_url("a/b", filename="x.png", content_type="image/png")
        assert url.startswith(f"{edge}/{bucket}/tenant-files/a/b?")
        resp = httpx.get(url, timeout=30)
        assert resp.status_code == 200, resp.text[:300]
        assert resp.content == body
        assert resp.headers["x-cache"].startswith("MISS")
        assert resp.headers["content-disposition"] == content_disposition("x.png")
        await storage.delete("a/b")
        gone = httpx.get(url, timeout=30)
        # S3 answers 403 rather than 404 for a missing key to a signer without ListBucket.
        assert gone.status_code in (403, 404) and gone.content != body


async def test_missing_bucket_fails_check(moto_url: str) -> None:
    storage = make(moto_url, "no-such-bucket-omnify")
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError):
        await storage.check()
