"""The worker and the beat of ``omnify up``: two child processes, kept running, stopped in time.

Why not ``omnify worker --beat``: Celery forks its embedded beat from the worker, and a
fork carries the worker's open SQLite broker connections (and SQLite's per-process lock
state) into the beat, where every publish then failed with "locking protocol" for the
beat's whole life (issue 14). Each child here is a fresh interpreter (``exec``), so no
connection ever crosses a fork.

The supervisor also does what a process manager would do in production:

* a child that exits while ``up`` runs is started again (exponential backoff, capped), and
  :meth:`Supervisor.healthy` is false while one is down, which ``/readyz`` reports;
* :meth:`Supervisor.stop` sends SIGTERM (Celery's warm shutdown), waits the grace period,
  then SIGKILLs the child's whole process group, so no worker outlives ``up``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger(__name__)


@dataclass
class Child:
    name: str
    argv: Sequence[str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    down_since: float | None = None
    next_start: float = 0.0


@dataclass
class Supervisor:
    """Start ``children`` (name -> argv after ``python -m omnify.cli``) and keep them alive."""

    children: Mapping[str, Sequence[str]]
    env: Mapping[str, str]
    grace_seconds: float = 10.0
    check_interval: float = 1.0
    max_backoff: float = 30.0
    _state: dict[str, Child] = field(default_factory=dict)
    _stopping: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        for name, argv in self.children.items():
            child = Child(name, list(argv))
            self._state[name] = child
            self._spawn(child)
        self._thread = threading.Thread(target=self._watch, name="omnify-up-supervisor", daemon=True)
        self._thread.start()

    def pids(self) -> dict[str, int | None]:
        with self._lock:
            return {n: (c.proc.pid if c.proc is not None and c.proc.poll() is None else None)
                    for n, c in self._state.items()}

    def healthy(self) -> dict[str, bool]:
        """Per child: is it running right now."""
        return {name: pid is not None for name, pid in self.pids().items()}

    def _spawn(self, child: Child) -> None:
        # Own process group: stopping the child also stops anything it forked (pool processes).
        argv = [sys.executable, "-m", "omnify.cli", *child.argv]  # our own command, no shell
        child.proc = subprocess.Popen(argv, env=dict(self.env), start_new_session=True)  # noqa: S603
        child.down_since = None
        if child.restarts:
            log.warning("up.child_restarted", child=child.name, pid=child.proc.pid, restarts=child.restarts)
        else:
            log.info("up.child_started", child=child.name, pid=child.proc.pid)

    def _watch(self) -> None:
        while not self._stopping.wait(self.check_interval):
            now = time.monotonic()
            with self._lock:
                for child in self._state.values():
                    if child.proc is None or child.proc.poll() is None:
                        continue
                    if child.down_since is None:
                        child.down_since = now
                        delay = min(self.max_backoff, 2.0 ** min(child.restarts, 5))
                        child.next_start = now + delay
                        log.warning("up.child_exited", child=child.name, code=child.proc.returncode,
                                    restart_in_s=delay)
                    if now >= child.next_start and not self._stopping.is_set():
                        child.restarts += 1
                        self._spawn(child)

    def stop(self) -> None:
        """SIGTERM every child, wait up to the grace period, then SIGKILL what is left."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            procs = [c.proc for c in self._state.values() if c.proc is not None]
        for proc in procs:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + self.grace_seconds
        for proc in procs:
            try:
                proc.wait(max(deadline - time.monotonic(), 0.0))
            except subprocess.TimeoutExpired:
                log.warning("up.child_killed", pid=proc.pid, grace_s=self.grace_seconds)
        for proc in procs:
            _signal_group(proc, signal.SIGKILL)  # the group: pool processes the child left behind
            if proc.poll() is None:
                proc.wait(5)


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
