#!/bin/sh
# Make a stand-in for python:3.11-slim where no registry of container images can be reached, so that the
# repository's Dockerfile builds unchanged with buildah (tests/system/test_container.py, .ci/run):
#
#   sh docker/base-image.sh            # once per machine; a second run finds the image and stops
#
# Debian bookworm's own Python 3.11 (debootstrap, minbase), with a virtual environment at /usr/local, so that
# `python`, `python3` and `pip` are at /usr/local/bin as in the official image. Imported with `podman import`
# as localhost/python:3.11-slim, which `FROM python:3.11-slim` resolves to. The image sets SSL_CERT_FILE to the
# CA bundle path that the build mounts from this machine (`-v /etc/ssl/certs:/etc/ssl/certs:ro`): the package
# proxy here is trusted through this machine's bundle only.
#
# Needs root, debootstrap and podman. REBUILD=1 replaces an existing image.
set -eu

IMAGE="${BASE_IMAGE:-localhost/python:3.11-slim}"
SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

for tool in debootstrap podman; do
    command -v "$tool" >/dev/null 2>&1 || { echo "base-image.sh: $tool is not installed" >&2; exit 1; }
done

if [ "${REBUILD:-0}" != 1 ] && podman image exists "$IMAGE"; then
    echo "base-image.sh: $IMAGE is already here (REBUILD=1 to make it again)"
    exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT INT TERM
root="$work/rootfs"

echo "base-image.sh: debootstrap $SUITE (minbase, python3) ..."
if ! debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates "$SUITE" "$root" "$MIRROR" \
    >"$work/debootstrap.log" 2>&1; then
    tail -n 40 "$work/debootstrap.log" >&2
    echo "base-image.sh: debootstrap failed" >&2
    exit 1
fi
# The official image's layout: its interpreter and pip answer at /usr/local/bin.
chroot "$root" /usr/bin/python3 -m venv /usr/local
chroot "$root" /usr/local/bin/python -c 'import ssl, sys, venv; assert sys.version_info[:2] == (3, 11)'
test -x "$root/usr/local/bin/pip"
# What a slim image leaves out: package caches and lists, documentation.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
    "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/log/*.log

tar -C "$root" --numeric-owner -cf "$work/rootfs.tar" .
podman import --quiet \
    --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
    --change 'CMD ["python3"]' \
    "$work/rootfs.tar" "$IMAGE"
podman image inspect --format "base-image.sh: $IMAGE {{.Id}}, {{.Size}} bytes" "$IMAGE"
