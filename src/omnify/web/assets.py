"""Static files with cache-busting names: ``app.js`` is served as ``app.<hash>.js``.

The hash is the content's, computed once at start-up, so a deploy that changes a file
changes its URL and browsers may keep every hashed URL forever (``immutable``); the
plain name still answers, with a short cache, for tools that want a stable address.
Everything is served from the package itself: no CDN, no build step at run time.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response

from omnify.core.errors import NotFound

STATIC_DIR = Path(__file__).parent / "static"
IMMUTABLE = "public, max-age=31536000, immutable"
SHORT = "public, max-age=300"


def hashed_name(relative: str, digest: str) -> str:
    head, dot, ext = relative.rpartition(".")
    return f"{head}.{digest}.{ext}" if dot else f"{relative}.{digest}"


class StaticAssets:
    def __init__(self, root: Path = STATIC_DIR) -> None:
        self.root = root
        self._hashed: dict[str, str] = {}  # logical -> hashed
        self._files: dict[str, Path] = {}  # hashed or logical -> file
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            relative = path.relative_to(root).as_posix()
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
            name = hashed_name(relative, digest)
            self._hashed[relative] = name
            self._files[name] = path
            self._files[relative] = path

    def url(self, relative: str) -> str:
        """The cache-busting URL of a static file (a missing file fails loudly at render)."""
        return "/static/" + self._hashed[relative]

    def response(self, request: Request, path: str) -> Response:
        found = self._files.get(path)
        if found is None:
            raise NotFound(f"No static file {path}.")
        cache = SHORT if path in self._hashed else IMMUTABLE
        return FileResponse(found, headers={"Cache-Control": cache})
