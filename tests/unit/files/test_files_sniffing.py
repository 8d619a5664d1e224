"""Content sniffing: types from magic bytes, category allow-lists, SVG safety, filenames."""

from __future__ import annotations

import io
import os
import sys
import uuid
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from omnify.core.storage import LocalStorage, build_object_key
from omnify.files.sniffing import (
    POLICIES,
    SNIFF_BYTES,
    SVG_MAX_BYTES,
    DetectedType,
    EmptyFile,
    FileCategory,
    FileKind,
    FileTooLarge,
    UnsafeSvg,
    UnsupportedFileType,
    check_svg_safe,
    detect_type,
    inspect_upload,
    max_bytes_for,
    sanitize_filename,
    sniff_stream,
)
from omnify.settings import Settings


# --------------------------------------------------------------------------------- samples
def image_bytes(fmt: str, size: tuple[int, int] = (12, 8), **kw: object) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, fmt, **kw)
    return buf.getvalue()


def ooxml(main: str, *, content_types_last: bool = False, macro: bool = False) -> bytes:
    """A minimal Word/Excel package; ``content_types_last`` mimics openpyxl's entry order."""
    entries = [("_rels/.rels", "<Relationships/>"), (main, "<doc/>"), ("docProps/core.xml", "<core/>")]
    if macro:
        entries.append((main.split("/")[0] + "/vbaProject.bin", "macro"))
    ct = ("[Content_Types].xml", "<Types/>")
    entries = [*entries, ct] if content_types_last else [ct, *entries]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, body in entries:
            archive.writestr(name, body)
    return buf.getvalue()


DOCX = ooxml("word/document.xml")
XLSX = ooxml("xl/workbook.xml", content_types_last=True)
MP4 = bytes.fromhex("0000001c667479706d703432000000006d70343269736f6d61766331") + bytes(200)
PDF = b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n<<>>\n%%EOF\n"
CSV = b"name,spend,clicks\nSpring sale,1200.50,3400\nRetargeting,300,900\n"
TXT = "Campaign idea: léger, 夏 launch.\nTarget: new parents.\n".encode()
SVG_OK = b"""<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" viewBox="0 0 10 10">
  <defs><linearGradient id="g"><stop offset="0" stop-color="#fff"/></linearGradient></defs>
  <style>.a { fill: url(#g); }</style>
  <rect class="a" width="10" height="10" style="fill: url('#g')"/>
  <use xlink:href="#g"/>
  <image href="data:image/png;base64,iVBORw0KGgo="/>
</svg>"""


def elf_head() -> bytes:
    return Path(os.path.realpath(sys.executable)).read_bytes()[: 2 * SNIFF_BYTES]


def detect(data: bytes) -> FileKind:
    return detect_type(data, complete=True).kind


# ------------------------------------------------------------------------------- detection
@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (image_bytes("PNG"), FileKind.PNG),
        (image_bytes("JPEG"), FileKind.JPEG),
        (image_bytes("WEBP"), FileKind.WEBP),
        (image_bytes("GIF"), FileKind.GIF),
        (PDF, FileKind.PDF),
        (MP4, FileKind.MP4),
        (DOCX, FileKind.DOCX),
        (XLSX, FileKind.XLSX),
        (CSV, FileKind.CSV),
        (b"a;b;c\n1;2;3\n4;5;6\n", FileKind.CSV),
        (b"BMW,Model\nX5,2024\n", FileKind.CSV),  # starts like a BMP signature
        (TXT, FileKind.TXT),
        (b"\xef\xbb\xbfhello with BOM\n", FileKind.TXT),
        (b'{"json": "is text"}', FileKind.TXT),
        (SVG_OK, FileKind.SVG),
    ],
)
def test_detects_by_content(data: bytes, kind: FileKind) -> None:
    assert detect(data) is kind
    detected = DetectedType(kind)
    assert detected.mime and detected.extension


def test_ooxml_detected_from_central_directory_and_from_head() -> None:
    for data, kind in ((DOCX, FileKind.DOCX), (XLSX, FileKind.XLSX)):
        assert detect_type(data, complete=True, fileobj=io.BytesIO(data)).kind is kind
        assert detect_type(data[:200], complete=False).kind is kind  # streaming: head only


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (elf_head(), "ELF"),
        (b"MZ\x90\x00" + bytes(200), "Windows"),
        (os.urandom(4096), "unrecognised"),
        (b"abc\x00def", "unrecognised"),
        (b"\xff\xfe\xfa invalid utf-8 \xc3\x28", "The content is"),
        (b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>", "HTML"),
        (b'<?xml version="1.0"?><note>x</note>', "XML"),
    ],
)
def test_unknown_and_dangerous_content_is_refused(data: bytes, fragment: str) -> None:
    with pytest.raises(UnsupportedFileType) as err:
        detect_type(data, complete=True, category=FileCategory.OTHER)
    assert err.value.status == 415 and fragment in err.value.detail


