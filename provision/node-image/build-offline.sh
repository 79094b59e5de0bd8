#!/bin/sh
# Builds the node image without a container registry: debootstrap from
# Debian's package mirror into a temporary root, then `docker import`.
# Usage: build-offline.sh IMAGE [MIRROR] [LABEL=VALUE]
set -eu
image=${1:?usage: build-offline.sh IMAGE [MIRROR] [LABEL=VALUE]}
mirror=${2:-http://deb.debian.org/debian}
label=${3:-org.labctl.node-inputs=unknown}
here=$(cd "$(dirname "$0")" && pwd)
command -v debootstrap >/dev/null || { echo "debootstrap is not installed (apt-get install debootstrap)" >&2; exit 3; }
root=$(mktemp -d /var/tmp/labctl-node-root.XXXXXX)
trap 'rm -rf "$root"' EXIT INT TERM
pkgs=$(grep -v '#' "$here/packages.txt" | paste -sd, -)
late=$(grep '# apt' "$here/packages.txt" | sed 's/#.*//' | xargs)
debootstrap --variant=minbase --include="$pkgs" bookworm "$root" "$mirror"
if [ -n "$late" ]; then
  # no service may start in the chroot
  printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d" && chmod 755 "$root/usr/sbin/policy-rc.d"
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  mount -t proc proc "$root/proc"
  trap 'umount "$root/proc" 2>/dev/null || true; rm -rf --one-file-system "$root"' EXIT INT TERM
  chroot "$root" apt-get update -q
  # shellcheck disable=SC2086
  chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $late
  umount "$root/proc"
  rm -f "$root/usr/sbin/policy-rc.d"
fi
cp "$here/vagrant-insecure.pub" "$here/node-init" "$here/setup-rootfs.sh" "$root/tmp/"
chroot "$root" /bin/sh /tmp/setup-rootfs.sh
rm -f "$root/tmp/setup-rootfs.sh"
tar -C "$root" -c . | docker import \
  -c 'CMD ["/usr/local/sbin/labctl-node-init"]' -c 'EXPOSE 22' -c "LABEL $label" \
  -m "labctl node (debootstrap bookworm)" - "$image"
