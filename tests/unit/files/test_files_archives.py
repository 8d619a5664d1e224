"""Zip bombs and malformed archives are refused before a Word/Excel upload is stored."""

from __future__ import annotations

import io
import zipfile

import pytest

from omnify.files.archives import ArchiveBomb, ArchiveLimits, InvalidArchive, check_archive
from tests.zipbombs import build_zip, docx_bomb, docx_ok, docx_overlapping


def _real_xlsx(text: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("xl/workbook.xml", "<workbook/>")
        z.writestr("xl/worksheets/sheet1.xml", text)
    return buf.getvalue()


def test_an_honest_document_passes_and_is_measured() -> None:
    assert check_archive(io.BytesIO(docx_ok())).entries == 2
    sheet = "".join(f"<row r='{i}'><c><v>{i * 7919 % 10007}</v></c></row>" for i in range(20_000))
    summary = check_archive(io.BytesIO(_real_xlsx(sheet)))
    assert summary.uncompressed_bytes > 500_000 and summary.compressed_bytes < summary.uncompressed_bytes


def test_one_megabyte_that_inflates_to_a_gibibyte_is_refused() -> None:
    bomb = docx_bomb(1024)
    assert len(bomb) < 1_100_000
    with pytest.raises(ArchiveBomb, match="100 times"):
        check_archive(io.BytesIO(bomb))


def test_a_member_that_lies_about_its_size_is_inflated_for_real() -> None:
    with pytest.raises(ArchiveBomb):
        check_archive(io.BytesIO(docx_bomb(64, lie_about_size=True)))
    # Under the ratio limit, the lie itself is the refusal.
    with pytest.raises(InvalidArchive, match=r"CRC|size"):
        check_archive(io.BytesIO(docx_bomb(1, lie_about_size=True)), ArchiveLimits(max_ratio=10_000))


def test_overlapping_entries_are_caught_by_the_total() -> None:
    with pytest.raises(ArchiveBomb, match="more than"):
        check_archive(io.BytesIO(docx_overlapping(400)))


def test_entry_count_and_total_limits() -> None:
    many = build_zip([(f"word/{i}.xml".encode(), b"x", 0x8CDC1683, 1, 0) for i in range(50)])
    with pytest.raises(ArchiveBomb, match="entries"):
        check_archive(io.BytesIO(many), ArchiveLimits(max_entries=10))
    assert check_archive(io.BytesIO(many)).entries == 50
    with pytest.raises(ArchiveBomb, match="expands to more than"):
        check_archive(io.BytesIO(docx_bomb(2)), ArchiveLimits(max_ratio=10_000, max_total_uncompressed=1024))


def test_truncated_and_corrupt_archives_are_invalid() -> None:
    good = docx_ok()
    with pytest.raises(InvalidArchive):
        check_archive(io.BytesIO(good[:-30]))
    corrupt = bytearray(_real_xlsx("<sheet>" + "abc" * 1000 + "</sheet>"))
    corrupt[60:70] = b"\xff" * 10
    with pytest.raises(InvalidArchive):
        check_archive(io.BytesIO(bytes(corrupt)))


def test_the_file_is_rewound_after_the_check() -> None:
    fp = io.BytesIO(docx_ok())
    check_archive(fp)
    assert fp.tell() == 0
