#!/usr/bin/env python3
"""Run the fault-injection tests and regenerate docs/reliability.md from their figures.

Each fault test (tests/integration/reliability/test_fault_*.py, and the restore drill in
tests/ops/test_backup_drill.py) writes what it measured to ``.artifacts/reliability/<name>.json``
(``OMNIFY_RELIABILITY_DIR`` overrides the folder). This script runs them (one process per pass,
as the test script runs them in CI: Redis on both databases, PostgreSQL's restart, the broker's
restarts and the drill in the PostgreSQL pass), then writes the table: one row per fault, from those files only.

    python scripts/reliability-report.py            # run the tests, then write the doc
    python scripts/reliability-report.py --no-run   # only rewrite the doc from the last figures
    make reliability                                # the same as the first line
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reliability.md"
DR_DOC = ROOT / "docs" / "disaster-recovery.md"
BOTH_PASSES = ["tests/integration/reliability/test_fault_redis_restart.py",
               "tests/integration/reliability/test_fault_storage.py",
               "tests/integration/sync/test_sync_fault_figures.py"]
FAULT_TESTS = {
    "sqlite": [*BOTH_PASSES, "tests/integration/reliability/test_fuzz_api.py",
               "tests/unit/foundation/test_parser_properties.py"],
    "postgres": [*BOTH_PASSES, "tests/integration/reliability/test_fuzz_api.py",
                 "tests/integration/reliability/test_fault_postgres_restart.py",
                 "tests/integration/reliability/test_fault_broker_restart.py",
                 "tests/ops/test_backup_drill.py"],
}
#: Row order in the table (figures files not listed here come after, by name).
ORDER = ["postgres-restart", "redis-restart-postgresql", "redis-restart-sqlite", "broker-restart-rabbitmq",
         "broker-restart-redis", "storage-disk-full-enospc-postgresql", "storage-disk-full-enospc-sqlite",
         "storage-disk-full-postgresql", "storage-disk-full-sqlite",
         "storage-s3-killed-postgresql", "storage-s3-killed-sqlite", "restore-drill"]
#: Figures with a table of their own (one row per scenario), not a row of the faults table.
SYNC_PREFIX = "sync-faults-"

NOT_COVERED = [
    "A one-click action left `applying` by a worker killed during its platform calls is not reconciled "
    "with the platform: it stays `applying` (a rule's redo records it `failed`, interrupted) for an "
    "operator to check. Worker SIGKILLs during a sync, a webhook delivery, a brain run, a rule "
    "evaluation and the rules beat job (`omnify.rules.run_due`) are covered (docs/operations.md, leases).",
    "schemathesis's stateful phase and its coverage phase (boundary values: about 9,400 requests, too "
    "long for CI).",
    "OWASP ZAP itself: no Debian package and only its API clients on PyPI, so it cannot be installed here. Wapiti "
    "runs the passive and active scan instead (`bench/web_scan.py`, a step of `.ci/run`; docs/web-scan.md).",
]


def figures_dir() -> Path:
    return Path(os.environ.get("OMNIFY_RELIABILITY_DIR") or ROOT / ".artifacts" / "reliability")


def run_tests() -> int:
    env = dict(os.environ, OMNIFY_TEST_WORKERS="0")
    status = 0
    for which, paths in FAULT_TESTS.items():
        print(f"reliability: {which} pass: {' '.join(paths)}", flush=True)
        cmd = [shutil.which("bash") or "/bin/bash", str(ROOT / "scripts" / "test.sh"), which, *paths]
        status |= subprocess.run(cmd, cwd=ROOT, env=env, check=False).returncode  # noqa: S603 (fixed argv)
    return status


FUZZ_PREFIXES = ("fuzz-", "hypothesis")


def load_figures(fuzz: bool = False) -> list[dict[str, Any]]:
    """The fault figures (or, with ``fuzz``, the fuzzers' figures)."""
    found = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(figures_dir().glob("*.json"))
             if p.stem.startswith(FUZZ_PREFIXES) == fuzz}
    names = [n for n in ORDER if n in found] + sorted(n for n in found if n not in ORDER)
    return [found[n] for n in names]


