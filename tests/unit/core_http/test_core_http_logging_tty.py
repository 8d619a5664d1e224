"""Human-readable log lines on a terminal, JSON everywhere else (issue 14 item 12)."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

from omnify.core.logging import json_logs
from omnify.settings import Settings
from tests.servers import clean_env

_LOG_ONE_LINE = (
    "from omnify.core.logging import configure_logging, get_logger\n"
    "from omnify.settings import get_settings\n"
    "configure_logging(get_settings())\n"
    "get_logger('omnify.tests.tty').warning('hello_terminal', pieces=3)\n"
)


def _env(tmp_path: Path) -> dict[str, str]:
    env = clean_env()
    env["OMNIFY_DATA_DIR"] = str(tmp_path)
    return env


def test_a_terminal_gets_readable_lines(tmp_path: Path) -> None:
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-c", _LOG_ONE_LINE], stdout=secondary, stderr=secondary,
                                env=_env(tmp_path), cwd=tmp_path)
        os.close(secondary)
        out = b""
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # the terminal closed: the child is done
                break
            if not chunk:
                break
            out += chunk
        assert proc.wait(30) == 0
    finally:
        os.close(primary)
    line = next(x for x in out.decode(errors="replace").splitlines() if "hello_terminal" in x)
    assert not line.lstrip().startswith("{")
    assert "pieces" in line


def test_a_pipe_gets_json(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", _LOG_ONE_LINE], capture_output=True, text=True,
                          env=_env(tmp_path), cwd=tmp_path, timeout=30)
    event = json.loads(next(x for x in done.stdout.splitlines() if "hello_terminal" in x))
    assert event["event"] == "hello_terminal" and event["pieces"] == 3


def test_production_and_an_explicit_setting_win_over_the_terminal(tmp_path: Path) -> None:
    primary, secondary = pty.openpty()
    try:
        with os.fdopen(secondary, "w", closefd=False) as tty:
            assert json_logs(Settings(_env_file=None, env="development", data_dir=tmp_path), tty) is False  # type: ignore[call-arg]
            assert json_logs(Settings(_env_file=None, env="production", data_dir=tmp_path), tty) is True  # type: ignore[call-arg]
            assert json_logs(Settings(_env_file=None, env="development", log_json=True, data_dir=tmp_path),  # type: ignore[call-arg]
                             tty) is True
    finally:
        os.close(primary)
        os.close(secondary)
