#!/bin/sh
# Builds labctl's libvirt Vagrant box without a box registry: debootstrap of
# Debian bookworm with Debian's kernel, a `vagrant` user with Vagrant's insecure
# key, sshd and Docker from Debian's packages, on a bootable qcow2 disk.
# Writes OUTDIR/labctl-bookworm.box, and the box's kernel as OUTDIR/vmlinuz (booted
# once under KVM to learn whether KVM really runs a guest here).
# Usage (as root): build.sh OUTDIR [MIRROR]
set -eu
outdir=${1:?usage: build.sh OUTDIR [MIRROR]}
out="$outdir/labctl-bookworm.box"
mirror=${2:-http://deb.debian.org/debian}
here=$(cd "$(dirname "$0")" && pwd)
for tool in debootstrap sfdisk losetup partx mkfs.ext4 qemu-img; do
  command -v "$tool" >/dev/null || { echo "$tool is not installed (apt-get install debootstrap fdisk mount e2fsprogs qemu-utils)" >&2; exit 3; }
done
[ "$(id -u)" -eq 0 ] || { echo "building the VM box needs root (debootstrap, loop devices)" >&2; exit 3; }

work=$(mktemp -d /var/tmp/labctl-box.XXXXXX)
root="$work/root" mnt="$work/mnt" loop=""
cleanup() {
  for m in "$mnt/dev" "$mnt/proc" "$mnt/sys" "$mnt" "$root/proc"; do
    mountpoint -q "$m" 2>/dev/null && umount "$m"
  done
  [ -n "$loop" ] && losetup -d "$loop" 2>/dev/null
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$root" "$mnt" "$outdir"

pkgs=$(grep -v '^#' "$here/packages.txt" | grep -v grub-pc | paste -sd, -)
echo "debootstrap bookworm ($mirror)"
debootstrap --include="$pkgs" bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 \
  || { tail -n 20 "$work/debootstrap.log" >&2; exit 1; }

echo "configuring the guest"
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d"   # no service starts in the chroot
chmod 755 "$root/usr/sbin/policy-rc.d"
# Interfaces are eth0 (Vagrant's management/NAT network) and eth1 (the lab's private network).
cat > "$root/etc/default/grub" <<'GRUB'
GRUB_DEFAULT=0
GRUB_TIMEOUT=0
GRUB_DISTRIBUTOR=Debian
GRUB_CMDLINE_LINUX_DEFAULT="quiet"
GRUB_CMDLINE_LINUX="net.ifnames=0 biosdevname=0 console=tty0 console=ttyS0"
GRUB_TERMINAL=console
GRUB_DISABLE_OS_PROBER=true
GRUB
echo 'LABEL=vmroot / ext4 errors=remount-ro 0 1' > "$root/etc/fstab"
echo labctl-box > "$root/etc/hostname"
printf 'auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet dhcp\n\nsource /etc/network/interfaces.d/*\n' \
  > "$root/etc/network/interfaces"
: > "$root/etc/machine-id"     # each VM makes its own at first boot
rm -f "$root/var/lib/dbus/machine-id"
# Host keys are made at each VM's first boot, not shared by every VM of the box. One Ed25519
# key: `ssh-keygen -A` also makes RSA and ECDSA keys, and the RSA prime search alone took
# 5 to 60 s of a VM's boot under qemu's software emulation.
rm -f "$root"/etc/ssh/ssh_host_*
mkdir -p "$root/etc/systemd/system/ssh.service.d"
cat > "$root/etc/systemd/system/ssh.service.d/labctl-host-keys.conf" <<'UNIT'
[Service]
ExecStartPre=
ExecStartPre=/bin/sh -c 'test -s /etc/ssh/ssh_host_ed25519_key || exec /usr/bin/ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key'
ExecStartPre=/usr/sbin/sshd -t
UNIT
# Units that only cost a VM's boot here: ipvsadm's init script does nothing unconfigured, there is
# no LVM for e2scrub, and apt's daily timers would take dpkg's lock from provisioning.
for unit in ipvsadm.service e2scrub_reap.service apt-daily.timer apt-daily-upgrade.timer; do
  ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
chroot "$root" sh -c 'id vagrant >/dev/null 2>&1 || useradd --create-home --shell /bin/bash vagrant'
chroot "$root" usermod -aG docker vagrant
install -d -m 700 "$root/home/vagrant/.ssh"
install -m 600 "$here/../node-image/vagrant-insecure.pub" "$root/home/vagrant/.ssh/authorized_keys"
chroot "$root" chown -R vagrant:vagrant /home/vagrant/.ssh
echo 'vagrant ALL=(ALL) NOPASSWD: ALL' > "$root/etc/sudoers.d/vagrant"
chmod 440 "$root/etc/sudoers.d/vagrant"
printf 'UseDNS no\nHostKey /etc/ssh/ssh_host_ed25519_key\n' > "$root/etc/ssh/sshd_config.d/labctl.conf"

echo "making the disk"
raw="$work/disk.raw"
truncate -s 10G "$raw"
echo 'start=2048, type=83, bootable' | sfdisk -q "$raw"
loop=$(losetup -fP --show "$raw")
[ -b "${loop}p1" ] || partx -a "$loop" 2>/dev/null || true
i=0
until [ -b "${loop}p1" ]; do   # no udev here: wait for devtmpfs to show the partition
  i=$((i + 1)); [ "$i" -lt 100 ] || { echo "no partition device ${loop}p1" >&2; exit 1; }
  sleep 0.1
done
mkfs.ext4 -q -L vmroot -d "$root" "${loop}p1"
mount "${loop}p1" "$mnt"
mount --bind /dev "$mnt/dev"
mount -t proc proc "$mnt/proc"
mount -t sysfs sys "$mnt/sys"
chroot "$mnt" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends grub-pc \
  >"$work/grub.log" 2>&1 || { tail -n 20 "$work/grub.log" >&2; exit 1; }
chroot "$mnt" grub-install --target=i386-pc "$loop" >>"$work/grub.log" 2>&1 \
  || { tail -n 20 "$work/grub.log" >&2; exit 1; }
chroot "$mnt" update-grub >>"$work/grub.log" 2>&1 || { tail -n 20 "$work/grub.log" >&2; exit 1; }
# Without udev, update-grub names the loop device as the root: the guest finds its root by label.
sed -i "s|root=${loop}p1|root=LABEL=vmroot|g" "$mnt/boot/grub/grub.cfg"
grep -q 'root=LABEL=vmroot' "$mnt/boot/grub/grub.cfg" || { echo "grub.cfg names no root=LABEL=vmroot" >&2; exit 1; }
rm -f "$mnt/usr/sbin/policy-rc.d"
chroot "$mnt" apt-get clean
rm -rf "$mnt"/var/lib/apt/lists/*
umount "$mnt/dev" "$mnt/proc" "$mnt/sys" "$mnt"
losetup -d "$loop"
loop=""

echo "packing the box"
qemu-img convert -c -O qcow2 "$raw" "$work/box.img"
rm -f "$raw"
printf '{"provider": "libvirt", "format": "qcow2", "virtual_size": 10}\n' > "$work/metadata.json"
printf 'Vagrant.configure("2") do |config|\nend\n' > "$work/Vagrantfile"
tar -C "$work" -cf "$out.tmp" metadata.json Vagrantfile box.img
cp "$root"/boot/vmlinuz-* "$outdir/vmlinuz.tmp"
mv "$out.tmp" "$out"
mv "$outdir/vmlinuz.tmp" "$outdir/vmlinuz"
echo "built $out"
