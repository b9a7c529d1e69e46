#!/usr/bin/env bash
# Start a Docker engine if none answers, and wait until it does. Idempotent; needs root when it
# has to start dockerd itself (CI and fresh development machines).
set -euo pipefail

if docker info >/dev/null 2>&1; then
  exit 0
fi
if ! command -v dockerd >/dev/null 2>&1; then
  echo "start-engine: dockerd is not installed (apt-get install docker.io)" >&2
  exit 1
fi
log=${DOCKRUN_DOCKERD_LOG:-/var/log/dockerd.log}
# setsid: the engine must outlive the shell (and CI step) that started it.
setsid dockerd >"$log" 2>&1 < /dev/null &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    exit 0
  fi
  sleep 1
done
echo "start-engine: dockerd did not answer within 60 s; see $log" >&2
tail -n 20 "$log" >&2 || true
exit 1
