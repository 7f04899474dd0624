#!/bin/sh
# Builds icegate's Debian package with dpkg-deb alone (no debhelper, no
# third-party packager): `make deb` runs it.
#
#   deploy/debian/build.sh BINARY VERSION OUTDIR
#
# BINARY is a built icegate (make build), VERSION its `git describe`
# version (v1.2.3, v1.2.3-4-gabc1234, abc1234-dirty), OUTDIR where the
# .deb goes; DEB_MAINTAINER names the Maintainer, GO the go command (its
# module cache holds the license texts copyright.sh collects). Run from the top of the
# checkout. Prints the .deb's path.
set -eu

bin=$1 version=$2 out=$3
# Whoever builds the package signs it as maintainer.
maintainer=${DEB_MAINTAINER:-icegate builder <root@localhost>}

# A Debian version starts with a digit and sorts like the tags:
#   v1.2.3             -> 1.2.3
#   v1.2.3-4-gabc1234  -> 1.2.3+4.gabc1234   (after 1.2.3, before 1.2.4)
#   abc1234[-dirty]    -> 0~git.abc1234[.dirty] (before any tagged release)
case "$version" in
v[0-9]*) debver=$(printf '%s' "${version#v}" | sed -e 's/-/+/' -e 's/-/./g') ;;
[0-9]*) debver=$(printf '%s' "$version" | sed -e 's/-/+/' -e 's/-/./g') ;;
*) debver="0~git.$(printf '%s' "$version" | tr -c 'A-Za-z0-9.+~\n' '.')" ;;
esac

# The architecture of the binary, in Debian's names.
goarch=${GOARCH:-$(go env GOARCH 2>/dev/null || dpkg --print-architecture)}
case "$goarch" in
amd64|arm64|i386|ppc64el|s390x|riscv64) arch=$goarch ;;
386) arch=i386 ;;
arm) arch=armhf ;;
ppc64le) arch=ppc64el ;;
*) echo "build.sh: no Debian architecture for GOARCH=$goarch" >&2; exit 1 ;;
esac

stage=$(mktemp -d)
chmod 0755 "$stage"
trap 'rm -rf "$stage"' EXIT
install -D -m 0755 "$bin" "$stage/usr/bin/icegate"
install -D -m 0644 deploy/systemd/icegate.service "$stage/lib/systemd/system/icegate.service"
# /etc/icegate/icegate.hcl: the embedded defaults, every setting with its
# comment, under a header that says what this copy is.
mkdir -p "$stage/etc/icegate"
{
	cat <<'HDR'
# icegate's configuration, read by icegate.service
# (icegate serve -config /etc/icegate/icegate.hcl).
#
# As shipped it holds the built-in defaults, each setting with what it
# does: change what you need and delete the rest if you like (a setting
# left out keeps its default; `icegate config default` prints them all).
# Check an edit with `icegate config check /etc/icegate/icegate.hcl`, apply
# it with `systemctl reload icegate` (docs: /usr/share/doc/icegate).
HDR
	# The defaults file without its own header (up to the first blank line).
	sed -e '1,/^$/d' config/default.hcl
} >"$stage/etc/icegate/icegate.hcl"
chmod 0640 "$stage/etc/icegate/icegate.hcl"
chmod 0750 "$stage/etc/icegate"
for f in README.md docs/operations.md docs/config.md docs/tls.md docs/coturn.md; do
	install -D -m 0644 "$f" "$stage/usr/share/doc/icegate/$(basename "$f")"
done
# Debian policy §12.5: every license the static binary carries.
deploy/debian/copyright.sh "$bin" >"$stage/usr/share/doc/icegate/copyright"
chmod 0644 "$stage/usr/share/doc/icegate/copyright"

mkdir -p "$stage/DEBIAN"
install -m 0755 deploy/debian/postinst deploy/debian/prerm deploy/debian/postrm "$stage/DEBIAN/"
echo /etc/icegate/icegate.hcl >"$stage/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat >"$stage/DEBIAN/control" <<CTL
Package: icegate
Version: $debver
Architecture: $arch
Maintainer: $maintainer
Section: net
Priority: optional
Installed-Size: $size
Depends: passwd
Recommends: systemd
Description: STUN/TURN relay and WebRTC signaling server
 icegate is one static binary that serves STUN and TURN (RFC 8489, 8656,
 6062, 6156) on UDP, TCP, TLS and DTLS, and a WebRTC signaling server with
 a test page. The package installs the binary, a hardened systemd unit
 (Type=notify, watchdog, reload on SIGHUP) and a configuration in
 /etc/icegate; it creates the icegate system user and starts nothing.
CTL

mkdir -p "$out"
deb="$out/icegate_${debver}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
echo "$deb"
