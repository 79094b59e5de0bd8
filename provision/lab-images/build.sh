#!/bin/sh
# Builds labctl's offline lab images on this machine's Docker, from Debian
# packages only (no container registry needed):
#   labctl/alpine-lite  busybox-static in an empty root: sh/ash, ping, ip,
#                       nslookup, wget, httpd, nc. Stands in for `alpine`.
#                       (Debian busybox 1.35: `wget -T` segfaults; use `timeout 5 wget`.)
#   labctl/nginx-lite   Debian's nginx (debootstrap, then only the binary, its
#                       libraries and config are kept) plus busybox. Stands in
#                       for `nginx`: serves "Welcome to nginx!" on port 80.
# Usage: build.sh [--only alpine|nginx] [MIRROR]
# Env:   LABCTL_ALPINE_LITE, LABCTL_NGINX_LITE override the image names.
# Then:  labctl images load labctl/alpine-lite labctl/nginx-lite
set -eu
alpine_image=${LABCTL_ALPINE_LITE:-labctl/alpine-lite:latest}
nginx_image=${LABCTL_NGINX_LITE:-labctl/nginx-lite:latest}
only=""
if [ "${1:-}" = "--only" ]; then only=${2:?--only alpine|nginx}; shift 2; fi
mirror=${1:-http://deb.debian.org/debian}
busybox=$(command -v busybox || true)
if [ -z "$busybox" ] || ldd "$busybox" >/dev/null 2>&1; then  # ldd fails on a static binary
  echo "a static busybox is needed: apt-get install busybox-static" >&2; exit 3
fi
work=$(mktemp -d /var/tmp/labctl-lab-images.XXXXXX)
trap 'rm -rf "$work"' EXIT INT TERM

# A root with busybox and a link per applet (ash included), /etc basics.
busybox_root() {
  root=$1
  mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/root" "$root/var/run" "$root/proc" "$root/sys" "$root/dev"
  chmod 1777 "$root/tmp"
  cp "$busybox" "$root/bin/busybox"
  for applet in $("$busybox" --list); do
    [ "$applet" = busybox ] || [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
  done
  [ -e "$root/etc/passwd" ] || printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' > "$root/etc/passwd"
  [ -e "$root/etc/group" ] || printf 'root:x:0:\nnogroup:x:65534:\n' > "$root/etc/group"
}

if [ "$only" != nginx ]; then
  busybox_root "$work/alpine"
  tar -C "$work/alpine" -c . | docker import -c 'CMD ["/bin/sh"]' \
    -m "labctl alpine-lite: Debian busybox-static, stands in for alpine" - "$alpine_image"
  echo "built $alpine_image"
fi

if [ "$only" != alpine ]; then
  command -v debootstrap >/dev/null || { echo "debootstrap is not installed (apt-get install debootstrap)" >&2; exit 3; }
  deb="$work/debootstrap"
  debootstrap --variant=minbase --include=nginx bookworm "$deb" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 5 "$work/debootstrap.log" >&2; exit 1; }
  root="$work/nginx"
  mkdir -p "$root/usr/sbin" "$root/etc" "$root/var/lib/nginx" "$root/var/log/nginx" "$root/run" "$root/usr/share/nginx"
  cp "$deb/usr/sbin/nginx" "$root/usr/sbin/nginx"
  # The binary's shared libraries, as the debootstrapped root resolves them.
  for lib in $(chroot "$deb" ldd /usr/sbin/nginx | awk '/=>/ {print $3} /^\t\/lib/ {print $1}'); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$deb$lib" "$root$lib"
  done
  [ -e "$root/lib64" ] || { [ -d "$deb/lib64" ] && cp -a "$deb/lib64" "$root/lib64"; } || true
  cp -a "$deb/usr/share/nginx/html" "$root/usr/share/nginx/html"
  cp "$deb/etc/nginx/mime.types" "$root/etc/mime.types"
  grep -E '^(root|www-data|nobody):' "$deb/etc/passwd" > "$root/etc/passwd"
  grep -E '^(root|www-data|nogroup):' "$deb/etc/group" > "$root/etc/group"
  mkdir -p "$root/etc/nginx"
  cp "$deb/etc/nginx/mime.types" "$root/etc/nginx/mime.types"
  cat > "$root/etc/nginx/nginx.conf" <<'CONF'
user www-data;
worker_processes 1;
error_log /dev/stderr notice;
pid /run/nginx.pid;
events { worker_connections 256; }
http {
    include mime.types;
    default_type application/octet-stream;
    access_log /dev/stdout;
    server {
        listen 80 default_server;
        root /usr/share/nginx/html;
        index index.html index.nginx-debian.html;
    }
}
CONF
  busybox_root "$root"
  tar -C "$root" -c . | docker import -c 'CMD ["/usr/sbin/nginx", "-g", "daemon off;"]' -c 'EXPOSE 80' \
    -m "labctl nginx-lite: Debian's nginx, stands in for nginx" - "$nginx_image"
  echo "built $nginx_image"
fi
