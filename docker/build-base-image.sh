#!/usr/bin/env bash
# Build a local Debian base image with Python 3 (for machines that cannot pull from a registry),
# and print its name. Idempotent: an existing image of that name is kept.
#
#   DOCKRUN_BASE_IMAGE=$(docker/build-base-image.sh)
#
# Real users do not need this: dockrun defaults to public python:<version>-slim images, which this
# mimics (python3 also as `python`, pip, venv, CA certificates).
set -euo pipefail

name=${1:-dockrun-base:bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

if docker image inspect "$name" >/dev/null 2>&1; then
  echo "$name"
  exit 0
fi
if ! command -v debootstrap >/dev/null 2>&1; then
  echo "build-base-image: debootstrap is not installed (apt-get install debootstrap)" >&2
  exit 1
fi

root=$(mktemp -d /tmp/dockrun-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase \
  --include=python3,python-is-python3,python3-venv,python3-pip,ca-certificates \
  bookworm "$root" "$mirror" >&2
# Keep the image small: package lists and caches are not needed at run time.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  - "$name" >&2
echo "$name"
