"""Decide what an uploaded file really is, and whether its category accepts it.

The client's filename extension and ``Content-Type`` are attacker-controlled, so the
type is decided from the content only: magic bytes (via ``puremagic``, pure Python, no
libmagic), the zip directory for Office documents, an XML parse for SVG, and a UTF-8
check for text. Anything not positively identified as an allowed type is refused with
a 415: an allow-list fails closed, a deny-list does not.

SVG is an active format (scripts, event handlers, external fetches) served from our
domain, so an SVG is accepted only when it contains none of those; it is refused
rather than rewritten, because a sanitiser that misses one construct is an XSS.

Two entry points, for the two ways an upload can arrive:

* :func:`inspect_upload` for a seekable file (Starlette's spooled ``UploadFile.file``):
  full checks, including the zip central directory and a whole-file text scan;
* :func:`sniff_stream` for a pure stream: decides from the first 64 KiB, then keeps
  validating text while the stream flows into storage (an error half-way aborts the
  storage write, which removes the partial object).
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import struct
import unicodedata
import zipfile
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import BinaryIO
from xml.etree.ElementTree import Element  # type only: parsing goes through defusedxml

import puremagic
from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError
from defusedxml.ElementTree import fromstring as safe_xml_fromstring

from omnify.core.errors import PayloadTooLarge, UnprocessableEntity, UnsupportedMediaType
from omnify.settings import Settings

KiB, MiB = 1024, 1024 * 1024
#: Bytes read before deciding the type (Office zips put their part names well inside).
SNIFF_BYTES = 64 * KiB
#: An SVG must be parsed whole to be judged safe, so it is also capped.
SVG_MAX_BYTES = 1 * MiB
_MAGIC_WINDOW = 8 * KiB


class FileKind(StrEnum):
    PNG = "png"
    JPEG = "jpeg"
    WEBP = "webp"
    GIF = "gif"
    SVG = "svg"
    MP4 = "mp4"
    PDF = "pdf"
    DOCX = "docx"
    XLSX = "xlsx"
    CSV = "csv"
    TXT = "txt"


_KIND_INFO: Mapping[FileKind, tuple[str, str]] = {
    FileKind.PNG: ("image/png", "png"),
    FileKind.JPEG: ("image/jpeg", "jpg"),
    FileKind.WEBP: ("image/webp", "webp"),
    FileKind.GIF: ("image/gif", "gif"),
    FileKind.SVG: ("image/svg+xml", "svg"),
    FileKind.MP4: ("video/mp4", "mp4"),
    FileKind.PDF: ("application/pdf", "pdf"),
    FileKind.DOCX: ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", "docx"),
    FileKind.XLSX: ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx"),
    FileKind.CSV: ("text/csv", "csv"),
    FileKind.TXT: ("text/plain", "txt"),
}
#: puremagic MIME -> our kind, for the binary formats identified by their signature.
_MAGIC_MIME: Mapping[str, FileKind] = {
    "image/png": FileKind.PNG,
    "image/jpeg": FileKind.JPEG,
    "image/webp": FileKind.WEBP,
    "image/gif": FileKind.GIF,
    "application/pdf": FileKind.PDF,
    "video/mp4": FileKind.MP4,
}
RASTER_KINDS = frozenset({FileKind.PNG, FileKind.JPEG, FileKind.WEBP, FileKind.GIF})
IMAGE_KINDS = RASTER_KINDS | {FileKind.SVG}
DOCUMENT_KINDS = frozenset({FileKind.PDF, FileKind.DOCX, FileKind.XLSX, FileKind.CSV, FileKind.TXT})
TEXT_KINDS = frozenset({FileKind.CSV, FileKind.TXT})
#: Zip containers: inflated and bounded before they are stored (:mod:`omnify.files.archives`).
ARCHIVE_KINDS = frozenset({FileKind.DOCX, FileKind.XLSX})


@dataclass(frozen=True, slots=True)
class DetectedType:
    kind: FileKind

    @property
    def mime(self) -> str:
        return _KIND_INFO[self.kind][0]

    @property
    def extension(self) -> str:
        return _KIND_INFO[self.kind][1]

    @property
    def is_raster_image(self) -> bool:
        """True when Pillow can measure and thumbnail it (see :mod:`omnify.files.images`)."""
        return self.kind in RASTER_KINDS

    @property
    def is_image(self) -> bool:
        return self.kind in IMAGE_KINDS

    @property
    def is_archive(self) -> bool:
        return self.kind in ARCHIVE_KINDS


class FileCategory(StrEnum):
    LOGO = "logo"
    CREATIVE = "creative"
    ANALYSIS_DOCUMENT = "analysis_document"
    CAMPAIGN_IDEA = "campaign_idea"
    BRAND_GUIDE = "brand_guide"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class CategoryPolicy:
    allowed: frozenset[FileKind]
    max_bytes: int


POLICIES: Mapping[FileCategory, CategoryPolicy] = {
    FileCategory.LOGO: CategoryPolicy(
        frozenset({FileKind.PNG, FileKind.JPEG, FileKind.WEBP, FileKind.SVG}), 5 * MiB),
    FileCategory.CREATIVE: CategoryPolicy(IMAGE_KINDS | {FileKind.MP4}, 200 * MiB),
    FileCategory.ANALYSIS_DOCUMENT: CategoryPolicy(DOCUMENT_KINDS, 50 * MiB),
    FileCategory.CAMPAIGN_IDEA: CategoryPolicy(DOCUMENT_KINDS, 50 * MiB),
    FileCategory.BRAND_GUIDE: CategoryPolicy(DOCUMENT_KINDS, 50 * MiB),
    FileCategory.OTHER: CategoryPolicy(frozenset(FileKind), 200 * MiB),
}


def max_bytes_for(category: FileCategory, settings: Settings | None = None) -> int:
    """The category's limit, never above the deployment-wide ``OMNIFY_MAX_UPLOAD_BYTES``."""
    limit = POLICIES[category].max_bytes
    return min(limit, settings.max_upload_bytes) if settings is not None else limit


