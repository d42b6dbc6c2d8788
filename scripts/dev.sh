#!/usr/bin/env bash
# `make dev`: the Dagster UI (webserver + daemon) against the local sandbox on 127.0.0.1.
# Uses the demo's seeded data if present (run `make demo` first for data), else seeds 14 days.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
SANDBOX_PORT=${SANDBOX_PORT:-8765}
fixtures="$INVOICESYNC_HOME/sandbox/stripe.jsonl"
if [ ! -f "$fixtures" ]; then
  mkdir -p "$(dirname "$fixtures")"
  "$BIN/invoicesync" sandbox seed --days 14 --output "$fixtures"
fi
set -a; source sandbox.dotenv; set +a
# Every outside service goes to the sandbox: nothing leaves 127.0.0.1.
export STRIPE_API_BASE="http://127.0.0.1:$SANDBOX_PORT"
export ANAF_PUBLIC_API_BASE="http://127.0.0.1:$SANDBOX_PORT"
export BNR_RATES_URL="http://127.0.0.1:$SANDBOX_PORT/bnr/nbrfxrates.xml"
export ANAF_API_BASE="http://127.0.0.1:$SANDBOX_PORT"
export ANAF_OAUTH_BASE="http://127.0.0.1:$SANDBOX_PORT"
export SMARTBILL_API_BASE="http://127.0.0.1:$SANDBOX_PORT"
# setsid + group kill: a background process started from a script ignores SIGINT otherwise.
setsid "$BIN/invoicesync" sandbox serve --port "$SANDBOX_PORT" --stripe-fixtures "$fixtures" &
sandbox_pid=$!
trap 'kill -- -"$sandbox_pid" 2>/dev/null || true' EXIT
# The sandbox's ANAF OAuth approves at once: log in (tokens in $INVOICESYNC_HOME, mode 0600).
for _ in $(seq 50); do "$BIN/invoicesync" sandbox anaf-login 2>/dev/null && break; sleep 0.2; done
echo "Dagster UI: http://127.0.0.1:3000   (Ctrl-C to stop)"
"$BIN/dagster" dev -w workspace.yaml -h 127.0.0.1 -p "${DAGSTER_PORT:-3000}"
