#!/bin/sh
# The local base image of `make compose-test`, as a root filesystem tarball for `podman
# import`: Debian bookworm from Debian's packages with Python 3.11 in a venv first on PATH,
# which is what compose/Dockerfile asks of its BASE. No container registry is needed.
# Usage: sh tests/compose/base.sh OUT.tar   (as root)
set -eu
out=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
root=$work/rootfs
debootstrap --variant=minbase --include=python3-venv,ca-certificates bookworm "$root" \
    http://deb.debian.org/debian
# The sources of Debian's own images: the release, its updates and security.
rm -f "$root/etc/apt/sources.list"
cat > "$root/etc/apt/sources.list.d/debian.sources" <<'SOURCES'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
chroot "$root" python3 -m venv /opt/venv
# Builds reach the package indexes the way this machine does: a CA it added (an egress
# proxy's, say) is trusted inside too. Debian's pip reads the system bundle.
for crt in /usr/local/share/ca-certificates/*.crt; do
    [ -e "$crt" ] && cp "$crt" "$root/usr/local/share/ca-certificates/"
done
chroot "$root" update-ca-certificates >/dev/null
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
mkdir -p "$(dirname "$out")"
tar -C "$root" --numeric-owner -cf "$out.part" .
mv "$out.part" "$out"