# --------------------------------------------------------------------------------- errors
class EmptyFile(UnprocessableEntity):
    code, title = "empty-file", "Empty file"


class UnsupportedFileType(UnsupportedMediaType):
    code, title = "unsupported-file-type", "Unsupported file type"


class UnsafeSvg(UnsupportedMediaType):
    code, title = "unsafe-svg", "Unsafe SVG"


class FileTooLarge(PayloadTooLarge):
    code, title = "file-too-large", "File too large"


def _unsupported(category: FileCategory | None, what: str) -> UnsupportedFileType:
    if category is None:
        return UnsupportedFileType(f"The content is {what}, which is not an accepted file type.")
    allowed = sorted(k.value for k in POLICIES[category].allowed)
    return UnsupportedFileType(
        f"The content is {what}; category '{category.value}' accepts {', '.join(allowed)}.",
        category=category.value, allowed=allowed,
    )


# ------------------------------------------------------------------------------ detection
_MARKUP_START = re.compile(
    rb"^\s*<\s*(?:\?xml|!doctype|!--|svg|html|head|body|script|iframe|[a-z][\w.-]*:svg)", re.IGNORECASE
)


def _strip_bom(data: bytes) -> bytes:
    return data[3:] if data.startswith(codecs.BOM_UTF8) else data


def looks_like_markup(head: bytes) -> bool:
    """XML/HTML/SVG start: such content must be judged whole (see :data:`SVG_MAX_BYTES`)."""
    return bool(_MARKUP_START.match(_strip_bom(head[:1024])))


def _zip_names_from_head(head: bytes) -> list[str]:
    """Entry names of the local file headers inside ``head``.

    Scans for every local-header signature rather than hopping by compressed size,
    because writers that stream (bit 3, data descriptor) leave that size at zero.
    """
    names: list[str] = []
    pos = head.find(b"PK\x03\x04")
    while pos != -1 and pos + 30 <= len(head):
        name_len = struct.unpack_from("<H", head, pos + 26)[0]
        name = head[pos + 30 : pos + 30 + name_len]
        if len(name) == name_len:
            names.append(name.decode("utf-8", "replace"))
        pos = head.find(b"PK\x03\x04", pos + 4)
    return names


def _classify_ooxml(names: Iterable[str], *, complete_listing: bool) -> FileKind | None:
    listed = set(names)
    word = any(n.startswith("word/") for n in listed)
    excel = any(n.startswith("xl/") for n in listed)
    if word == excel:
        return None
    if complete_listing and "[Content_Types].xml" not in listed:
        return None
    if any(n.lower().endswith("vbaproject.bin") for n in listed):
        raise UnsupportedFileType("Macro-enabled Office documents are not accepted.")
    return FileKind.DOCX if word else FileKind.XLSX


