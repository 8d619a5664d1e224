"""A pull-style streaming reader for ``multipart/form-data`` request bodies.

Starlette's ``request.form()`` spools every file part to a temporary file before the
endpoint runs, which means an upload is fully received (and on disk twice) before we can
sniff, size-check or quota-check it. This reader drives ``python-multipart``'s
push parser from ``request.stream()`` instead: the endpoint pulls one part at a time
and the file part's bytes flow straight into storage, so memory stays at one network
chunk and a bad upload is refused on its first bytes.

Only the forms we accept are supported: a few small text fields and one file part.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from omnify.core.errors import BadRequest, UnprocessableEntity, UnsupportedMediaType

MAX_FIELD_BYTES = 1024
MAX_PARTS = 16
#: Pieces handed to storage are at most this big, whatever chunk size the server used.
MAX_PIECE = 256 * 1024


class MalformedMultipart(BadRequest):
    code, title = "malformed-multipart", "Malformed multipart body"


@dataclass(frozen=True, slots=True)
class PartInfo:
    name: str
    filename: str | None
    content_type: str | None

    @property
    def is_file(self) -> bool:
        return self.filename is not None


def _decode(raw: bytes) -> str:
    """Header parameters are UTF-8 in practice (browsers, curl, httpx); latin-1 otherwise."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


class MultipartReader:
    """Pull parts from a multipart body: ``next_part()``, then ``read_text()`` or ``iter_data()``.

    The body is consumed lazily; a part's data must be read (or is skipped) before the
    next part is returned. Errors surface as 400 problems with fixed messages.
    """

    def __init__(self, content_type: str | None, body: AsyncIterator[bytes], *, max_parts: int = MAX_PARTS) -> None:
        ctype, params = parse_options_header(content_type or "")
        if ctype != b"multipart/form-data":
            raise UnsupportedMediaType("Send the file as multipart/form-data.", code="multipart-required")
        boundary = params.get(b"boundary")
        if not boundary:
            raise MalformedMultipart("The multipart Content-Type has no boundary.")
        self._body = body
        self._events: deque[tuple[str, Any]] = deque()
        self._headers: dict[str, bytes] = {}
        self._field = bytearray()
        self._value = bytearray()
        self._parts = 0
        self._max_parts = max_parts
        self._ended = False
        self._exhausted = False
        self._in_part = False
        try:
            self._parser = MultipartParser(
                boundary,
                callbacks={
                    "on_part_begin": self._on_part_begin,
                    "on_part_data": self._on_part_data,
                    "on_part_end": self._on_part_end,
                    "on_header_field": self._on_header_field,
                    "on_header_value": self._on_header_value,
                    "on_header_end": self._on_header_end,
                    "on_headers_finished": self._on_headers_finished,
                    "on_end": self._on_end,
                },
                max_header_count=8,
                max_header_size=2048,
            )
        except (FormParserError, ValueError):
            raise MalformedMultipart("The multipart boundary is invalid.") from None

    # -------------------------------------------------------------------- parser callbacks
    def _on_part_begin(self) -> None:
        self._parts += 1
        if self._parts > self._max_parts:
            raise MalformedMultipart(f"The form has more than {self._max_parts} parts.")
        self._headers = {}

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _on_header_end(self) -> None:
        # Values stay bytes: parse_options_header would re-encode a str as latin-1 and
        # fail on any other character (a filename in Japanese must not be a 500).
        self._headers[bytes(self._field).decode("latin-1").strip().lower()] = bytes(self._value).strip()
        self._field.clear()
        self._value.clear()

    def _on_headers_finished(self) -> None:
        self._events.append(("part", self._part_info()))

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if end > start:
            self._events.append(("data", bytes(data[start:end])))

    def _on_part_end(self) -> None:
        self._events.append(("end_part", None))

    def _on_end(self) -> None:
        self._ended = True
        self._events.append(("end", None))

    def _part_info(self) -> PartInfo:
        disposition, params = parse_options_header(self._headers.get("content-disposition", b""))
        if disposition != b"form-data" or b"name" not in params:
            raise MalformedMultipart("Each part needs `Content-Disposition: form-data; name=...`.")
        filename = params.get(b"filename")
        return PartInfo(
            name=_decode(params[b"name"]),
            filename=_decode(filename) if filename is not None else None,
            content_type=_decode(self._headers["content-type"]) if "content-type" in self._headers else None,
        )

    # -------------------------------------------------------------------------- pumping
    async def _next_event(self) -> tuple[str, Any]:
        while not self._events:
            if self._exhausted:
                raise MalformedMultipart("The multipart body ended before its closing boundary.")
            try:
                chunk = await anext(self._body)
            except StopAsyncIteration:
                self._exhausted = True
                try:
                    self._parser.finalize()
                except FormParserError:
                    raise MalformedMultipart("The multipart body is malformed.") from None
                continue
            if not chunk:
                continue
            try:
                self._parser.write(chunk)
            except FormParserError:
                raise MalformedMultipart("The multipart body is malformed.") from None
        return self._events.popleft()

    async def next_part(self) -> PartInfo | None:
        """The next part's headers, skipping whatever is left of the current part."""
        while True:
            kind, value = await self._next_event()
            if kind == "part":
                self._in_part = True
                assert isinstance(value, PartInfo)
                return value
            if kind == "end_part":
                self._in_part = False
            elif kind == "end":
                return None

    async def iter_data(self) -> AsyncIterator[bytes]:
        """The current part's bytes, in pieces of at most :data:`MAX_PIECE`."""
        while self._in_part:
            kind, value = await self._next_event()
            if kind == "data":
                for offset in range(0, len(value), MAX_PIECE):
                    yield value[offset : offset + MAX_PIECE]
            elif kind == "end_part":
                self._in_part = False
            else:  # pragma: no cover - the parser always ends a part before the next
                raise MalformedMultipart("The multipart body is malformed.")

    async def read_text(self, limit: int = MAX_FIELD_BYTES) -> str:
        """A small text field's value (UTF-8), refusing anything longer than ``limit``."""
        value = bytearray()
        async for piece in self.iter_data():
            value += piece
            if len(value) > limit:
                raise UnprocessableEntity(f"A form field is longer than {limit} bytes.", code="field-too-long")
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise UnprocessableEntity("A form field is not valid UTF-8.") from None

    async def finish(self, *, allow_fields: bool = True) -> None:
        """Consume the rest of the body, checking it ends properly.

        Trailing text fields are read (bounded) and ignored; a second file part is an
        error, because silently dropping a file the client meant to send is worse.
        """
        while (part := await self.next_part()) is not None:
            if part.is_file or not allow_fields:
                raise UnprocessableEntity("Send exactly one file per upload request.", code="one-file-per-request")
            await self.read_text()
        if not self._ended:  # pragma: no cover - next_part() returns None only after "end"
            raise MalformedMultipart("The multipart body ended before its closing boundary.")
