"""Hand-built zip archives for the bomb tests: Office look-alikes that inflate far too much.

Built without compressing the payload: a 1 MiB run of zeros is deflated once with a full
flush (which resets the compressor, so every following block is byte-identical) and the
block is repeated. A 1 GiB member thus costs about a megabyte and no CPU to make.
"""

from __future__ import annotations

import struct
import zlib

MiB = 1024 * 1024
_ZERO_MIB = b"\0" * MiB


def _zero_block() -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    return comp.compress(_ZERO_MIB) + comp.flush(zlib.Z_FULL_FLUSH)


def _zero_crc(mib: int) -> int:
    crc = 0
    for _ in range(mib):
        crc = zlib.crc32(_ZERO_MIB, crc)
    return crc


def _final() -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    return comp.flush(zlib.Z_FINISH)


def _local(name: bytes, method: int, crc: int, csize: int, usize: int) -> bytes:
    return struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc, csize, usize, len(name), 0) + name


def _central(name: bytes, method: int, crc: int, csize: int, usize: int, offset: int) -> bytes:
    return struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, method, 0, 0x21, crc, csize, usize,
                       len(name), 0, 0, 0, 0, 0, offset) + name


def _end(count: int, cd_size: int, cd_offset: int) -> bytes:
    return struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, cd_size, cd_offset, 0)


def build_zip(members: list[tuple[bytes, bytes, int, int, int]], *, shared_extra: int = 0) -> bytes:
    """``members``: (name, raw deflate data, crc, declared uncompressed size, method)."""
    body = b""
    central = b""
    for name, data, crc, usize, method in members:
        offset = len(body)
        body += _local(name, method, crc, len(data), usize) + data
        central += _central(name, method, crc, len(data), usize, offset)
    count = len(members)
    if shared_extra:  # more central entries pointing at the first member's local header
        name, data, crc, usize, method = members[0]
        for i in range(shared_extra):
            central += _central(name + str(i).encode(), method, crc, len(data), usize, 0)
        count += shared_extra
    return body + central + _end(count, len(central), len(body))


def _content_types() -> tuple[bytes, bytes, int, int, int]:
    xml = b'<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>'
    return b"[Content_Types].xml", xml, zlib.crc32(xml), len(xml), 0


def docx_bomb(inflated_mib: int = 1024, *, lie_about_size: bool = False) -> bytes:
    """A Word look-alike whose ``word/document.xml`` inflates to ``inflated_mib`` MiB of zeros.

    ``lie_about_size``: the headers declare 1 KiB (a modest ratio), the data inflates anyway.
    """
    data = _zero_block() * inflated_mib + _final()
    usize = 1024 if lie_about_size else inflated_mib * MiB
    crc = zlib.crc32(b"\0" * 1024) if lie_about_size else _zero_crc(inflated_mib)
    return build_zip([_content_types(), (b"word/document.xml", data, crc, usize, 8)])


def docx_overlapping(entries: int = 400, member_mib: int = 1) -> bytes:
    """One stored (uncompressed) member referenced by ``entries`` more central-directory
    entries: each entry's ratio is 1, only the sum explodes (Fifield's non-recursive bomb)."""
    data = b"\0" * (member_mib * MiB)
    member = (b"word/document.xml", data, _zero_crc(member_mib), len(data), 0)
    return build_zip([member, _content_types()], shared_extra=entries)


def docx_ok() -> bytes:
    """A small, honest Word look-alike (stored members)."""
    xml = b'<?xml version="1.0"?><w:document xmlns:w="x"><w:body>hello</w:body></w:document>'
    return build_zip([_content_types(), (b"word/document.xml", xml, zlib.crc32(xml), len(xml), 0)])
