#!/usr/bin/env python3
"""Rebuild the web app's third-party front-end files from pinned npm packages.

The built files are committed (src/omnify/web/static/vendor/, tests/browser/assets/), so
neither `make up` nor the server ever needs Node or the network: this script is only run
by a developer who bumps a version. It fetches each tarball with `npm pack` (the npm
client, by exact version), refuses it unless its integrity matches the pin below, and
copies out the few files we serve plus each package's licence. The app adds a content
hash to every static URL at start-up (cache-busting names), so nothing here is renamed.

    python3 scripts/build-web-assets.py          # rebuild
    python3 scripts/build-web-assets.py --check  # rebuild into a temp dir and compare
"""

from __future__ import annotations

import argparse
import base64
import filecmp
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENDOR = Path("src/omnify/web/static/vendor")
TEST_ASSETS = Path("tests/browser/assets")

#: (package, exact version, npm integrity, {path in the tarball: destination})
PINS: list[tuple[str, str, str, dict[str, Path]]] = [
    ("htmx.org", "2.0.8",
     "sha512-fm297iru0iWsNJlBrjvtN7V9zjaxd+69Oqjh4F/Vq9Wwi2kFisLcrLCiv5oBX0KLfOX/zG8AUo9ROMU5XUB44Q==",
     {"package/dist/htmx.min.js": VENDOR / "htmx.min.js"}),
    ("uplot", "1.6.32",
     "sha512-KIMVnG68zvu5XXUbC4LQEPnhwOxBuLyW1AHtpm6IKTXImkbLgkMy+jabjLgSLMasNuGGzQm/ep3tOkyTxpiQIw==",
     {"package/dist/uPlot.iife.min.js": VENDOR / "uPlot.iife.min.js",
      "package/dist/uPlot.min.css": VENDOR / "uPlot.min.css"}),
    ("@picocss/pico", "2.1.1",
     "sha512-kIDugA7Ps4U+2BHxiNHmvgPIQDWPDU4IeU6TNRdvXQM1uZX+FibqDQT2xUOnnO2yq/LUHcwnGlu1hvf4KfXnMg==",
     {"package/css/pico.min.css": VENDOR / "pico.min.css"}),
    ("swagger-ui-dist", "5.35.0",
     "sha512-U06rpMtW9V3XPGOBeamTUSr0Z09jMX4IJuANpE/EZbAhw0G8CgwrzU4YmXkn/h0wCDNsXdGarTNNHC3sU8yVUQ==",
     {"package/swagger-ui-bundle.js": VENDOR / "swagger-ui-bundle.js",
      "package/swagger-ui.css": VENDOR / "swagger-ui.css"}),
    ("axe-core", "4.11.0",
     "sha512-ilYanEU8vxxBexpJd8cWM4ElSQq4QctCLKih0TSfjIfCQTeyH/6zVrmIJfLPrKTKJRbiG+cfnZbQIjAlJmF1jQ==",
     {"package/axe.min.js": TEST_ASSETS / "axe.min.js"}),
]
LICENCE_NAMES = ("package/LICENSE", "package/LICENSE.md", "package/LICENSE.txt", "package/license")


def integrity_of(path: Path) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def fetch(name: str, version: str, integrity: str, workdir: Path) -> Path:
    out = subprocess.run(["npm", "pack", f"{name}@{version}", "--json", "--pack-destination", str(workdir)],
                         check=True, capture_output=True, text=True, cwd=workdir).stdout
    tarball = workdir / json.loads(out)[0]["filename"]
    actual = integrity_of(tarball)
    if actual != integrity:
        sys.exit(f"{name}@{version}: integrity {actual} does not match the pin {integrity}")
    return tarball


def build(dest_root: Path) -> None:
    manifest: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, version, integrity, files in PINS:
            tarball = fetch(name, version, integrity, Path(tmp))
            with tarfile.open(tarball) as tar:
                members = {m.name: m for m in tar.getmembers()}
                for inner, dest in files.items():
                    target = dest_root / dest
                    target.parent.mkdir(parents=True, exist_ok=True)
                    source = tar.extractfile(members[inner])
                    assert source is not None, inner
                    target.write_bytes(source.read())
                licence = next((members[n] for n in LICENCE_NAMES if n in members), None)
                if licence is not None:
                    source = tar.extractfile(licence)
                    assert source is not None
                    out = dest_root / VENDOR / "licenses" / f"{name.replace('/', '__').lstrip('@')}.txt"
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(source.read())
            manifest[name] = {"version": version, "integrity": integrity,
                              "files": sorted(str(p) for p in files.values())}
    (dest_root / VENDOR / "packages.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare a fresh build with the committed files")
    args = parser.parse_args()
    if shutil.which("npm") is None:
        sys.exit("npm is needed to rebuild the vendored assets (never at run time)")
    if not args.check:
        build(ROOT)
        print("vendored assets rebuilt; commit src/omnify/web/static/vendor and tests/browser/assets")
        return
    with tempfile.TemporaryDirectory() as tmp:
        build(Path(tmp))
        fresh = [p for p in Path(tmp).rglob("*") if p.is_file()]
        differ = [str(p.relative_to(tmp)) for p in fresh
                  if not filecmp.cmp(p, ROOT / p.relative_to(tmp), shallow=False)
                  or not (ROOT / p.relative_to(tmp)).exists()]
    if differ:
        sys.exit("vendored assets differ from a fresh build: " + ", ".join(differ))
    print("vendored assets match their pinned packages")


if __name__ == "__main__":
    main()