def test_plain_zip_and_macro_documents_are_refused() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("payload.exe", "MZ")
    with pytest.raises(UnsupportedFileType, match="zip archive"):
        detect_type(buf.getvalue(), complete=True, fileobj=io.BytesIO(buf.getvalue()))
    docm = ooxml("word/document.xml", macro=True)
    with pytest.raises(UnsupportedFileType, match="Macro"):
        detect_type(docm, complete=True, fileobj=io.BytesIO(docm))


def test_empty_file_is_refused() -> None:
    with pytest.raises(EmptyFile) as err:
        detect_type(b"", complete=True)
    assert err.value.status == 422
    with pytest.raises(EmptyFile):
        inspect_upload(io.BytesIO(b""), FileCategory.OTHER)


# ----------------------------------------------------------------------- category policies
def test_png_that_is_really_an_executable_is_refused_for_every_category() -> None:
    for category in FileCategory:
        with pytest.raises(UnsupportedFileType) as err:
            inspect_upload(io.BytesIO(elf_head()), category)
        assert err.value.status == 415


@pytest.mark.parametrize(
    ("category", "data", "ok"),
    [
        (FileCategory.LOGO, image_bytes("PNG"), True),
        (FileCategory.LOGO, SVG_OK, True),
        (FileCategory.LOGO, image_bytes("GIF"), False),
        (FileCategory.LOGO, PDF, False),
        (FileCategory.LOGO, MP4, False),
        (FileCategory.CREATIVE, MP4, True),
        (FileCategory.CREATIVE, image_bytes("WEBP"), True),
        (FileCategory.CREATIVE, DOCX, False),
        (FileCategory.ANALYSIS_DOCUMENT, XLSX, True),
        (FileCategory.CAMPAIGN_IDEA, CSV, True),
        (FileCategory.BRAND_GUIDE, PDF, True),
        (FileCategory.BRAND_GUIDE, image_bytes("PNG"), False),
        (FileCategory.OTHER, MP4, True),
        (FileCategory.OTHER, TXT, True),
    ],
)
def test_category_allow_lists(category: FileCategory, data: bytes, ok: bool) -> None:
    if ok:
        assert inspect_upload(io.BytesIO(data), category).kind in POLICIES[category].allowed
    else:
        with pytest.raises(UnsupportedFileType) as err:
            inspect_upload(io.BytesIO(data), category)
        assert err.value.extra["category"] == category.value
        assert err.value.extra["allowed"] == sorted(k.value for k in POLICIES[category].allowed)


def test_size_limits_per_category() -> None:
    assert max_bytes_for(FileCategory.LOGO) < max_bytes_for(FileCategory.CREATIVE)
    capped = Settings(_env_file=None, max_upload_bytes=2048)  # type: ignore[call-arg]
    assert max_bytes_for(FileCategory.CREATIVE, capped) == 2048
    with pytest.raises(FileTooLarge) as err:
        inspect_upload(io.BytesIO(CSV * 100), FileCategory.ANALYSIS_DOCUMENT, max_bytes=1000)
    assert err.value.status == 413 and err.value.extra["max_bytes"] == 1000


def test_inspect_upload_rewinds_for_streaming() -> None:
    fileobj = io.BytesIO(DOCX)
    fileobj.seek(10)
    assert inspect_upload(fileobj, FileCategory.BRAND_GUIDE).kind is FileKind.DOCX
    assert fileobj.tell() == 0


