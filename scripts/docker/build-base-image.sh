#!/usr/bin/env bash
# Build a local stand-in for the `python:3.12-slim` image when it is absent (no registry reachable
# here). It is Debian bookworm minbase + Debian's python3 (3.11, not 3.12 — fine for a stand-in: the
# services support 3.11+), pip and venv, with a `python` link, the host's CA bundle (a TLS-inspecting
# proxy sits between us and PyPI) and pip allowed to install into the system interpreter.
#
# On machines that can pull the real image this script does nothing (the image is already there, or
# `docker pull python:3.12-slim` works — set PULL_BASE=1 to try that first).
# The debootstrap root filesystem tarball is cached in .cache/docker/ (gitignored) so reruns are fast.
# Usage: scripts/docker/build-base-image.sh [--force]
set -euo pipefail
cd "$(dirname "$0")/../.."

IMAGE="${BASE_IMAGE:-python:3.12-slim}"
SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
CACHE_DIR="${BASE_IMAGE_CACHE:-$PWD/.cache/docker}"
PACKAGES=python3,python3-pip,python3-venv,ca-certificates
# The cache key names what the tarball holds: a change of suite or package list builds a new one.
TARBALL="$CACHE_DIR/$SUITE-$(echo "$SUITE $PACKAGES" | sha256sum | cut -c1-12)-rootfs.tar"
CA_BUNDLE="${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
log() { echo "build-base-image: $*" >&2; }

force=0
[ "${1:-}" = "--force" ] && force=1

if [ "$force" = 0 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
  log "$IMAGE already present"
  exit 0
fi
if [ "$force" = 0 ] && [ "${PULL_BASE:-0}" = 1 ] && docker pull "$IMAGE" >/dev/null 2>&1; then
  log "pulled $IMAGE"
  exit 0
fi

start=$(date +%s)
mkdir -p "$CACHE_DIR"
if [ ! -s "$TARBALL" ] || [ "$force" = 1 ]; then
  if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
  fi
  root=$(mktemp -d /tmp/py-rootfs.XXXXXX)
  trap 'rm -rf "$root"' EXIT
  log "debootstrap $SUITE (minbase + python3) into $root"
  debootstrap --variant=minbase --include="$PACKAGES" \
    "$SUITE" "$root" "$MIRROR" >"$CACHE_DIR/debootstrap.log" 2>&1 \
    || { tail -n 30 "$CACHE_DIR/debootstrap.log" >&2; exit 1; }
  ln -sf python3 "$root/usr/bin/python"
  # The proxy's CA must be trusted inside the image for pip to reach PyPI; a CA bundle is public data.
  if [ -s "$CA_BUNDLE" ]; then cp "$CA_BUNDLE" "$root/etc/ssl/certs/ca-certificates.crt"; fi
  # Slim it like the real -slim image: no apt lists, docs, man pages or caches.
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/log/*.log
  find "$root/usr/lib/python3" -name __pycache__ -type d -prune -exec rm -rf {} + 2>/dev/null || true
  tar -C "$root" -cf "$TARBALL.tmp" .
  mv "$TARBALL.tmp" "$TARBALL"
  rm -rf "$root"
  trap - EXIT
else
  log "using cached root filesystem $TARBALL"
fi

docker import \
  -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  -c 'ENV LANG=C.UTF-8' \
  -c 'ENV PIP_BREAK_SYSTEM_PACKAGES=1' \
  -c 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
  -c 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
  -c 'ENV PIP_DISABLE_PIP_VERSION_CHECK=1' \
  -c 'CMD ["python3"]' \
  -m "stand-in for $IMAGE: debian $SUITE + python3 (scripts/docker/build-base-image.sh)" \
  "$TARBALL" "$IMAGE" >/dev/null
log "built $IMAGE in $(( $(date +%s) - start ))s ($(docker image inspect -f '{{.Size}}' "$IMAGE") bytes)"
