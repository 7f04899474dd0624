#!/bin/sh
# Writes the Debian copyright file of a built icegate to stdout: icegate's
# own notice, then every Go module linked into the binary (as `go version
# -m` lists them, so the list is exactly what was built), Go's standard
# library and the embedded socket.io client, each with its license text
# from the module cache. A static Go binary carries all of them, so all of
# them are named (Debian policy §12.5). build.sh runs it.
#
#   deploy/debian/copyright.sh BINARY
#
# GO names the go command (default: go). Fails when a module's license
# file cannot be found rather than writing an incomplete file.
set -eu

bin=$1
go=${GO:-go}
modcache=$("$go" env GOMODCACHE)
goroot=$("$go" env GOROOT)

# license DIR: the first license file of a module directory.
license() {
	for f in "$1"/LICENSE "$1"/LICENSE.txt "$1"/LICENSE.md "$1"/LICENCE "$1"/COPYING "$1"/LICENSE-MIT; do
		if [ -f "$f" ]; then
			printf '%s\n' "$f"
			return 0
		fi
	done
	return 1
}

# indent: the license text as a copyright-file continuation (one space;
# an empty line becomes " .").
indent() { sed -e 's/^[[:space:]]*$/./' -e 's/^/ /'; }

cat <<'HDR'
icegate: a STUN/TURN relay and WebRTC signaling server in one binary.

Copyright: the icegate authors.
License: none is declared in icegate's source tree yet.

/usr/bin/icegate is a static Go binary. It contains the Go runtime and
standard library and the Go modules listed below, each under its own
license, whose text follows its name. The HTTP server also serves the
socket.io JavaScript client, embedded in the binary.
HDR

section() { # name, license file
	printf '\n----------------------------------------------------------------------\n%s\nLicense file: %s\n\n' "$1" "$(basename "$2")"
	indent <"$2"
}

section "Go (runtime and standard library) $("$go" env GOVERSION)" "$goroot/LICENSE"
section "socket.io-client (signaling/sioclient, embedded)" signaling/sioclient/LICENSE

# `go version -m`: "\tdep\tPATH\tVERSION\tSUM", and "\t=>\tPATH\tVERSION\tSUM"
# under a replaced one. The module cache escapes capitals as !lower.
"$go" version -m "$bin" | awk '$1 == "dep" || $1 == "=>" { print $2, $3 }' | while read -r path version; do
	esc=$(printf '%s' "$path" | sed -e 's/[A-Z]/!&/g' | tr 'A-Z' 'a-z')
	dir="$modcache/$esc@$version"
	if ! lic=$(license "$dir"); then
		echo "copyright.sh: no license file for $path $version in $dir" >&2
		exit 1
	fi
	section "$path $version" "$lic"
done
