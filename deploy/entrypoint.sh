#!/usr/bin/env bash
# The container's processes. One argument picks what runs:
#   webserver-and-daemon (default)  the UI on :3000 and the daemon, in one container
#   webserver | daemon              one of them (docker-compose.yaml runs them as two services)
#   dev                             `dagster dev` with SQLite storage in the volume: no Postgres
#   anything else                   run as a command, e.g. `invoicesync anaf login`
# Only one daemon may run per Dagster instance: it launches the runs, and only runs write the
# DuckDB warehouse, which allows one writing process.
set -euo pipefail
app=$(cd "$(dirname "$0")/.." && pwd)
cd "$app"
mkdir -p "$DAGSTER_HOME" "$INVOICESYNC_HOME"
role=${1:-webserver-and-daemon}

# The instance settings come from the image, so a new image brings its own.
case "$role" in
  dev) install -m 0644 dagster.yaml "$DAGSTER_HOME/dagster.yaml" ;;
  webserver | daemon | webserver-and-daemon)
    install -m 0644 deploy/dagster.yaml "$DAGSTER_HOME/dagster.yaml" ;;
esac

case "$role" in
  webserver) exec dagster-webserver -w workspace.yaml -h 0.0.0.0 -p 3000 ;;
  daemon) exec dagster-daemon run -w workspace.yaml ;;
  dev) exec dagster dev -w workspace.yaml -h 0.0.0.0 -p 3000 ;;
  webserver-and-daemon)
    dagster-daemon run -w workspace.yaml &
    daemon=$!
    dagster-webserver -w workspace.yaml -h 0.0.0.0 -p 3000 &
    webserver=$!
    # `docker stop` sends SIGTERM to this script (PID 1): pass it on to both.
    trap 'kill -TERM "$daemon" "$webserver" 2>/dev/null || true' TERM INT
    # Whichever stops first stops the container, so a restart policy brings both back.
    status=0
    wait -n "$daemon" "$webserver" || status=$?
    kill -TERM "$daemon" "$webserver" 2>/dev/null || true
    wait || true
    exit "$status"
    ;;
  *) exec "$@" ;;
esac
