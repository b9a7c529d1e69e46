#!/usr/bin/env bash
# One-time setup of a development machine (Debian, as root): the Docker engine, a local base
# image, and dockrun itself with its test extra. Idempotent. Prints the base image name on stdout
# (everything else goes to stderr), so that:
#
#   export DOCKRUN_BASE_IMAGE=$(bash docker/setup.sh)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

need=()
command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v docker-registry >/dev/null 2>&1 || need+=(docker-registry)
command -v git >/dev/null 2>&1 || need+=(git)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq "${need[@]}" >&2
fi
# Debian's docker-registry package starts a registry on :5000 that dockrun does not use.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now docker-registry >/dev/null 2>&1 || true; fi

bash "$here/start-engine.sh" >&2
image=$(bash "$here/build-base-image.sh")

# Install this checkout unless it is already the dockrun that Python imports.
installed=$(cd / && python3 -c 'import dockrun, os; print(os.path.dirname(os.path.dirname(dockrun.__file__)))' 2>/dev/null || true)
if [ "$installed" != "$(cd "$here/.." && pwd)" ] || ! command -v dockrun >/dev/null 2>&1; then
  echo "setup: installing dockrun (editable, with the test extra)" >&2
  python3 -m pip install -q -e "$here/..[test]" >&2
fi
# tox runs the tests (the README's second command).
python3 -c 'import tox' >/dev/null 2>&1 || python3 -m pip install -q tox >&2
# pyenv only finds new console scripts (dockrun, tox) after a rehash.
if command -v pyenv >/dev/null 2>&1; then pyenv rehash >&2 || true; fi
echo "$image"
