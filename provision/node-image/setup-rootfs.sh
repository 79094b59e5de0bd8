#!/bin/sh
# Runs inside the node's root file system (a chroot or a Dockerfile RUN):
# a `vagrant` user with Vagrant's public insecure key and passwordless sudo,
# host keys, and the init script the container starts with.
set -eu
id vagrant >/dev/null 2>&1 || useradd --create-home --shell /bin/bash vagrant
usermod -aG docker vagrant 2>/dev/null || true
install -d -m 700 -o vagrant -g vagrant /home/vagrant/.ssh
install -m 600 -o vagrant -g vagrant /tmp/vagrant-insecure.pub /home/vagrant/.ssh/authorized_keys
echo 'vagrant ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/vagrant
chmod 440 /etc/sudoers.d/vagrant
echo 'UseDNS no' > /etc/ssh/sshd_config.d/labctl.conf
mkdir -p /run/sshd
install -m 755 /tmp/node-init /usr/local/sbin/labctl-node-init
rm -f /etc/ssh/ssh_host_*
apt-get clean 2>/dev/null || true
rm -rf /var/lib/apt/lists/* /tmp/vagrant-insecure.pub /tmp/node-init
