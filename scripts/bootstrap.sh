#!/usr/bin/env bash
# Installs what a bare machine lacks for `make install`: uv (from PyPI) and redis-server (Debian).
set -euo pipefail
if ! command -v uv >/dev/null 2>&1 && [ ! -x "$HOME/.local/bin/uv" ]; then
  python3 -m pip install --user --quiet uv || python3 -m pip install --quiet uv
fi
if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    echo "bootstrap: redis-server not found; tests that start their own Redis will be skipped" >&2
  fi
fi
