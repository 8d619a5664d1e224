"""Refuse zip-based uploads (Word, Excel) that inflate far beyond their size: zip bombs.

A 1 MB ``.docx`` can inflate to a gigabyte: whoever later opens it (a preview, an
indexer, the brain reading a brief, the user's own Word) pays in memory and CPU. The
limits follow Apache POI's ``ZipSecureFile``, the guard every Java Office reader uses:

* at most :data:`MAX_ENTRIES` entries (a directory bomb is many tiny entries);
* each entry at most :data:`MAX_RATIO` times its compressed size once it passes
  :data:`RATIO_GRACE_BYTES` (small XML parts compress well and are harmless);
* at most :data:`MAX_TOTAL_UNCOMPRESSED` bytes in all (overlapping-entry bombs declare a
  modest ratio per entry but share one compressed blob, so the sum catches them).

The declared sizes of the central directory are checked first (cheap, refuses the obvious
bomb without inflating a byte); then every entry is inflated for real from its raw bytes, in
chunks, counting what comes out, so a header that lies about its size, a CRC mismatch, a
truncated member or an unsupported method is refused too (:class:`InvalidArchive`)
instead of being stored as a document.
Blocking CPU work: call :func:`acheck_archive` from async code.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from dataclasses import dataclass
from typing import BinaryIO

import anyio.to_thread

from omnify.core.errors import UnprocessableEntity

KiB, MiB = 1024, 1024 * 1024
MAX_ENTRIES = 10_000
MAX_RATIO = 100
RATIO_GRACE_BYTES = 100 * KiB
MAX_TOTAL_UNCOMPRESSED = 256 * MiB
_CHUNK = 256 * KiB


class ArchiveBomb(UnprocessableEntity):
    code, title = "archive-bomb", "Archive expands too much"


class InvalidArchive(UnprocessableEntity):
    code, title = "invalid-archive", "Invalid archive"


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    max_entries: int = MAX_ENTRIES
    max_ratio: int = MAX_RATIO
    ratio_grace_bytes: int = RATIO_GRACE_BYTES
    max_total_uncompressed: int = MAX_TOTAL_UNCOMPRESSED


@dataclass(frozen=True, slots=True)
class ArchiveSummary:
    entries: int
    compressed_bytes: int
    uncompressed_bytes: int


def _refuse_ratio(name: str, out: int, compressed: int, limits: ArchiveLimits) -> None:
    if out > limits.ratio_grace_bytes and out > limits.max_ratio * max(compressed, 1):
        raise ArchiveBomb(
            f"The archive member '{name[:200]}' expands more than {limits.max_ratio} times its size.",
            max_ratio=limits.max_ratio)


def _refuse_total(total: int, limits: ArchiveLimits) -> None:
    if total > limits.max_total_uncompressed:
        raise ArchiveBomb(f"The archive expands to more than {limits.max_total_uncompressed} bytes.",
                          max_uncompressed_bytes=limits.max_total_uncompressed)


def _member_data_offset(fp: BinaryIO, info: zipfile.ZipInfo) -> int:
    fp.seek(info.header_offset)
    header = fp.read(30)
    if len(header) != 30 or header[:4] != b"PK\x03\x04":
        raise zipfile.BadZipFile("bad local file header")
    name_len, extra_len = struct.unpack_from("<HH", header, 26)
    return int(info.header_offset) + 30 + int(name_len) + int(extra_len)


def _inflate(fp: BinaryIO, info: zipfile.ZipInfo, total: int, limits: ArchiveLimits) -> int:
    """Inflate one member from its raw bytes, whatever its headers declare; its real size.

    Our own inflater rather than ``ZipFile.open``: that one stops at the declared size, so a
    member that declares 1 KiB and inflates to a gigabyte would look harmless here and
    explode in the next reader that trusts the deflate stream.
    """
    if info.flag_bits & 0x1:
        raise RuntimeError("encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise NotImplementedError(f"compression method {info.compress_type}")
    fp.seek(_member_data_offset(fp, info))
    inflater = zlib.decompressobj(-15) if info.compress_type == zipfile.ZIP_DEFLATED else None
    left, out, crc = info.compress_size, 0, 0
    while left > 0:
        raw = fp.read(min(_CHUNK, left))
        if not raw:
            raise EOFError("truncated member")
        left -= len(raw)
        pending = raw
        while pending:
            if inflater is None:
                piece, pending = pending, b""
            else:
                piece = inflater.decompress(pending, _CHUNK)
                pending = inflater.unconsumed_tail
            out += len(piece)
            crc = zlib.crc32(piece, crc)
            _refuse_ratio(info.filename, out, info.compress_size, limits)
            _refuse_total(total + out, limits)
    if inflater is not None and not inflater.eof:
        raise zipfile.BadZipFile("truncated deflate stream")
    if out != info.file_size or crc != info.CRC:
        raise zipfile.BadZipFile(f"member {info.filename!r} does not match its declared size or CRC")
    return out


def check_archive(fp: BinaryIO, limits: ArchiveLimits | None = None) -> ArchiveSummary:
    """Validate a zip archive against the limits; leaves ``fp`` rewound."""
    limits = limits or ArchiveLimits()
    try:
        with zipfile.ZipFile(fp) as archive:
            infos = archive.infolist()
            if len(infos) > limits.max_entries:
                raise ArchiveBomb(f"The archive has more than {limits.max_entries} entries.",
                                  max_entries=limits.max_entries)
            for info in infos:  # declared sizes: the cheap refusal
                _refuse_ratio(info.filename, info.file_size, info.compress_size, limits)
            _refuse_total(sum(i.file_size for i in infos), limits)
            total = 0
            for info in infos:  # real sizes: headers can lie
                total += _inflate(fp, info, total, limits)
            return ArchiveSummary(len(infos), sum(i.compress_size for i in infos), total)
    # zlib.error: a corrupt deflate stream in a member (our own inflater; a 500 until hypothesis
    # found it).
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, OSError, ValueError,
            zlib.error) as exc:
        reason = str(exc)[:200] or type(exc).__name__
        raise InvalidArchive(f"The archive is corrupt or uses an unsupported feature: {reason}.") from None
    except RuntimeError:  # zipfile: encrypted member, password required
        raise InvalidArchive("Encrypted archives are not accepted.") from None
    finally:
        fp.seek(0)


async def acheck_archive(fp: BinaryIO, limits: ArchiveLimits | None = None) -> ArchiveSummary:
    return await anyio.to_thread.run_sync(lambda: check_archive(fp, limits))
