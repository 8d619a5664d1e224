"""Files only the owner may read (keys, generated secrets), written so that processes starting
together agree on one value.

``omnify up`` starts the API, the worker and the beat at the same moment; each may be the first
to need the data directory's signing key or master-key ring. Writing in place would let two of
them generate different values and strand whatever the loser signed or encrypted. So the content
goes to a private temporary file first and is hard-linked into place, which fails if another
process won; the loser then reads the winner's file.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def write_private_tmp(path: Path, text: str) -> Path:
    """``text`` in a new 0600 file beside ``path`` (fsynced), for linking or renaming into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def create_private_once(path: Path, text: str) -> bool:
    """Create ``path`` (0600) holding ``text`` unless it exists; True if this call created it."""
    tmp = write_private_tmp(path, text)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True


def replace_private(path: Path, text: str) -> None:
    """Atomically replace ``path`` with a 0600 file holding ``text``."""
    tmp = write_private_tmp(path, text)
    try:
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
