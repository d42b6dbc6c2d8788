#!/usr/bin/env bash
# The system programs some tests drive, from Debian's packages: chromium (the Dagster UI
# screenshot, invoicesync_dagster_tests/test_dagster_dev.py and scripts/screenshot_ui.py),
# postgresql and systemd's systemd-analyze (the deployment, test_deploy.py).
# Installs what is missing when we are root (CI on a fresh machine); otherwise says how.
set -euo pipefail

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "Some tests need Debian packages that are not installed: ${missing[*]}" >&2
  echo "  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
echo "Installing ${missing[*]} with apt-get (about a minute)..." >&2
# A fresh machine's package lists may be missing or stale: refresh them if the first try fails.
if ! apt-get install -y -q "${missing[@]}" >/dev/null; then
  apt-get update -q >/dev/null
  apt-get install -y -q "${missing[@]}" >/dev/null
fi
command -v chromium >/dev/null
echo "installed: ${missing[*]}" >&2
