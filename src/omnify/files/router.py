"""/orgs/{org_id}/clients/{client_id}/files: brand file upload, listing, download links, deletion.

Plus the public, HMAC-verified download route for the local storage backend (the S3
backend hands out presigned S3 URLs instead).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, status
from fastapi.responses import JSONResponse, Response

from omnify.auth.deps import OrgContext, require
from omnify.auth.permissions import Permission
from omnify.core.deps import SettingsDep
from omnify.core.errors import NotFound, UnprocessableEntity
from omnify.core.pagination import Page, PageParams, fields_param, page_params, page_response
from omnify.core.storage import LocalStorage, local_download_response
from omnify.files import service
from omnify.files.models import UploadedFile
from omnify.files.multipart import MultipartReader, PartInfo
from omnify.files.schemas import DownloadOut, FileOut
from omnify.files.sniffing import FileCategory, FileTooLarge, max_bytes_for

router = APIRouter(tags=["files"])

BASE = "/orgs/{org_id}/clients/{client_id}/files"
Paging = Annotated[PageParams, Depends(page_params)]
Fields = Annotated[set[str] | None, Depends(fields_param)]
Reader = Annotated[OrgContext, Depends(require(Permission.CLIENTS_READ))]
Writer = Annotated[OrgContext, Depends(require(Permission.CLIENTS_WRITE))]
#: Multipart framing around the file (boundaries, part headers, the category field).
MULTIPART_OVERHEAD = 64 * 1024

UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    # Required here: the server needs it before the file part. (The `category` query
                    # parameter is an alternative for clients that cannot order form parts; a form
                    # field, when both are given, wins.)
                    "required": ["category", "file"],
                    "properties": {
                        "category": {"type": "string", "enum": [c.value for c in FileCategory],
                                     "description": "Must come before the `file` part."},
                        "file": {"type": "string", "format": "binary"},
                    },
                }
            }
        },
    }
}


def file_out(row: UploadedFile) -> dict[str, Any]:
    return FileOut(
        id=row.id, client_id=row.client_id, category=FileCategory(row.category), kind=row.kind,
        content_type=row.content_type, filename=row.filename, size=row.size, sha256=row.sha256, width=row.width,
        height=row.height, has_thumbnail=row.thumbnail_key is not None, uploaded_by_id=row.uploaded_by_id,
        created_at=row.created_at,
    ).model_dump(mode="json")


def _category(value: str) -> FileCategory:
    try:
        return FileCategory(value.strip())
    except ValueError:
        raise UnprocessableEntity(
            "Unknown file category.", errors=[{"loc": ["body", "category"], "field": "category",
                                               "msg": f"must be one of {', '.join(c.value for c in FileCategory)}",
                                               "type": "enum"}],
        ) from None


async def _file_part(reader: MultipartReader, category: FileCategory | None) -> tuple[PartInfo, FileCategory]:
    """Read the text fields up to the file part; the category must be known by then."""
    while (part := await reader.next_part()) is not None:
        if part.is_file:
            if part.name != "file":
                raise UnprocessableEntity("The file part must be named `file`.", code="missing-file")
            if category is None:
                raise UnprocessableEntity(
                    "Give the category (as a form field before the file, or as a query parameter).",
                    errors=[{"loc": ["body", "category"], "field": "category", "msg": "Field required",
                             "type": "missing"}],
                )
            return part, category
        if part.name != "category":
            raise UnprocessableEntity(f"Unknown form field {part.name[:40]!r}.", code="unknown-field")
        category = _category(await reader.read_text())
    raise UnprocessableEntity("The form has no `file` part.", code="missing-file",
                              errors=[{"loc": ["body", "file"], "field": "file", "msg": "Field required",
                                       "type": "missing"}])


async def _file_bytes(reader: MultipartReader) -> AsyncIterator[bytes]:
    async for piece in reader.iter_data():
        yield piece
    # Checked inside the stream, so a malformed tail aborts the storage write too.
    await reader.finish()


@router.post(
    BASE, status_code=status.HTTP_201_CREATED, response_model=FileOut, openapi_extra=UPLOAD_BODY,
    responses={200: {"model": FileOut, "description": "The same content was already stored for this client."},
               402: {"description": "Storage quota exceeded."}, 413: {"description": "File too large."},
               415: {"description": "Type not allowed for the category."},
               503: {"description": "File storage unreachable; nothing was kept. Retry after `Retry-After`."},
               507: {"description": "File storage full; nothing was kept. Retry after `Retry-After`."}},
)
async def upload_file(
    client_id: uuid.UUID, request: Request, settings: SettingsDep, ctx: Writer,
    category: Annotated[FileCategory | None, Query(description="Alternative to the `category` form field.")] = None,
) -> Any:
    """Streamed upload: the type is sniffed from the content, never the name or Content-Type."""
    reader = MultipartReader(request.headers.get("content-type"), aiter(request.stream()))
    part, chosen = await _file_part(reader, category)
    declared = request.headers.get("content-length", "")
    limit = max_bytes_for(chosen, settings)
    if declared.isdigit() and int(declared) > limit + MULTIPART_OVERHEAD:
        raise FileTooLarge(f"The file is larger than the limit of {limit} bytes for '{chosen.value}'.",
                           max_bytes=limit)
    result = await service.upload(ctx.session, settings, service.storage_for(settings), ctx.org_id, ctx.actor,
                                  client_id, chosen, part.filename, _file_bytes(reader))
    code = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
    return JSONResponse(file_out(result.file), status_code=code)


@router.get(BASE, response_model=Page[FileOut])
async def list_files(
    client_id: uuid.UUID, ctx: Reader, paging: Paging, fields: Fields,
    category: Annotated[FileCategory | None, Query()] = None,
) -> Any:
    rows = await service.list_files(ctx.session, ctx.org_id, client_id, paging, category)
    return page_response(FileOut, rows, paging, fields, dump=file_out)


@router.get(BASE + "/{file_id}", response_model=FileOut)
async def get_file(client_id: uuid.UUID, file_id: uuid.UUID, ctx: Reader) -> Any:
    return file_out(await service.get_file(ctx.session, ctx.org_id, client_id, file_id))


@router.get(BASE + "/{file_id}/download", response_model=DownloadOut)
async def download_link(
    client_id: uuid.UUID, file_id: uuid.UUID, ctx: Reader, settings: SettingsDep,
    variant: Annotated[Literal["original", "thumbnail"], Query()] = "original",
) -> Any:
    """A short-lived signed URL (HMAC-signed for local storage, presigned for S3)."""
    link = await service.download_link(ctx.session, settings, service.storage_for(settings), ctx.org_id,
                                       client_id, file_id, variant)
    return DownloadOut(url=link.url, expires_at=link.expires_at, filename=link.filename,
                       content_type=link.content_type)


@router.delete(BASE + "/{file_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_file(client_id: uuid.UUID, file_id: uuid.UUID, ctx: Writer) -> Response:
    await service.delete_file(ctx.session, ctx.org_id, ctx.actor, client_id, file_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/storage/download/{key:path}", include_in_schema=False)
async def local_download(key: str, request: Request, settings: SettingsDep) -> Response:
    """Serve a signed local-storage link. No session: the HMAC signature is the authorization."""
    storage = service.storage_for(settings)
    if not isinstance(storage, LocalStorage):
        raise NotFound("Downloads are served by the storage provider.")
    return await local_download_response(storage, key, request.query_params)
