#!/usr/bin/env bash
# Restore drill: restore the newest backup (or the state at --target-time) into a scratch
# PostgreSQL cluster, run the integrity checks, print the achieved RPO and RTO, and fail when they
# miss the objectives (RPO 1 h, RTO 4 h). Run weekly by the omnify-backup-drill CronJob, and by
# hand before and after any change to the backup setup.
#
#   OMNIFY_BACKUP_URL=s3://omnify-production-backups/pg \
#   OMNIFY_BACKUP_ENCRYPTION_KEY=... deploy/backup/restore-drill.sh [--target-time 2026-01-31T14:05:00+00:00]
set -euo pipefail

: "${OMNIFY_BACKUP_URL:?set OMNIFY_BACKUP_URL (file:///dir or s3://bucket/prefix)}"
: "${OMNIFY_BACKUP_ENCRYPTION_KEY:?set OMNIFY_BACKUP_ENCRYPTION_KEY (the key that sealed the backups)}"
OMNIFY=${OMNIFY:-omnify}

exec "$OMNIFY" backup drill --max-rpo-seconds 3600 --max-rto-seconds 14400 "$@"