def _statuses(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} x {status}" for status, n in counts.items()) or "none"


def row(f: dict[str, Any]) -> list[str]:
    """One table row: fault, database, load, what clients saw, recovery, writes acknowledged / found."""
    name = f["name"]
    if name == "restore-drill":
        return [f["fault"], f["database"], f"{f['rows']} rows",
                f"PITR: RPO {f['pitr_rpo_seconds']} s; end of archive: RPO {f['latest_rpo_seconds']} s",
                f"RTO {f['pitr_rto_seconds']} s (PITR), {f['latest_rto_seconds']} s (end of archive)",
                f"rows written / restored: {f['rows_expected_vs_found']}"]
    if name.startswith("storage-"):
        return storage_row(f)
    load = f"{f['clients']}, {f['load_seconds']:.0f} s, {f['requests']} requests; outage {f['outage_seconds']} s"
    if name.startswith("postgres-restart"):
        saw = (f"{_statuses(f['statuses'])}; during the outage: {_statuses(f['statuses_during_outage'])}; "
               f"other 5xx: {f['server_errors_other_than_503_retry_after']}, hangs: {f['hangs']}, "
               f"dropped connections: {f['dropped_connections']}, slowest answer {f['max_latency_seconds']} s")
        recovery = (f"{f['recovery_seconds']} s from PostgreSQL accepting connections to the first 2xx "
                    f"(its start took {f['restart_seconds']} s); no app restart")
        writes = (f"created {f['writes_found']} of {f['writes_acknowledged']} acknowledged; "
                  f"updated {f['updates_found']} of {f['updates_acknowledged']}")
        return [f["fault"], f["database"], load, saw, recovery, writes]
    if name.startswith("broker-restart"):
        saw = (f"{_statuses(f['statuses'])}; during the outage: {_statuses(f['statuses_during_outage'])} "
               f"({f['writes_acknowledged_during_outage']} writes acknowledged); hangs: {f['hangs']}, slowest "
               f"answer {f['max_latency_seconds']} s; `/readyz` during the outage: {f['readyz_during_outage']}; "
               f"API publishes that gave up (recovered by the sweep): {f['broker_errors_logged']['serve']}")
        recovery = (f"first job {f['first_job_after_restart_seconds']} s after the broker answered again (its "
                    f"start took {f['restart_seconds']} s), every job run {f['all_jobs_run_after_restart_seconds']} s "
                    f"after; worker and beat restarts: {f['worker_restarts'] + f['beat_restarts']}")
        writes = (f"jobs (webhook deliveries) enqueued {f['jobs_enqueued']} for {f['writes_acknowledged']} "
                  f"acknowledged writes, run {f['jobs_run_distinct']}; duplicates {f['duplicates']}, lost "
                  f"{f['lost']}, cut off mid-request {f['posts_cut_off']}")
        return [f["fault"], f["database"], load, saw, recovery, writes]
    if name.startswith("redis-restart"):
        b, d, a = f["before"], f["during"], f["after"]
        saw = (f"{_statuses(f['statuses'])}; hangs: {f['hangs']}, slowest answer {f['max_latency_seconds']} s; "
               f"cache hits before / during / after: {b['cache_hits']} / {d['cache_hits']} / {a['cache_hits']}; "
               f"rate-limited answers (RateLimit-* headers) during the outage: {d['rate_limited_answers']} of "
               f"{d['requests']} (fail open); `/readyz` during the outage: {f['readyz_during_outage']}")
        recovery = (f"{f['recovery_seconds']} s from Redis answering to the first cache hit; rate limits back "
                    f"after {f['rate_limits_back_seconds']} s; no app restart")
        return [f["fault"], f["database"], load, saw, recovery, "no database fault (updates all 2xx)"]
    return [f.get("fault", name), f.get("database", ""), "", json.dumps(f, sort_keys=True), "", ""]


