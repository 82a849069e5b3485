#!/usr/bin/env bash
# pip-audit on the locked dependencies (constraints.txt: every package pinned, so no resolution and no
# pip run is needed). With no route to the vulnerability service (an offline build box), it skips and
# says so instead of failing the build; with one, any known vulnerability fails it.
#
#   BIN             virtualenv bin folder holding python and pip-audit (default .venv/bin)
#   AUDIT_PROBE_URL what to reach first to decide (default: PyPI's JSON API, pip-audit's default service)
#   SKIP_AUDIT=1    skip on purpose (a sandbox that must not query the registry per package), saying so
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
# pip-audit asks PyPI's JSON API per pinned version (pypi.org/pypi/NAME/VERSION/json); probe exactly
# that, with a package from the lock: a registry mirror that serves packages but not that API would
# otherwise let pip-audit report "No known vulnerabilities" having audited nothing.
pin=$(grep -m1 -i '^boto3==' constraints.txt | cut -d= -f3)
PROBE=${AUDIT_PROBE_URL:-https://pypi.org/pypi/boto3/${pin:-1.44.8}/json}

if [ "${SKIP_AUDIT:-}" = "1" ]; then
    echo "pip-audit: skipped: SKIP_AUDIT=1 is set; constraints.txt was not audited."
    exit 0
fi

if ! reason=$("$BIN/python" - "$PROBE" 2>&1 <<'PY'
import sys
import urllib.request

try:
    urllib.request.urlopen(sys.argv[1], timeout=5).read(1)  # noqa: S310 - a fixed https URL or a test's
except Exception as exc:
    print(exc)
    sys.exit(1)
PY
); then
    echo "pip-audit: skipped: the vulnerability data is not reachable (${PROBE}: ${reason})."
    echo "pip-audit: run 'make audit' where PyPI is reachable to audit constraints.txt."
    exit 0
fi

echo "pip-audit: auditing constraints.txt"
exec "$BIN/pip-audit" --requirement constraints.txt --no-deps --disable-pip --progress-spinner off