def test_text_with_binary_after_the_head_is_refused() -> None:
    data = b"a,b\n" * (SNIFF_BYTES // 4 + 100) + b"\x00\x01\x02binary"
    with pytest.raises(UnsupportedFileType, match="NUL"):
        inspect_upload(io.BytesIO(data), FileCategory.ANALYSIS_DOCUMENT)


# ------------------------------------------------------------------------------------- SVG
@pytest.mark.parametrize(
    "body",
    [
        b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
        b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>',
        b'<svg xmlns="http://www.w3.org/2000/svg"><rect ONCLICK="x()"/></svg>',
        b'<svg xmlns="http://www.w3.org/2000/svg" xmlns:x="http://www.w3.org/1999/xlink">'
        b'<a x:href="javascript:alert(1)"><rect/></a></svg>',
        b'<svg xmlns="http://www.w3.org/2000/svg"><image href="https://evil.example/t.png"/></svg>',
        b'<svg xmlns="http://www.w3.org/2000/svg"><use href="other.svg#x"/></svg>',
        b'<svg xmlns="http://www.w3.org/2000/svg"><image href="data:image/svg+xml;base64,PHN2Zz4="/></svg>',
        b'<svg xmlns="http://www.w3.org/2000/svg"><foreignObject><div xmlns="http://www.w3.org/1999/xhtml">'
        b"x</div></foreignObject></svg>",
        b'<svg xmlns="http://www.w3.org/2000/svg"><style>@import url(https://evil.example/x.css);</style></svg>',
        b'<svg xmlns="http://www.w3.org/2000/svg"><rect style="fill:url(https://evil.example/p)"/></svg>',
        b'<svg xmlns="http://www.w3.org/2000/svg"><a><set attributeName="href" to="javascript:x()"/></a></svg>',
        b'<?xml-stylesheet href="https://evil.example/s.css"?><svg xmlns="http://www.w3.org/2000/svg"/>',
        b'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
        b'<svg xmlns="http://www.w3.org/2000/svg"><text>&b;</text></svg>',
        b'<svg xmlns="http://www.w3.org/2000/svg"><h:script xmlns:h="http://www.w3.org/1999/xhtml">x</h:script>'
        b"</svg>",
    ],
)
def test_unsafe_svg_is_refused(body: bytes) -> None:
    with pytest.raises(UnsafeSvg) as err:
        inspect_upload(io.BytesIO(body), FileCategory.LOGO)
    assert err.value.status == 415


def test_safe_svg_passes_and_oversized_svg_is_refused() -> None:
    check_svg_safe(SVG_OK)
    huge = b'<svg xmlns="http://www.w3.org/2000/svg">' + b"<g/>" * (SVG_MAX_BYTES // 4) + b"</svg>"
    with pytest.raises(FileTooLarge):
        inspect_upload(io.BytesIO(huge), FileCategory.LOGO)


# ------------------------------------------------------------------------------ streaming
async def stream(data: bytes, size: int = 10_000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def test_sniff_stream_replays_everything() -> None:
    data = CSV * 5000  # well past the sniff window
    sniffed = await sniff_stream(stream(data), FileCategory.ANALYSIS_DOCUMENT)
    assert sniffed.detected.kind is FileKind.CSV
    assert b"".join([c async for c in sniffed.stream]) == data


async def test_sniff_stream_refuses_before_storage(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedFileType):
        await sniff_stream(stream(elf_head()), FileCategory.LOGO)
    with pytest.raises(EmptyFile):
        await sniff_stream(stream(b""), FileCategory.LOGO)
    with pytest.raises(UnsafeSvg):
        await sniff_stream(stream(b'<svg xmlns="http://www.w3.org/2000/svg" onload="x()"/>'), FileCategory.LOGO)
    sniffed = await sniff_stream(stream(SVG_OK, 7), FileCategory.LOGO)
    assert sniffed.detected.kind is FileKind.SVG


async def test_binary_tail_aborts_the_storage_write(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path, secret_key="s" * 40, public_base_url="http://t")
    key = build_object_key(uuid.uuid4(), uuid.uuid4(), "analysis_document")
    data = TXT * 5000 + b"\x7fELF\x00\x00" + os.urandom(1000)
    sniffed = await sniff_stream(stream(data), FileCategory.ANALYSIS_DOCUMENT)
    assert sniffed.detected.kind is FileKind.TXT
    with pytest.raises(UnsupportedFileType):
        await storage.put_stream(key, sniffed.stream, max_bytes=10 * 1024 * 1024)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


async def test_truncated_utf8_at_end_is_refused() -> None:
    sniffed = await sniff_stream(stream(TXT * 3000 + "é".encode()[:1]), FileCategory.OTHER)
    with pytest.raises(UnsupportedFileType, match="UTF-8"):
        _ = [c async for c in sniffed.stream]


# ------------------------------------------------------------------------------ filenames
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\windows\\system32\\cmd.exe", "cmd.exe"),
        ("/absolute/path/logo.png", "logo.png"),
        ("..", "file"),
        ("", "file"),
        ("   ", "file"),
        ("re\x00port\x1f\x7f.pdf", "report.pdf"),
        ("line\r\nbreak.txt", "line break.txt"),
        ("evil\u202egpj.exe", "evilgpj.exe"),
        ("zero\u200bwidth.csv", "zerowidth.csv"),
        ("\uff0e\uff0e\uff0fsecret.txt", "secret.txt"),  # full-width "../" folds to a real one first
        ("Cafe\u0301 menu.docx", "Café menu.docx"),
        ("a:b*c?d|e<f>g\"h.xlsx", "a_b_c_d_e_f_g_h.xlsx"),
        ("CON.txt", "_CON.txt"),
        ("lpt1", "_lpt1"),
        (".hidden", "hidden"),
        ("trailing dots...", "trailing dots"),
    ],
)
def test_sanitize_filename(raw: str, expected: str) -> None:
    assert sanitize_filename(raw) == expected


def test_sanitize_filename_limits_bytes_and_keeps_extension() -> None:
    long = "日本語" * 100 + ".pdf"
    cleaned = sanitize_filename(long)
    assert cleaned.endswith(".pdf") and len(cleaned.encode()) <= 255
    cleaned.encode("utf-8")  # cut on a character boundary
    assert len(sanitize_filename("x" * 1000).encode()) == 255
    assert sanitize_filename("a" * 50 + ".txt", max_bytes=20) == "a" * 16 + ".txt"
