"""Moves the wall clock of every Python process of a test run N days ahead (the clock-ahead runs
of .ci/run): ``scripts/test.sh`` puts this folder on PYTHONPATH and sets
``OMNIFY_TEST_CLOCK_AHEAD_DAYS``; Python imports ``sitecustomize`` at start-up, so pytest, its xdist
workers and every interpreter the tests start (served apps, CLI calls, Celery workers, sandboxes
and moto in their own processes) see the same shifted calendar.

time-machine moves what Python reads as the wall clock (``time.time``, ``datetime.now``,
``date.today`` ...) and ticks on from there; monotonic clocks, sleeps and timeouts stay real.
libfaketime (Debian's 0.9.10) would move C programs too, but its wrappers break Python 3.11:
``time.sleep`` fails with EINVAL when monotonic clocks stay real, and lock timeouts hang when they
move. Servers, file modification times and OpenSSL keep the real clock (the app reads no
database-side ``now()``; test certificates are valid 2000-2099, tests/certs.py); the tests that
compare Python's clock with one of those are marked ``server_clock`` and left out.
"""

from __future__ import annotations

import os

_DAYS = os.environ.get("OMNIFY_TEST_CLOCK_AHEAD_DAYS", "")
if _DAYS:
    from datetime import UTC, datetime, timedelta

    import time_machine

    _TRAVEL = time_machine.travel(datetime.now(UTC) + timedelta(days=int(_DAYS)), tick=True)
    _TRAVEL.start()
