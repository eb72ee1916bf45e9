#!/usr/bin/env bash
# Idempotently make a Docker engine available: a no-op when `docker info` already works, otherwise
# install Debian's docker.io (needs root + apt) and start dockerd in the background.
#
# Why not systemd: CI and dev machines here are containers without an init system. Why a storage driver
# loop: overlay2 needs a kernel/filesystem that allows overlay mounts (not always true inside a
# container); vfs always works, only slower and bigger on disk.
# Log: ${DOCKERD_LOG:-/var/log/dockerd.log}. Exit non-zero (loudly) when no engine can be started.
set -euo pipefail

log() { echo "ensure-docker: $*" >&2; }

if docker info >/dev/null 2>&1; then
  exit 0
fi

if ! command -v dockerd >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    log "dockerd missing and cannot apt-get install docker.io (need root + apt-get)"
    exit 1
  fi
  log "installing docker.io from Debian"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends docker.io iptables ca-certificates >/dev/null
fi

LOG_FILE="${DOCKERD_LOG:-/var/log/dockerd.log}"
mkdir -p "$(dirname "$LOG_FILE")"

wait_ready() {  # $1 = dockerd pid; up to ~60 s
  local pid=$1
  for _ in $(seq 1 120); do
    if docker info >/dev/null 2>&1; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then return 1; fi
    sleep 0.5
  done
  return 1
}

# A stale pidfile/socket from a dead daemon makes dockerd refuse to start.
if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
  rm -f /var/run/docker.pid /var/run/docker.sock
fi

for driver in ${DOCKER_STORAGE_DRIVERS:-overlay2 vfs}; do
  log "starting dockerd --storage-driver=$driver (log: $LOG_FILE)"
  # setsid: the daemon must outlive this script and not get the caller's signals (make, pytest).
  setsid dockerd --storage-driver="$driver" >>"$LOG_FILE" 2>&1 < /dev/null &
  pid=$!
  if wait_ready "$pid"; then
    log "docker engine ready (storage driver $driver, pid $pid)"
    exit 0
  fi
  log "dockerd with $driver did not come up; last log lines:"
  tail -n 15 "$LOG_FILE" >&2 || true
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  rm -f /var/run/docker.pid
done
log "could not start a Docker engine"
exit 1
