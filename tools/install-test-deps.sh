#!/usr/bin/env bash
# Installs what `make test` needs when it is missing: Debian's coturn package,
# whose turnutils_* programs are independent STUN/TURN clients for interop
# tests, and Debian's redis-server, which the cluster bus tests start on a
# socket of their own (internal/redistest), and Node.js 20 or newer for the
# JavaScript tests (tools/webtest). Needs root (or sudo) on Debian/Ubuntu;
# does nothing when present.
set -euo pipefail

missing=()
pkgs=()
for cmd in turnutils_uclient turnutils_stunclient turnutils_peer turnutils_natdiscovery turnserver; do
  command -v "$cmd" >/dev/null 2>&1 || { missing+=("$cmd"); pkgs=(coturn); }
done
# The Redis bus (signaling/redisbus) is tested against a real redis-server;
# each test starts its own and stops it by PID.
command -v redis-server >/dev/null 2>&1 || { missing+=(redis-server); pkgs+=(redis-server); }
# The NAT lab (tools/natlab) runs only as root; it needs iproute2, nftables
# and conntrack there. The segmentation test over a veth pair (turn) needs
# ip and ethtool.
if [ "$(id -u)" -eq 0 ] && [ "$(uname -s)" = Linux ]; then
  for pair in ip:iproute2 nft:nftables conntrack:conntrack ethtool:ethtool; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || { missing+=("${pair%%:*}"); pkgs+=("${pair##*:}"); }
  done
fi
# The unit file (deploy/systemd) is checked with systemd-analyze verify,
# from Debian's systemd package (installing it starts no init here); the
# .deb (make deb) is built with dpkg-deb, from dpkg.
command -v systemd-analyze >/dev/null 2>&1 || { missing+=(systemd-analyze); pkgs+=(systemd); }
command -v dpkg-deb >/dev/null 2>&1 || { missing+=(dpkg-deb); pkgs+=(dpkg); }
# The kernel fast path's eBPF program (internal/kfast) is rebuilt by
# `make generate` with Debian's clang-14 and llvm-14's llvm-strip, against
# libbpf's helper headers; CI checks the committed objects against it.
command -v clang-14 >/dev/null 2>&1 || { missing+=(clang-14); pkgs+=(clang-14); }
command -v llvm-strip-14 >/dev/null 2>&1 || { missing+=(llvm-strip-14); pkgs+=(llvm-14); }
[ -e /usr/include/bpf/bpf_helpers.h ] || { missing+=(bpf_helpers.h); pkgs+=(libbpf-dev); }
# The browser test (tools/e2e) drives Debian's Chromium, never a downloaded
# browser, in a network namespace of its own (unshare, from util-linux).
command -v chromium >/dev/null 2>&1 || { missing+=(chromium); pkgs+=(chromium fonts-dejavu-core); }
command -v unshare >/dev/null 2>&1 || { missing+=(unshare); pkgs+=(util-linux); }
command -v openssl >/dev/null 2>&1 || { missing+=(openssl); pkgs+=(openssl); }
# The JavaScript tests (tools/webtest) run with Node's built-in test runner
# and WebSocket (Node.js 20 or newer); the socket.io tests (tools/sioconformance,
# signaling) run the protocol's own mocha suites and the real npm
# socket.io-client, installed by npm ci from a pinned lock file.
command -v node >/dev/null 2>&1 || { missing+=(node); pkgs+=(nodejs); }
command -v npm >/dev/null 2>&1 || { missing+=(npm); pkgs+=(npm); }
node_ok() {
  local v
  v=$(node --version 2>/dev/null) || return 1
  v=${v#v}
  [ "${v%%.*}" -ge 20 ] 2>/dev/null
}

# npm ci installs exactly what tools/sioconformance/package-lock.json pins,
# again only when the lock file changed since the last install.
npm_deps() {
  local dir
  dir="$(cd "$(dirname "$0")" && pwd)/sioconformance"
  cmp -s "$dir/package-lock.json" "$dir/node_modules/.icegate-installed-lock" 2>/dev/null && return 0
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$dir/package-lock.json" "$dir/node_modules/.icegate-installed-lock"
}
# The ACME tests (tools/acme) run Let's Encrypt's test CA, pebble, pinned,
# built with the go command into $(go env GOPATH)/bin; it is not in go.mod.
pebble_dep() {
  command -v pebble >/dev/null 2>&1 && return 0
  [ -x "$(go env GOPATH)/bin/pebble" ] && return 0
  command -v go >/dev/null 2>&1 || return 0
  echo "installing pebble v2.10.3 for the ACME tests"
  GOFLAGS= go install github.com/letsencrypt/pebble/v2/cmd/pebble@v2.10.3
}
pebble_dep
if [ ${#missing[@]} -eq 0 ]; then
  node_ok || { echo "node $(node --version) is too old: the JavaScript tests need Node.js 20 or newer (Debian 12 ships 18; install 20 from nodesource.com or with nvm)" >&2; exit 1; }
  npm_deps
  exit 0
fi

echo "installing ${pkgs[*]} for the tests (missing: ${missing[*]})"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "need root to apt-get install ${pkgs[*]}; install it by hand or run as root" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
# Debian's package may start a turnserver on 3478; the tests do not need it.
# Likewise Debian's redis-server may start one on 6379; the tests start their own.
for unit in coturn redis-server; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$unit" 2>/dev/null; then
    $sudo systemctl stop "$unit" || true
  fi
done
command -v turnutils_uclient >/dev/null
node_ok || { echo "node $(node --version 2>/dev/null || echo missing) is too old or missing: the JavaScript tests need Node.js 20 or newer (Debian 12 ships 18; install 20 from nodesource.com or with nvm)" >&2; exit 1; }
npm_deps
