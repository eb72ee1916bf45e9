#!/usr/bin/env bash
# Installs what a bare machine lacks for `make install`: uv (from PyPI), and from Debian redis-server
# (tests start private servers), openssl (the TLS test makes a throwaway CA) and chromium (the console's
# browser tests drive it with Playwright; Playwright's own browser download is never used).
set -euo pipefail
if ! command -v uv >/dev/null 2>&1 && [ ! -x "$HOME/.local/bin/uv" ]; then
  python3 -m pip install --user --quiet uv || python3 -m pip install --quiet uv
fi
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "bootstrap: missing ${missing[*]}; install them (tests that need them will fail or skip)" >&2
  fi
fi
