"""The streaming multipart reader, fed in every possible chunking."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from omnify.core.errors import AppError
from omnify.files.multipart import MAX_PIECE, MalformedMultipart, MultipartReader

BOUNDARY = "b0undary"
CTYPE = f"multipart/form-data; boundary={BOUNDARY}"


def form(*parts: tuple[str, str | None, bytes]) -> bytes:
    out = b""
    for name, filename, data in parts:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disp}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


async def chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def read_all(body: bytes, size: int) -> list[tuple[str, str | None, bytes]]:
    reader = MultipartReader(CTYPE, chunks(body, size))
    out = []
    while (part := await reader.next_part()) is not None:
        data = b"".join([piece async for piece in reader.iter_data()])
        out.append((part.name, part.filename, data))
    return out


@pytest.mark.parametrize("size", [1, 2, 7, 64, 4096, 10**7])
async def test_parts_survive_any_chunking(size: int) -> None:
    payload = bytes(range(256)) * 40 + b"\r\n--b0undar" + b"tail"  # near-boundary bytes inside the data
    body = form(("category", None, b"logo"), ("file", "日本 é.png", payload))
    parts = await read_all(body, size)
    assert parts == [("category", None, b"logo"), ("file", "日本 é.png", payload)]


async def test_large_server_chunks_are_split_for_storage() -> None:
    payload = b"x" * (3 * MAX_PIECE + 5)
    reader = MultipartReader(CTYPE, chunks(form(("file", "f", payload)), len(payload) + 1000))
    assert (await reader.next_part()) is not None
    pieces = [p async for p in reader.iter_data()]
    assert max(map(len, pieces)) <= MAX_PIECE and b"".join(pieces) == payload


async def test_text_fields_are_bounded_and_finish_checks_the_tail() -> None:
    reader = MultipartReader(CTYPE, chunks(form(("category", None, b"x" * 2000)), 100))
    await reader.next_part()
    with pytest.raises(AppError) as err:
        await reader.read_text()
    assert err.value.status == 422

    reader = MultipartReader(CTYPE, chunks(form(("file", "a", b"1"), ("file", "b", b"2")), 50))
    await reader.next_part()
    _ = [p async for p in reader.iter_data()]
    with pytest.raises(AppError) as err:
        await reader.finish()
    assert err.value.status == 422


@pytest.mark.parametrize("body", [
    f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nunterminated".encode(),
    b"garbage without any boundary at all",
    f"--{BOUNDARY}\r\nContent-Type: text/plain\r\n\r\nno disposition\r\n--{BOUNDARY}--\r\n".encode(),
])
async def test_malformed_bodies_are_400(body: bytes) -> None:
    reader = MultipartReader(CTYPE, chunks(body, 16))
    with pytest.raises(MalformedMultipart):
        while (await reader.next_part()) is not None:
            _ = [p async for p in reader.iter_data()]


def test_content_type_must_be_multipart_with_boundary() -> None:
    with pytest.raises(AppError) as err:
        MultipartReader("application/json", chunks(b"", 1))
    assert err.value.status == 415
    with pytest.raises(MalformedMultipart):
        MultipartReader("multipart/form-data", chunks(b"", 1))
