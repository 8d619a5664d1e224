"""The files routes wired to the S3 backend, against a real moto_server process started here:
upload, download through the presigned URL, refusal leaving nothing, delete and purge."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import boto3
import httpx
import pytest

from omnify.app import create_app
from omnify.core.db import Database
from omnify.files import service as files_service
from omnify.settings import Settings
from tests.factories import register
from tests.integration.onboarding.onboarding_support import clients_url, elf, new_client, png, upload
from tests.servers import fake_aws_credentials, moto_server

BUCKET = "omnify-onboarding-test"


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with fake_aws_credentials(), moto_server(tmp_path_factory.mktemp("moto-onboarding")) as url:
        boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(Bucket=BUCKET)
        yield url


@pytest.fixture(scope="module")
def s3_settings(settings: Settings, moto: str) -> Settings:
    return settings.model_copy(update={"storage_backend": "s3", "s3_bucket": BUCKET, "s3_prefix": "tenants",
                                       "s3_endpoint_url": moto, "s3_sse": "AES256"})


@pytest.fixture(scope="module")
async def s3_http(s3_settings: Settings, database: Database) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(s3_settings, database)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
        yield c


def _keys(moto: str, prefix: str) -> set[str]:
    s3 = boto3.client("s3", endpoint_url=moto, region_name="us-east-1")
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return {obj["Key"] for obj in listed.get("Contents", [])}


async def test_upload_download_delete_through_s3(
    s3_http: httpx.AsyncClient, s3_settings: Settings, moto: str, database: Database
) -> None:
    acct = await register(s3_http)
    c = await new_client(s3_http, acct)
    prefix = f"tenants/{acct.org_id}/{c['id']}/"
    data = png(120, 80, "orange")
    resp = await upload(s3_http, acct, c["id"], data, name="Logo Final (v2).png")
    assert resp.status_code == 201, resp.text
    f = resp.json()
    assert _keys(moto, prefix) == {f"{prefix}logo/{f['id']}", f"{prefix}thumbnails/{f['id']}"}
    head: dict[str, Any] = boto3.client("s3", endpoint_url=moto, region_name="us-east-1").head_object(
        Bucket=BUCKET, Key=f"{prefix}logo/{f['id']}")
    assert head["ContentType"] == "image/png" and head["ServerSideEncryption"] == "AES256"

    link = await s3_http.get(clients_url(acct, c["id"], "files", f["id"], "download"), headers=acct.headers)
    assert link.status_code == 200, link.text
    url = link.json()["url"]
    assert url.startswith(moto) and "X-Amz-Signature" in url
    async with httpx.AsyncClient() as direct:  # a real HTTP GET to the emulator, no API involved
        got = await direct.get(url)
    assert got.status_code == 200 and got.content == data
    assert got.headers["content-disposition"].startswith('attachment; filename="Logo Final (v2).png"')
    # the local signed-download route is not served when objects live in S3
    assert (await s3_http.get("/api/v1/storage/download/x/y?exp=1&fn=a&ct=b&sig=c")).status_code == 404

    refused = await upload(s3_http, acct, c["id"], elf(), name="tool.png")
    assert refused.status_code == 415
    assert len(_keys(moto, prefix)) == 2

    assert (await s3_http.delete(clients_url(acct, c["id"], "files", f["id"]), headers=acct.headers)).status_code == 204
    assert len(_keys(moto, prefix)) == 2  # marked; the job removes the objects
    purged = await files_service.purge_deleted_files(database, files_service.storage_for(s3_settings))
    assert purged >= 1
    assert _keys(moto, prefix) == set()
    async with httpx.AsyncClient() as direct:
        assert (await direct.get(url)).status_code in (403, 404)  # S3 hides absence without ListBucket


async def test_s3_multipart_stream_of_a_large_creative(
    s3_http: httpx.AsyncClient, moto: str
) -> None:
    """Over one 8 MiB part: the upload goes through S3 multipart, chunk by chunk."""
    acct = await register(s3_http)
    c = await new_client(s3_http, acct)
    payload = b"day,spend\n" + b"2027-01-01,12.50\n" * 600_000  # ~10 MiB of CSV
    resp = await upload(s3_http, acct, c["id"], payload, name="spend.csv", category="analysis_document")
    assert resp.status_code == 201, resp.text
    key = f"tenants/{acct.org_id}/{c['id']}/analysis_document/{resp.json()['id']}"
    obj = boto3.client("s3", endpoint_url=moto, region_name="us-east-1").head_object(Bucket=BUCKET, Key=key)
    assert obj["ContentLength"] == len(payload) and obj["ContentType"] == "text/csv"
    assert uuid.UUID(resp.json()["id"])


async def test_unusable_bucket_is_503_and_leaves_nothing(
    s3_settings: Settings, database: Database, moto: str
) -> None:
    broken = s3_settings.model_copy(update={"s3_bucket": "no-such-bucket-here"})
    app = create_app(broken, database)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as http:
        acct = await register(http)
        c = await new_client(http, acct)
        resp = await upload(http, acct, c["id"], png(9, 9), name="a.png")
        assert resp.status_code == 503 and resp.json()["type"].endswith("storage-unavailable")
        listed = await http.get(clients_url(acct, c["id"], "files"), headers=acct.headers)
        assert listed.json()["items"] == []