def _detect_zip(head: bytes, fileobj: BinaryIO | None) -> FileKind | None:
    if fileobj is not None:
        start = fileobj.tell()
        try:
            with zipfile.ZipFile(fileobj) as archive:
                return _classify_ooxml(archive.namelist(), complete_listing=True)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError):
            return None
        finally:
            fileobj.seek(start)
    return _classify_ooxml(_zip_names_from_head(head), complete_listing=False)


def _decode_text(data: bytes, *, complete: bool) -> str | None:
    """UTF-8 text without NULs, or None. A multi-byte character cut at the end of a
    non-final head is tolerated."""
    if b"\x00" in data:
        return None
    try:
        return codecs.getincrementaldecoder("utf-8-sig")().decode(data, final=complete)
    except UnicodeDecodeError:
        return None


def _looks_like_csv(text: str, *, complete: bool) -> bool:
    sample = text[: 16 * KiB]
    if not complete or len(sample) < len(text):  # the last line may be cut off mid-record
        sample = sample[: sample.rfind("\n") + 1]
    if sample.count("\n") < 1:
        return False
    try:
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        return False
    widths = {len(row) for row in csv.reader(io.StringIO(sample), dialect) if row}
    return len(widths) == 1 and widths.pop() >= 2


def _is_svg_root(root: Element) -> bool:
    return root.tag in {"{http://www.w3.org/2000/svg}svg", "svg"}


def detect_type(data: bytes, *, complete: bool, fileobj: BinaryIO | None = None,
                category: FileCategory | None = None) -> DetectedType:
    """Identify the content from its first bytes (``complete``: ``data`` is the whole file).

    ``fileobj``, when given, is the whole file (seekable) and lets Office documents be
    identified from the zip central directory rather than from the head alone.
    ``category`` only shapes the error message.
    """
    if not data:
        raise EmptyFile("The uploaded file is empty.")
    if data.startswith(b"PK\x03\x04"):
        zip_kind = _detect_zip(data, fileobj)
        if zip_kind is None:
            raise _unsupported(category, "a zip archive that is not a Word or Excel document")
        return DetectedType(zip_kind)

    try:
        matches = puremagic.magic_string(data[:_MAGIC_WINDOW])
    except (puremagic.PureError, ValueError):
        matches = []
    if matches and (kind := _MAGIC_MIME.get(matches[0].mime_type)) is not None:
        return DetectedType(kind)

    text = _decode_text(data, complete=complete)
    if text is None:
        what = f"'{matches[0].name}'" if matches else "unrecognised binary data"
        raise _unsupported(category, what)
    if looks_like_markup(data):
        if not complete:
            raise FileTooLarge(f"Markup and SVG files are limited to {SVG_MAX_BYTES} bytes.",
                               max_bytes=SVG_MAX_BYTES)
        if _is_svg_document(data):
            return DetectedType(FileKind.SVG)
        raise _unsupported(category, "an HTML or XML document")
    return DetectedType(FileKind.CSV if _looks_like_csv(text, complete=complete) else FileKind.TXT)


def _is_svg_document(data: bytes) -> bool:
    try:
        root = safe_xml_fromstring(data, forbid_dtd=True)
    except DefusedXmlException:
        # A DTD or entity: could be an SVG, but one we will refuse; classify it as SVG so
        # the refusal says "unsafe SVG" instead of "unsupported".
        return b"<svg" in data
    except (ParseError, ValueError):
        return False
    return _is_svg_root(root)


# ------------------------------------------------------------------------------ SVG safety
_SVG_NS = "http://www.w3.org/2000/svg"
_ALLOWED_FOREIGN_NS = {
    "http://www.w3.org/1999/xlink",  # only for attributes (xlink:href), checked below
    "http://www.w3.org/XML/1998/namespace",
    "http://www.inkscape.org/namespaces/inkscape",
    "http://sodipodi.sourceforge.net/DTD/sodipodi-0.dtd",
    "http://purl.org/dc/elements/1.1/",
    "http://creativecommons.org/ns#",
    "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
}
_FORBIDDEN_ELEMENTS = {"script", "foreignobject", "iframe", "embed", "object", "handler", "listener",
                       "audio", "video", "use-external"}
_ANIMATION_ELEMENTS = {"animate", "set", "animatemotion", "animatetransform", "animatecolor"}
_SAFE_DATA_URI = re.compile(r"^data:image/(?:png|jpeg|gif|webp);base64,[A-Za-z0-9+/=\s]*$", re.IGNORECASE)
_CSS_URL = re.compile(r"url\(\s*(['\"]?)\s*([^'\")]*)\1\s*\)", re.IGNORECASE)
_CSS_DANGER = re.compile(r"@import|expression\s*\(|javascript:|behavior\s*:|-moz-binding", re.IGNORECASE)


