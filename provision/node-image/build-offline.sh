#!/bin/sh
# Builds the node image without a container registry: debootstrap from
# Debian's package mirror into a temporary root, then `docker import`.
# Usage: build-offline.sh IMAGE [MIRROR]
set -eu
image=${1:?usage: build-offline.sh IMAGE [MIRROR]}
mirror=${2:-http://deb.debian.org/debian}
here=$(cd "$(dirname "$0")" && pwd)
command -v debootstrap >/dev/null || { echo "debootstrap is not installed (apt-get install debootstrap)" >&2; exit 3; }
root=$(mktemp -d /var/tmp/labctl-node-root.XXXXXX)
trap 'rm -rf "$root"' EXIT INT TERM
pkgs=$(grep -v '^#' "$here/packages.txt" | paste -sd, -)
debootstrap --variant=minbase --include="$pkgs" bookworm "$root" "$mirror"
cp "$here/vagrant-insecure.pub" "$here/node-init" "$here/setup-rootfs.sh" "$root/tmp/"
chroot "$root" /bin/sh /tmp/setup-rootfs.sh
rm -f "$root/tmp/setup-rootfs.sh"
tar -C "$root" -c . | docker import \
  -c 'CMD ["/usr/local/sbin/labctl-node-init"]' -c 'EXPOSE 22' \
  -m "labctl node (debootstrap bookworm)" - "$image"
