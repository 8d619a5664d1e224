"""Generated secrets are private from the first byte and one value wins when processes race."""

from __future__ import annotations

import multiprocessing
import stat
from pathlib import Path

from omnify.core.private_files import create_private_once, replace_private
from omnify.settings import data_dir_secret


def _race(folder: str, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    queue.put(data_dir_secret(Path(folder)))


def test_processes_starting_together_agree_on_one_signing_key(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
    procs = [ctx.Process(target=_race, args=(str(tmp_path / "data"), queue)) for _ in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    keys = {queue.get(timeout=5) for _ in procs}
    assert len(keys) == 1 and len(next(iter(keys))) >= 48
    key_file = tmp_path / "data" / "secret-key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert [p.name for p in key_file.parent.iterdir()] == ["secret-key"]  # no temporary files left


def test_create_once_keeps_the_first_value_and_replace_overwrites(tmp_path: Path) -> None:
    target = tmp_path / "ring.json"
    assert create_private_once(target, "first") is True
    assert create_private_once(target, "second") is False
    assert target.read_text() == "first"
    replace_private(target, "third")
    assert target.read_text() == "third"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ring.json"]