def _phase(uploads: list[dict[str, Any]], *prefixes: str) -> list[dict[str, Any]]:
    return [u for u in uploads if u["label"].startswith(prefixes)]


def _answers(uploads: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for u in uploads:
        label = str(u["status"]) + (f" {u['type'].rsplit('/', 1)[-1]}" if u.get("type") else "")
        label += f" (Retry-After: {u['retry_after']})" if u.get("retry_after") else ""
        counts[label] = counts.get(label, 0) + 1
    return _statuses(counts)


def storage_row(f: dict[str, Any]) -> list[str]:
    """A storage fault: the uploads before, during and after it, one keep-alive client."""
    uploads = f["uploads"]
    before, after = _phase(uploads, "before"), _phase(uploads, "after")
    during = [u for u in uploads if u not in before and u not in after]
    slowest = max((u["seconds"] for u in during), default=0.0)
    transport = sum(str(u["status"]).startswith("transport") for u in uploads)
    saw = (f"before: {_answers(before)}; during: {_answers(during)} (slowest {slowest} s); after: "
           f"{_answers(after)}; 500s logged: {f['server_errors_logged']}, dropped connections: {transport}")
    if f["name"].startswith("storage-disk-full"):
        fault_uploads = (f"fault uploads {f['upload_bytes'] / 2**20:.0f} MiB (a streamed PDF, a spooled Word "
                         "document)")
        if f.get("mode") == "enospc":
            load = (f"1 client (keep-alive), {len(uploads)} uploads; a {f['limit_bytes'] // 2**20} MiB tmpfs "
                    f"filled to {f['free_bytes_during_fault'] / 2**20:.0f} MiB free, {fault_uploads}")
            cleared = "the filler deleted"
        else:
            load = (f"1 client (keep-alive), {len(uploads)} uploads; `RLIMIT_FSIZE` {f['limit_bytes'] // 2**20} "
                    f"MiB, {fault_uploads}")
            cleared = "the limit raised"
        recovery = (f"{f['recovery_seconds']} s from {cleared} to the first 201 (the same "
                    f"{f['upload_bytes'] / 2**20:.0f} MiB upload); no app restart")
        left = f"partial files left: {f['partial_files_left']}"
    else:
        load = (f"1 client (keep-alive), {len(uploads)} uploads; relay killed after 4 MiB of a 12 MiB multipart "
                f"upload, down for the next; outage {f['outage_seconds']} s")
        recovery = (f"{f['recovery_seconds']} s from the endpoint back to the first 201 (the same 12 MiB upload); "
                    "no app restart")
        left = (f"unfinished multipart uploads: {f['incomplete_multipart_uploads_during_outage']} during the "
                f"outage, {f['incomplete_multipart_uploads_after_recovery']} after (aborted on recovery)")
    writes = (f"files stored before: {f['files_before_intact']} of {f['files_before']} intact (SHA-256); rows of "
              f"failed uploads: {f['rows_during_fault'] - f['files_before']}; objects: {f['objects_before']} "
              f"before, {f['objects_after_fault']} after; {left}")
    return [f["fault"], f["database"], load, saw, recovery, writes]


def sync_table(figures: list[dict[str, Any]]) -> str:
    head = ["database", "fault", "run", "requests received", "answered", "retries", "429s / Retry-After honoured",
            "dropped connections (seen)", "circuit opened / closed", "rows vs fault-free (missing, twice)",
            "seconds (fault-free)"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for f in figures:
        ref = f["reference"]
        for s in f["scenarios"]:
            circuit = f"{s['circuit_opened']} / {s.get('circuit_closed', 0)}"
            requests = str(s["requests_received"])
            if "requests_while_open" in s:
                requests += f" (then {s['requests_while_open']} while open)"
            cells = [f["database"], s["scenario"], s["status"], requests, _statuses(s["answered"]),
                     str(s["retries"]), f"{s.get('rate_limited', 0)} / {s.get('retry_after_honoured', 0)}",
                     f"{s.get('dropped_connections', 0)} ({s.get('connection_errors_seen', 0)})", circuit,
                     f"{s['rows']} vs {s['rows_expected']} ({s['rows_missing']}, {s['rows_duplicated']})",
                     f"{s['seconds']} ({ref['seconds']})"]
            lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) if figures else "(no figures: run the sync fault test)"
def fuzz_section(figures: list[dict[str, Any]]) -> str:
    """The fuzzers' figures: schemathesis per database, hypothesis per property."""
    lines = []
    for f in figures:
        if f["name"].startswith("fuzz-"):
            runs = ", ".join(f"{label}: {run.get('operations', '?')} operations, {run.get('failures', '?')} failures"
                             for label, run in f.get("summary", {}).items())
            roles = "; ".join(f"{role} {r['requests']} requests ({_statuses(r['statuses'])})"
                              for role, r in f.get("roles", {}).items())
            per_role = (f" (member and viewer: {f['role_max_examples']})" if "role_max_examples" in f else "")
            lines.append(f"- **schemathesis** ({f['database']}, measured {f['measured_at']}): {f['requests']} "
                         f"requests in {f['seconds']} s, {f['server_errors']} server errors (5xx), "
                         f"{f['nonconformances']} nonconformances; statuses {_statuses(f['statuses'])}; "
                         f"{runs}; checks {', '.join(f['checks'])}; {f['max_examples']} examples per "
                         f"operation{per_role}.")
            if roles:
                lines.append(f"  - by role: {roles}.")
        else:
            lines.append(f"- **hypothesis** (measured {f['measured_at']}): {f['properties']} properties, "
                         f"{f['examples']} examples, {f['failures']} failures.")
    return "\n".join(lines) or "- no fuzz figures yet"


def drill_table() -> str:
    """The measured RPO/RTO table of docs/disaster-recovery.md, as it stands there."""
    text = DR_DOC.read_text(encoding="utf-8") if DR_DOC.exists() else ""
    section = text.partition("## Measured RPO and RTO")[2]
    match = re.search(r"^\| drill \|.*?(?=\n\n)", section, flags=re.S | re.M)
    return match.group(0) if match else "(no measured table found in docs/disaster-recovery.md)"


def _span_days(first: str, last: str) -> float:
    return (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds() / 86400


def render(figures: list[dict[str, Any]]) -> str:
    head = ["fault", "database", "load", "what clients saw", "recovery", "writes acknowledged vs found"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    sync = [f for f in figures if f["name"].startswith(SYNC_PREFIX)]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row(f)) + " |" for f in figures if f not in sync]
    measured = sorted({f["measured_at"] for f in figures})
    when = f"{measured[0]} to {measured[-1]}" if measured else "never"
    if measured and _span_days(measured[0], measured[-1]) > 1:
        # One .ci/run spans about an hour; a wider range is the passes run with the clock moved ahead.
        when += (" (UTC; the files written by the `.ci/run` passes with the clock 30 and 365 days"
                 " ahead carry the moved dates)")
    else:
        when += " (UTC)"
    return f"""# Reliability: faults survived, with figures

Generated by `make reliability` (`scripts/reliability-report.py`) from the figures the fault tests
wrote to `.artifacts/reliability/*.json`; edit the script, not the table. The same tests run in
`.ci/run` on every change (`make test`: both databases), where they assert what the table shows.

Measured {when} on the CI machine class (2 CPUs, other jobs beside it).

## Faults injected

{chr(10).join(lines)}

How each is driven, and what the test asserts:

- **PostgreSQL restarted under load** (`tests/integration/reliability/test_fault_postgres_restart.py`,
  PostgreSQL pass only): a scratch cluster of its own (never the shared server), migrated with
  `omnify migrate up`, served by `omnify serve` as the app role (no BYPASSRLS). Writers create a
  client per request and update their own; readers list and fetch. A client that gets an error
  waits 0.1 s and goes on (an impatient client, to probe the outage, rather than honouring
  `Retry-After: 5`). `pg_ctl stop -m fast` (open sessions terminated) for 5 s, then started.
  Asserted: no 5xx but `503` problem+json `database-unavailable` with `Retry-After`; no request
  without an answer within 10 s; no dropped connection; the first 2xx within 5 s of PostgreSQL
  accepting connections, and only 2xx from 5 s after it on; every acknowledged (2xx) creation is
  in the database by its id and every acknowledged update is there or superseded by a later one.
  History: the issue-20 probe (PostgreSQL stopped 25 s) saw 675 answers of 500 instead of 503;
  once those were 503s, this test found two ways a client's keep-alive connection was still
  dropped — the 503 came from Starlette's catch-all, which re-raises after responding, and a
  request's session whose rollback failed on the terminated connection raised after the
  response — both fixed (`core/errors.py` handlers, `core/db.close_session`).
  A write answered 503 may or may not have committed (the commit can succeed just as the
  connection drops), so only acknowledged writes are counted; a client retrying one should send
  an `Idempotency-Key` where the route takes one (actions, chat), and expect a 409 on a unique
  name otherwise.
- **Redis stopped and started** (`tests/integration/reliability/test_fault_redis_restart.py`, both
  passes): a scratch `redis-server` (no persistence, so it comes back empty) is the analytics
  cache and the rate limiter's store of `omnify serve`. Readers fetch a client's analytics report
  (`X-Cache: hit` while Redis is up), a writer updates and lists clients. Redis stopped for 5 s.
  Asserted: every answer 2xx, none slower than 10 s; no cache hit and no `RateLimit-*` header
  while Redis is down (the cache is bypassed and reports are computed from the database; rate
  limits fail open, as docs/security.md says); cache hits and rate limits back within 5 s of
  Redis answering, without restarting the app.
- **Disk full during an upload** (`tests/integration/reliability/test_fault_storage.py`, both
  passes, two ways): `omnify serve` on local storage; three files uploaded, then the disk fills
  under two uploads: a PDF streamed to storage and a Word document spooled to a temporary file
  (it is decoded before it is stored). *ENOSPC*: the storage folder is a 24 MiB tmpfs in the
  server's own mount namespace (`unshare --user --map-root-user --mount`), which the test fills
  to 1 MiB free, then frees; the server log must show the kernel's `ENOSPC`. *RLIMIT*: the running
  server's `RLIMIT_FSIZE` lowered with `prlimit` below the uploads (`EFBIG`; it also reaches the
  spool file outside the storage folder), then raised again. Asserted: `507` problem+json
  `storage-full` with `Retry-After` (507 Insufficient Storage, RFC 4918, as WebDAV servers,
  Nextcloud and ownCloud answer a full store; 413 and 402 mean the file or the plan, not the
  server), no 500 logged, no dropped connection; no row and no file (final or `.part`) of the
  failed uploads; the files stored before served back with their SHA-256; the same upload 201
  once the limit is raised, without restarting the app. History: before the fix the streamed
  upload answered `503` without `Retry-After` and the spooled one a `500` whose connection was
  dropped (the client saw `ReadError`).
- **S3 endpoint killed during and before an upload** (same file, both passes): moto holds the
  bucket; the app reaches it through a TCP relay that the test kills (open connections reset,
  the port refusing) after 4 MiB of a 12 MiB multipart upload, leaves down for the next upload,
  then starts on the same port (moto keeps its objects in memory, so the relay is what dies: the
  objects stored before must survive, as on S3). Asserted: `503` problem+json
  `storage-unavailable` with `Retry-After`, no 500, no dropped connection; no row and no object
  of the failed uploads; the files stored before intact; the killed upload's multipart parts
  (whose abort could not reach S3 during the outage) aborted once S3 answers again; the same
  upload 201 afterwards without restarting the app. A crashed process leaves such parts to the
  bucket's lifecycle rule (`AbortIncompleteMultipartUpload`).
- **Broker stopped and started** (`tests/integration/reliability/test_fault_broker_restart.py`,
  PostgreSQL pass, once per broker: RabbitMQ, and Redis as the broker): a scratch broker of its
  own (a RabbitMQ node with its own name, ports, data and cookie, stopped with SIGTERM, its durable
  queues kept; or a `redis-server` without persistence, which comes back empty: every message
  it held is gone), a fresh database, and `omnify serve`, `omnify worker` and `omnify beat` as
  separate processes. The jobs are webhook deliveries to a local receiver, through both outbox
  paths: a client creation writes a `client.created` domain event in its transaction (beat's
  `dispatch_events` turns it into a delivery row, whose task the worker publishes), a test event
  writes a delivery row whose task the API publishes after its commit (kombu's retry policy, off
  the event loop); a publish that gives up is found again by beat's `redeliver_due` sweep (the
  sweeps run every 2 and 5 s in the test, 10 and 15 s by default). One writer of each kind, a
  write per second each; the broker stopped 3 s in, its start command 4 s later, the load going
  on 3 s after it answers. Asserted: every write answered 2xx within 10 s, some while the broker
  was down; the worker and beat never exit; every acknowledged write's delivery reaches the
  receiver exactly once (counted by client id and `webhook-id`), none cut off mid-request, each
  delivery `succeeded` at its first attempt; the first job within 15 s of the broker answering,
  every job within 30 s of the load's end. History: the first runs found deliveries cut off
  mid-request (the receiver got the headers and no body) and parked for a full 60 s lease: on a
  broker connection loss Celery terminates every running late-ack task. The deliver task is now
  acknowledged on receipt (it is a nudge; the row and its lease are the truth, and the sweep finds
  a lost one). They also found a worker on the Redis broker exiting ("Unrecoverable error:
  AttributeError: 'NoneType' object has no attribute 'hostname'") when Redis went away while it
  held a message: Celery's cleanup closed a channel of an already closed transport; fixed in
  `omnify.jobs.redis_transport` (tests/integration/jobs/test_jobs_redis_connection_loss.py).
  `/readyz` answers 200 `degraded` while the broker is down (asserted): the API accepts every
  write meanwhile, so a load balancer that follows readiness keeps it in rotation (until
  2026-12-04 the check was hard and a broker outage took every pod out of the Service).
- **Restore drill** (`tests/ops/test_backup_drill.py`, PostgreSQL pass): base backup + encrypted
  WAL archive restored into a new cluster, to a point in time and to the end of the archive
  (details in [disaster-recovery.md](disaster-recovery.md)). Objectives: RPO 1 h, RTO 4 h.

Restore drill figures recorded in [disaster-recovery.md](disaster-recovery.md#measured-rpo-and-rto)
(including the 3-million-row runs, which are not part of CI):

{drill_table()}

## Sync under platform faults

`tests/integration/sync/test_sync_fault_figures.py` (both passes): the Google Ads sandbox reached
through a TCP relay, one fault at a time on a fresh connection of the same account, with
production's retry attempts and breaker threshold (5 each; shorter backoff and a 1 s cooldown).
Counted by an observer plugged into the connector (answers, retries, breaker events) and the
sandbox's journal (requests received). Bursts of 3 (below the threshold): 429 with `Retry-After:
0.5`, 503, the relay resetting the connection instead of relaying the answer; slow responses:
every data call delayed 0.3 s. Then a platform failing every call: the first run fails after its
retries and opens the circuit, the second fails with `circuit_open` without a request; healed and
cooled down, the circuit closes and the third run completes. Asserted: each run with bursts
succeeds with the same rows as the fault-free run (none missing, none twice), every 429 waited out
for at least its `Retry-After`, every dropped connection retried; the circuit as described. The
behaviours one by one: `tests/integration/sync/test_sync_faults.py`.

{sync_table(sync)}

## Readiness during a Redis outage

`/readyz` checks Redis and reports it, but a Redis outage does not make an instance unready: it
answers 200 with `"status": "degraded"` (the Redis rows show the status it answered). Until
2026-12-04 it answered 503, so behind a Kubernetes Service or a load balancer that follows
readiness a shared Redis outage took every API pod out of rotation although, as measured above,
the API serves without it. The database, its migrations and the broker still make it unready.

## Covered by other tests (figures of 2026-12-04, both databases)

- **Worker SIGKILLed mid-backfill** (`tests/integration/sync/test_sync_worker_crash.py`): a pool
  child on the embedded broker, a whole worker on the embedded broker (then a new worker), a pool
  child on Redis; 20 s lease in the test. Resumed 21.2-22.5 s after the kill (bound 23 s, lease x 1.1
  + 1 s), finished 25.9-28.8 s; the dead run closed as `abandoned`, rows equal to a fault-free run.
  The bound with the default 60 s lease: 67 s (docs/operations.md, "Sync leases").
- **Worker SIGKILLed mid-webhook delivery** (`tests/integration/webhooks/test_webhook_worker_crash.py`):
  the whole worker (then a new one) or its pool child, killed while the receiver holds the POST;
  8 s lease and a 2 s sweep in the test. Sent again 8.5-10.0 s after the kill (bound 10 s, lease +
  one sweep), delivered once, the same `webhook-id` on both receipts, the lost attempt in the
  delivery log and counted. The bound with the defaults: 76 s (docs/webhooks.md, "A worker dies
  mid-delivery").
- **`omnify up` stopped with SIGTERM** (`tests/integration/foundation/test_up_lifecycle.py`): the
  worker child exits within its grace period.
- **Upload crashed between its object and its row** (`tests/integration/onboarding/test_orphan_sweep.py`,
  local disk and S3 on moto): a child process writes an upload's object and thumbnail through the
  Storage API and is SIGKILLed before its row; those objects, and on the local disk the temporary
  file of a write killed half-way, are deleted by the hourly `omnify.files.sweep_orphans` job once
  older than `OMNIFY_STORAGE_ORPHAN_GRACE_SECONDS` (1 h; an upload in flight is younger); objects with a row
  (deleted-but-not-purged ones included) and other domains' objects (privacy exports) are untouched.
- **Tenant isolation sweep** (`tests/integration/foundation/test_tenant_sweep.py`): 112 operations
  called with the other organization's 26 real ids and values through a JWT and an API key, 482
  calls, 0 answers other than 404, 48 tables (775 rows) of the victim unchanged; role sweep 220
  calls, 0 violations; web-session sweep 53 pages and forms, 64 calls, 0 violations
  (docs/security.md).

## Fuzzing

schemathesis (`tests/integration/reliability/test_fuzz_api.py`, both passes) runs `st run` over
`/api/v1/openapi.json` as the owner, a member and a viewer of a seeded organization (real ids in
the paths; the member's and viewer's refused writes must be documented 403s) and as its API key,
with the checks not_a_server_error, status_code_conformance, content_type_conformance,
response_schema_conformance, response_headers_conformance and negative_data_rejection; the
hypothesis properties (`tests/unit/foundation/test_parser_properties.py`) feed every parser of
outside input (cursors, Shopify webhooks, Slack signatures, OAuth state, rule definitions,
passwords, uploads, images, archives, file names, multipart, platform errors and headers) with
arbitrary and mutated input: a value or the documented error, never anything else. Found and
fixed: a password over 72 characters (500), a non-numeric Slack timestamp (500), a corrupt deflate
stream in a .docx (500), `Retry-After: NaN`, a race creating a client's onboarding row (500).

{fuzz_section(load_figures(fuzz=True))}

## Not yet covered

{chr(10).join(f"- {item}" for item in NOT_COVERED)}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--no-run", action="store_true", help="only rewrite the doc from the last figures")
    args = parser.parse_args()
    status = 0 if args.no_run else run_tests()
    figures = load_figures()
    if not figures:
        print(f"reliability: no figures in {figures_dir()}", file=sys.stderr)
        return 1
    DOC.write_text(render(figures), encoding="utf-8")
    print(f"reliability: wrote {DOC.relative_to(ROOT)} from {len(figures)} figures files")
    if status:
        print("reliability: some fault tests failed (the doc shows their figures as measured)", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
