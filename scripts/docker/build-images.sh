#!/usr/bin/env bash
# Build both service images from the repository root: jobs-api:${IMAGE_TAG:-dev}, jobs-worker:${IMAGE_TAG:-dev}.
# Starts/installs a Docker engine and builds the python:3.12-slim stand-in first when needed
# (both idempotent), then prints build time and size of each image.
# `--network host`: on our machines only the host network reaches the package registries.
set -euo pipefail
cd "$(dirname "$0")/../.."
TAG="${IMAGE_TAG:-dev}"
LOG_DIR="${BUILD_LOG_DIR:-.cache/docker}"
mkdir -p "$LOG_DIR"

bash scripts/docker/ensure-docker.sh
bash scripts/docker/build-base-image.sh

build() {  # $1 = api | worker; both run at once: the cold builds are mostly network waits
  local svc=$1 image="jobs-$1:$TAG" start
  start=$(date +%s)
  if ! docker build --network host -f "services/$svc/Dockerfile" -t "$image" . >"$LOG_DIR/build-$svc.log" 2>&1; then
    tail -n 40 "$LOG_DIR/build-$svc.log" >&2
    echo "build-images: docker build of $image failed (full log: $LOG_DIR/build-$svc.log)" >&2
    return 1
  fi
  local size
  size=$(docker image inspect -f '{{.Size}}' "$image")
  echo "build-images: $image built in $(( $(date +%s) - start ))s, $(( size / 1000000 )) MB" >&2
}
build api & api_pid=$!
build worker & worker_pid=$!
status=0
wait "$api_pid" || status=1
wait "$worker_pid" || status=1
exit "$status"