def _split(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        ns, _, local = tag[1:].partition("}")
        return ns, local
    return "", tag


def _check_css(css: str) -> None:
    if _CSS_DANGER.search(css):
        raise UnsafeSvg("The SVG's CSS imports or executes external content.")
    for match in _CSS_URL.finditer(css):
        if not match.group(2).strip().startswith("#"):
            raise UnsafeSvg("The SVG's CSS references an external resource.")


def check_svg_safe(document: bytes) -> None:
    """Refuse an SVG with scripts, event handlers or references outside the document."""
    if len(document) > SVG_MAX_BYTES:
        raise FileTooLarge(f"SVG files are limited to {SVG_MAX_BYTES} bytes.", max_bytes=SVG_MAX_BYTES)
    if re.search(rb"<\?xml-stylesheet", document, re.IGNORECASE):
        raise UnsafeSvg("The SVG loads an external stylesheet.")
    try:
        root = safe_xml_fromstring(document, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException:
        raise UnsafeSvg("The SVG declares a DTD or entities.") from None
    except (ParseError, ValueError):
        raise UnsafeSvg("The SVG is not well-formed XML.") from None
    if not _is_svg_root(root):
        raise UnsafeSvg("The document root is not an <svg> element.")
    for element in root.iter():
        if not isinstance(element.tag, str):  # comments / processing instructions
            continue
        ns, local = _split(element.tag)
        name = local.lower()
        if ns not in {"", _SVG_NS} and ns not in _ALLOWED_FOREIGN_NS:
            raise UnsafeSvg(f"The SVG embeds foreign markup ({local}).")
        if name in _FORBIDDEN_ELEMENTS:
            raise UnsafeSvg(f"The SVG contains a <{local}> element.")
        if name in _ANIMATION_ELEMENTS:
            target = (element.get("attributeName") or "").strip().lower()
            if target.startswith("on") or target.endswith("href"):
                raise UnsafeSvg("The SVG animates a link or event attribute.")
        if name == "style":
            _check_css("".join(element.itertext()))
        for attr, value in element.attrib.items():
            _, attr_local = _split(attr)
            attr_name = attr_local.lower()
            lowered = value.strip().lower()
            if attr_name.startswith("on"):
                raise UnsafeSvg(f"The SVG has an event handler attribute ({attr_local}).")
            if "javascript:" in lowered.replace(" ", "") or "vbscript:" in lowered:
                raise UnsafeSvg("The SVG contains a script URL.")
            if attr_name in {"href", "src"} and not (
                lowered.startswith("#") or _SAFE_DATA_URI.match(value.strip())
            ):
                raise UnsafeSvg("The SVG references an external resource.")
            if attr_name == "style" or "url(" in lowered:
                _check_css(value)


# ----------------------------------------------------------------------------- validation
def check_allowed(detected: DetectedType, category: FileCategory) -> None:
    if detected.kind not in POLICIES[category].allowed:
        raise _unsupported(category, f"{detected.kind.value} ({detected.mime})")


class TextValidator:
    """Incremental check that a whole stream is UTF-8 without NULs.

    The head decided "text", but the rest of the file could still be binary; this keeps
    checking as the bytes flow so a disguised binary is refused before it is stored.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")()

    def feed(self, chunk: bytes) -> None:
        if b"\x00" in chunk:
            raise UnsupportedFileType("The text file contains binary data (NUL bytes).")
        try:
            self._decoder.decode(chunk, final=False)
        except UnicodeDecodeError:
            raise UnsupportedFileType("The text file is not valid UTF-8.") from None

    def close(self) -> None:
        try:
            self._decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise UnsupportedFileType("The text file ends in the middle of a UTF-8 character.") from None


def inspect_upload(
    fileobj: BinaryIO, category: FileCategory, *, max_bytes: int | None = None
) -> DetectedType:
    """Full checks on a seekable file; blocking, so call it through a worker thread.

    Leaves the file positioned at the start, ready to be streamed to storage.
    """
    limit = max_bytes if max_bytes is not None else POLICIES[category].max_bytes
    fileobj.seek(0, io.SEEK_END)
    size = fileobj.tell()
    fileobj.seek(0)
    if size == 0:
        raise EmptyFile("The uploaded file is empty.")
    if size > limit:
        raise FileTooLarge(f"The file is larger than the limit of {limit} bytes for '{category.value}'.",
                           max_bytes=limit)
    head = fileobj.read(SNIFF_BYTES)
    if looks_like_markup(head) and size <= SVG_MAX_BYTES:
        head += fileobj.read()
    fileobj.seek(0)
    detected = detect_type(head, complete=len(head) == size, fileobj=fileobj, category=category)
    check_allowed(detected, category)
    if detected.kind is FileKind.SVG:
        check_svg_safe(head)
    elif detected.kind in TEXT_KINDS:
        validator = TextValidator()
        while chunk := fileobj.read(SNIFF_BYTES):
            validator.feed(chunk)
        validator.close()
    fileobj.seek(0)
    return detected


@dataclass(frozen=True, slots=True)
class SniffedUpload:
    detected: DetectedType
    #: The complete upload (the sniffed head replayed first); feed it to ``Storage.put_stream``.
    stream: AsyncIterator[bytes]


async def sniff_stream(chunks: AsyncIterable[bytes], category: FileCategory) -> SniffedUpload:
    """Sniff a stream's head, enforce the allow-list, and hand back the full stream.

    Reads at most :data:`SNIFF_BYTES` (or :data:`SVG_MAX_BYTES` for markup) before
    deciding. The size limit is left to ``Storage.put_stream(max_bytes=...)``, which
    counts every byte anyway.
    """
    source = aiter(chunks)
    head = bytearray()
    exhausted = False

    async def pull(limit: int) -> None:
        nonlocal exhausted
        while len(head) < limit:
            try:
                head.extend(await anext(source))
            except StopAsyncIteration:
                exhausted = True
                return

    await pull(SNIFF_BYTES)
    if not exhausted and looks_like_markup(bytes(head)):
        await pull(SVG_MAX_BYTES + 1)
    data = bytes(head)
    detected = detect_type(data, complete=exhausted, category=category)
    check_allowed(detected, category)
    if detected.kind is FileKind.SVG:
        check_svg_safe(data)
    validator = TextValidator() if detected.kind in TEXT_KINDS else None

    async def replay() -> AsyncIterator[bytes]:
        if validator is not None:
            validator.feed(data)
        yield data
        if not exhausted:
            async for chunk in source:
                if validator is not None:
                    validator.feed(chunk)
                yield chunk
        if validator is not None:
            validator.close()

    return SniffedUpload(detected, replay())


# ------------------------------------------------------------------------------ filenames
_WINDOWS_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9¹²³]|lpt[0-9¹²³])(\..*)?$", re.IGNORECASE)
_UNSAFE_CHARS = re.compile(r'[<>:"|?*\x00-\x1f\x7f]')
_DROP_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def _truncate_utf8(text: str, max_bytes: int) -> str:
    encoded = text.encode("utf-8")[:max_bytes]
    return encoded.decode("utf-8", "ignore")


def sanitize_filename(name: str, *, max_bytes: int = 255, fallback: str = "file") -> str:
    """A display/download name safe on every filesystem and in a Content-Disposition.

    Order matters: NFKC first, so look-alikes such as the full-width solidus become a
    real ``/`` *before* path components are stripped; then control and format
    characters (including bidi overrides that make ``evil\u202egpj.exe`` read as
    ``evilexe.jpg``) go, and the name is cut to ``max_bytes`` of UTF-8 keeping the
    extension. The result is metadata only: storage keys never contain it.
    """
    text = unicodedata.normalize("NFKC", name or "")
    text = text.replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(" " if ch in "\t\n\r" else ch for ch in text
                   if ch in "\t\n\r" or unicodedata.category(ch) not in _DROP_CATEGORIES)
    text = _UNSAFE_CHARS.sub("_", text)
    text = re.sub(r"\s+", " ", text).strip(" .")
    if _WINDOWS_RESERVED.match(text):
        text = f"_{text}"
    if not text:
        return fallback
    if len(text.encode("utf-8")) > max_bytes:
        stem, dot, ext = text.rpartition(".")
        if dot and stem and 0 < len(ext.encode("utf-8")) <= 16:
            room = max_bytes - len(ext.encode("utf-8")) - 1
            text = f"{_truncate_utf8(stem, room).rstrip(' .')}.{ext}"
        else:
            text = _truncate_utf8(text, max_bytes).rstrip(" .")
    return text or fallback
