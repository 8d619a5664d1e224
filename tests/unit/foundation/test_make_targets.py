"""`make up` installs what running needs, `make test` what testing needs (issue 14 item 12:
`make up` installed the dev extras, about 2.5 minutes of test and lint tooling)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _planned(target: str, venv: Path) -> list[str]:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    done = subprocess.run(["make", "-n", "-C", str(ROOT), target, f"VENV={venv}"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if "pip install" in line and "--upgrade pip" not in line]


def test_make_up_installs_the_runtime_only(tmp_path: Path) -> None:
    [install] = _planned("up", tmp_path / "venv")
    assert install.endswith("install -q -e .")


def test_make_test_installs_the_dev_extras(tmp_path: Path) -> None:
    [install] = _planned("test", tmp_path / "venv")
    assert install.endswith('install -q -e ".[dev]"')
