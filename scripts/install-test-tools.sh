#!/usr/bin/env bash
# Installs what the tests need beyond Python: Debian's poppler-utils (the report tests turn a PDF
# into PNG pages with pdftoppm and read its text with pdftotext), Debian's chromium (the browser
# tests drive /usr/bin/chromium with Playwright; Playwright's own browser download is not used) and
# Debian's redis-server (the Redis fault test stops and starts a scratch server of its own).
# Idempotent and quick when present. Without root (a developer laptop) it only says what is
# missing: those tests then skip, except in CI (CI=true), where a missing tool is a failure.
set -euo pipefail
missing=()
command -v pdftoppm >/dev/null 2>&1 && command -v pdftotext >/dev/null 2>&1 || missing+=(poppler-utils)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-test-tools: missing Debian packages: ${missing[*]} (the report/browser/fault tests need them)" >&2
  exit 0
fi
echo "install-test-tools: apt-get install ${missing[*]}"
apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 \
  "${missing[@]}" >/dev/null
