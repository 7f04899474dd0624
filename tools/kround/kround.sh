#!/usr/bin/env bash
# kround: by-hand rounds of coturn's turnutils_uclient against ONE long-running
# icegate server with the kernel offload on or off, in every uclient mode,
# repeatedly, recording what uclient prints and what the server's offload
# counters say each run (issue #17: "independent clients in every mode they
# have, repeatedly").
#
#   sudo tools/kround/kround.sh [-b BIN] [-r RUNS] [-o on|off|both] [-k MODES] [-d OUTDIR] [-L HOGS]
#
# -k takes a comma-separated list of the mode names below (default: all);
# -L runs HOGS busy loops beside the clients for the whole round, to see
# what a loaded machine loses (2 cores here: -L 2 takes the rest).
#
# Topology (namespaces of its own, removed at exit; nothing in the root
# namespace but the namespace names):
#
#   client ns  c0 10.200.1.2/24 fd00:1::2/64       turnutils_uclient
#      | veth
#   server ns  s0 10.200.1.1/24 fd00:1::1/64       icegate listener (3478)
#              s1 10.200.2.1/24 fd00:2::1/64       relayed addresses
#      | veth
#   peer ns    p0 10.200.2.2/24 fd00:2::2/64       turnutils_peer (3480)
#
# Output: OUTDIR/results.tsv, one line per run (mode, offload, run, uclient's
# sent/recv/lost, the server's counter deltas), OUTDIR/<offload>-<mode>-<n>.out
# (uclient's output) and OUTDIR/server-<offload>.log; a summary per mode at
# the end. Exit status 1 when a mode that should relay lost messages or a
# mode behaved unlike what it should (see expect_* below).
set -u -o pipefail

BIN=${ICEGATE_BIN:-bin/icegate}
RUNS=10
OFFLOAD=both
MODES=""
OUT=""
HOGS=0
while getopts "b:r:o:k:d:L:h" opt; do
  case $opt in
    b) BIN=$OPTARG ;;
    r) RUNS=$OPTARG ;;
    o) OFFLOAD=$OPTARG ;;
    k) MODES=$OPTARG ;;
    d) OUT=$OPTARG ;;
    L) HOGS=$OPTARG ;;
    *) sed -n '2,34p' "$0"; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "kround: needs root (namespaces, CAP_BPF)" >&2; exit 2; }
for c in ip ethtool curl turnutils_uclient turnutils_peer; do
  command -v $c >/dev/null || { echo "kround: $c is missing (tools/install-test-deps.sh)" >&2; exit 2; }
done
[ -x "$BIN" ] || { echo "kround: no icegate binary at $BIN (make build, or -b)" >&2; exit 2; }
BIN=$(readlink -f "$BIN")
OUT=${OUT:-$(mktemp -d /tmp/kround.XXXXXX)}
mkdir -p "$OUT"
SECRET=kround-secret-0123456789

P=kr$$
CN=${P}c SN=${P}s PN=${P}p
SRV_PID="" PEER_PID="" HOG_PIDS=""
cleanup() {
  for h in $HOG_PIDS; do kill "$h" 2>/dev/null; done
  [ -n "$SRV_PID" ] && kill "$SRV_PID" 2>/dev/null && wait "$SRV_PID" 2>/dev/null
  [ -n "$PEER_PID" ] && kill "$PEER_PID" 2>/dev/null && wait "$PEER_PID" 2>/dev/null
  for ns in $CN $SN $PN; do ip netns del "$ns" 2>/dev/null; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- topology -------------------------------------------------------------
for ns in $CN $SN $PN; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
ip link add c0 netns "$CN" type veth peer name s0 netns "$SN"
ip link add p0 netns "$PN" type veth peer name s1 netns "$SN"
ip -n "$CN" addr add 10.200.1.2/24 dev c0; ip -n "$CN" addr add fd00:1::2/64 dev c0 nodad
ip -n "$SN" addr add 10.200.1.1/24 dev s0; ip -n "$SN" addr add fd00:1::1/64 dev s0 nodad
ip -n "$SN" addr add 10.200.2.1/24 dev s1; ip -n "$SN" addr add fd00:2::1/64 dev s1 nodad
ip -n "$PN" addr add 10.200.2.2/24 dev p0; ip -n "$PN" addr add fd00:2::2/64 dev p0 nodad
for d in "$CN c0" "$SN s0" "$SN s1" "$PN p0"; do set -- $d; ip -n "$1" link set "$2" up; done
# The server's ends send complete checksums, so that the receivers verify
# what the program wrote (over a veth a CHECKSUM_PARTIAL skb is trusted).
ip netns exec "$SN" ethtool -K s0 tx off >/dev/null
ip netns exec "$SN" ethtool -K s1 tx off >/dev/null
ip -n "$CN" route add 10.200.2.0/24 via 10.200.1.1
ip -n "$CN" route add fd00:2::/64 via fd00:1::1
ip -n "$PN" route add 10.200.1.0/24 via 10.200.2.1
ip -n "$PN" route add fd00:1::/64 via fd00:2::1

ip netns exec "$PN" turnutils_peer -L 10.200.2.2 -L fd00:2::2 -p 3480 >"$OUT/peer.log" 2>&1 &
PEER_PID=$!

# --- server ---------------------------------------------------------------
start_server() { # $1 = on | off
  cat >"$OUT/icegate-$1.hcl" <<HCL
realm = "kround.test"
shutdown_grace = "0s"
log { level = "info" }
listen {
  addresses = ["10.200.1.1", "fd00:1::1"]
  port = 3478
  tls = false
  dtls = false
}
relay {
  min_port = 50000
  max_port = 59999
  ipv4_bind = "10.200.2.1"
  ipv4_public = "10.200.2.1"
  ipv6_bind = "fd00:2::1"
  ipv6_public = "fd00:2::1"
  private_ok = true
  tcp = true
  kernel_offload = "$1"
}
auth {
  secrets = ["$SECRET"]
  user "test" { password = "test" }
}
policy { presets = ["lan"] }
limits { allocations_per_user = 0 }
metrics { listen = "10.200.1.1:9641" }
HCL
  ip netns exec "$SN" "$BIN" serve -config "$OUT/icegate-$1.hcl" >"$OUT/server-$1.log" 2>&1 &
  SRV_PID=$!
  for _ in $(seq 100); do
    metrics >/dev/null 2>&1 && return 0
    kill -0 "$SRV_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "kround: icegate (kernel_offload=$1) did not start:" >&2; cat "$OUT/server-$1.log" >&2; exit 1
}
stop_server() {
  kill -INT "$SRV_PID"; wait "$SRV_PID"; local rc=$?; SRV_PID=""
  [ $rc = 0 ] || echo "kround: icegate exited with $rc" >&2
}
metrics() { ip netns exec "$CN" curl -sf --max-time 5 http://10.200.1.1:9641/metrics; }
# counters: kernel c2p, kernel p2c, all relayed packets, flows, failures,
# refused, authentication refusals
counters() {
  metrics | awk '
    /^icegate_kernel_offload_relayed_packets_total\{direction="client_to_peer"/ {kc=$2}
    /^icegate_kernel_offload_relayed_packets_total\{direction="peer_to_client"/ {kp=$2}
    /^icegate_relayed_packets_total\{/ {rel+=$2}
    /^icegate_kernel_offload_flows / {fl=$2}
    /^icegate_kernel_offload_failures_total/ {fa+=$2}
    /^icegate_kernel_offload_refused_total/ {rf+=$2}
    /^icegate_auth_refusals_total/ {ar+=$2}
    END {printf "%d %d %d %d %d %d %d\n", kc, kp, rel, fl, fa, rf, ar}'
}

# udpdrops NS: the namespace's UDP InErrors (receive buffer overflows and
# bad checksums: a datagram dropped there is counted only here), IPv4 and
# IPv6 together, then its InCsumErrors, then NoPorts (datagrams for a port
# nobody listens on: echoes arriving after uclient closed its sockets).
udpdrops() {
  ip netns exec "$1" cat /proc/net/snmp /proc/net/snmp6 | awk '
    $1=="Udp:" && !h {for (i=2;i<=NF;i++) n[i]=$i; h=1; next}
    $1=="Udp:" && h {for (i=2;i<=NF;i++) {if (n[i]=="InErrors") e+=$i; if (n[i]=="InCsumErrors") c+=$i; if (n[i]=="NoPorts") np+=$i}}
    $1=="Udp6InErrors" {e+=$2} $1=="Udp6InCsumErrors" {c+=$2} $1=="Udp6NoPorts" {np+=$2}
    END {printf "%d/%d/%d\n", e, c, np}'
}
# vethdrops: TX dropped summed over the topology's veth ends (a datagram
# the other end's CPU backlog, net.core.netdev_max_backlog, could not
# take), then the machine's backlog drops (/proc/net/softnet_stat: every
# namespace and device, other processes' traffic too).
vethdrops() {
  local n=0 d
  for d in "$CN c0" "$SN s0" "$SN s1" "$PN p0"; do
    set -- $d
    n=$(( n + $(ip -n "$1" -s -j link show dev "$2" | grep -oP '"tx":\{[^}]*"dropped":\K\d+') ))
  done
  local b=0 _c drop _r
  while read -r _c drop _r; do b=$(( b + 16#$drop )); done </proc/net/softnet_stat
  echo "$n/$b"
}
dropdelta2() { local IFS=/; local a=($1) b=($2); echo "$((b[0]-a[0]))/$((b[1]-a[1]))"; }
dropdelta() { # before after, each "errors/csum/noports"
  local IFS=/; local a=($1) b=($2); echo "$((b[0]-a[0]))/$((b[1]-a[1]))/$((b[2]-a[2]))"
}

# --- modes ----------------------------------------------------------------
# name | uclient arguments | expectation: kernel (some packets through the
# kernel), user (none), fail (no relay: the run must be refused)
S4=10.200.1.1 S6=fd00:1::1 P4=10.200.2.2 P6=fd00:2::2
U="-u test -w test"
ALL_MODES=(
  "default|$U -e $P4 -X -n 50 -m 5 -l 120 -z 5 $S4|kernel"
  "c800|$U -e $P4 -X -c -n 200 -m 4 -l 120 -z 5 $S4|kernel"
  "c|$U -e $P4 -X -c -n 50 -m 5 -l 120 -z 5 $S4|kernel"
  "s|$U -e $P4 -X -c -s -n 50 -m 5 -l 120 -z 5 $S4|user"
  "y|$U -y -X -c -n 50 -m 6 -l 120 -z 5 $S4|user"
  "t|$U -t -e $P4 -X -c -n 50 -m 5 -l 120 -z 5 $S4|user"
  "T|$U -T -n 50 -m 4 -l 120 -z 5 $S4|user"
  "m50|$U -e $P4 -X -n 20 -m 50 -l 120 -z 5 $S4|kernel"
  "n1000l1000|$U -e $P4 -X -c -n 1000 -l 1000 -m 5 -z 0 $S4|kernel"
  "v6-default|$U -e $P6 -x -n 50 -m 5 -l 120 -z 5 $S6|kernel"
  "v6-c|$U -e $P6 -x -c -n 50 -m 5 -l 120 -z 5 $S6|kernel"
  "v6-s|$U -e $P6 -x -c -s -n 50 -m 5 -l 120 -z 5 $S6|user"
  "v6-t|$U -t -e $P6 -x -c -n 50 -m 5 -l 120 -z 5 $S6|user"
  "rest|-u kround -W $SECRET -e $P4 -X -c -n 50 -m 5 -l 120 -z 5 $S4|kernel"
  "badpw|-u test -w wrong -e $P4 -X -c -n 5 -m 1 -l 120 -z 5 $S4|fail"
)

RES=$OUT/results.tsv
[ -s "$RES" ] || printf "mode\toffload\trun\tsent\trecv\tlost\tkernel_c2p\tkernel_p2c\trelayed\tflows_after\tfailures\trefused\twarnings\tclient_ns_udp_err/csum/noport\tserver_ns\tpeer_ns\tveth_tx_drops/backlog_drops\texpect\tverdict\n" >"$RES"
BAD=0

one_run() { # $1 offload, $2 name, $3 args, $4 expect, $5 run number
  local before after out warn0 warn
  local dc0 ds0 dp0
  dc0=$(udpdrops "$CN"); ds0=$(udpdrops "$SN"); dp0=$(udpdrops "$PN"); local vd0; vd0=$(vethdrops)
  before=($(counters)); warn0=$(grep -c '"level":"WARN"\|level=WARN' "$OUT/server-$1.log")
  out=$OUT/$1-$2-$5.out
  # shellcheck disable=SC2086
  timeout 120 ip netns exec "$CN" turnutils_uclient $3 >"$out" 2>&1
  sleep 0.3 # the counters of the last echoes
  after=($(counters)); warn=$(( $(grep -c '"level":"WARN"\|level=WARN' "$OUT/server-$1.log") - warn0 ))
  local dc ds dp vd
  vd=$(dropdelta2 "$vd0" "$(vethdrops)")
  dc=$(dropdelta "$dc0" "$(udpdrops "$CN")"); ds=$(dropdelta "$ds0" "$(udpdrops "$SN")"); dp=$(dropdelta "$dp0" "$(udpdrops "$PN")")
  local sent recv lost
  sent=$(grep -oP 'tot_send_msgs=\K\d+(?=, tot_recv_msgs=\d+\s*$)' "$out" | tail -1)
  recv=$(grep -oP 'start_mclient: tot_send_msgs=\d+, tot_recv_msgs=\K\d+\s*$' "$out" | tail -1 | tr -d ' ')
  lost=$(grep -oP 'Total lost packets \K\d+' "$out" | tail -1)
  local kc=$(( after[0]-before[0] )) kp=$(( after[1]-before[1] )) rel=$(( after[2]-before[2] ))
  local fa=$(( after[4]-before[4] )) rf=$(( after[5]-before[5] ))
  local verdict=ok
  case $4 in
    # uclient says only "Cannot complete Allocation"; the server's
    # icegate_auth_refusals_total says it answered 401.
    fail) if [ -n "$recv" ] && [ "$recv" != 0 ]; then verdict=BAD-relayed; fi
          [ $(( after[6]-before[6] )) -gt 0 ] || verdict=BAD-no-401 ;;
    *) if [ -z "$lost" ]; then verdict=BAD-no-summary
       elif [ "$lost" != 0 ]; then verdict=LOSS; fi
       if [ "$1" = on ] && [ "$4" = kernel ] && [ $((kc+kp)) = 0 ]; then verdict="$verdict,BAD-not-in-kernel"; fi
       if [ "$4" = user ] && [ $((kc+kp)) != 0 ]; then verdict="$verdict,BAD-in-kernel"; fi
       if [ "$1" = off ] && [ $((kc+kp)) != 0 ]; then verdict="$verdict,BAD-kernel-while-off"; fi ;;
  esac
  [ $fa != 0 ] && verdict="$verdict,BAD-kernel-failures"
  [ "$verdict" = ok ] || BAD=1
  printf "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n" "$2" "$1" "$5" "${sent:--}" "${recv:--}" "${lost:--}" \
    $kc $kp $rel "${after[3]}" $fa $rf $warn "$dc" "$ds" "$dp" "$vd" "$4" "$verdict" | tee -a "$RES"
}

for _ in $(seq "$HOGS"); do (while :; do :; done) & HOG_PIDS="$HOG_PIDS $!"; done
case $OFFLOAD in both) SIDES="on off" ;; on|off) SIDES=$OFFLOAD ;; *) echo "kround: -o on|off|both" >&2; exit 2 ;; esac
for side in $SIDES; do
  start_server "$side"
  grep -h 'kernel offload' "$OUT/server-$side.log" | head -2
  for m in "${ALL_MODES[@]}"; do
    IFS='|' read -r name args expect <<<"$m"
    if [ -n "$MODES" ] && ! [[ ",$MODES," == *",$name,"* ]]; then continue; fi
    for r in $(seq "$RUNS"); do one_run "$side" "$name" "$args" "$expect" "$r"; done
  done
  stop_server
  grep -h '"level":"WARN"\|"level":"ERROR"\|level=WARN\|level=ERROR' "$OUT/server-$side.log" | sort | uniq -c | sort -rn | head -20 >"$OUT/server-$side.warnings"
done

echo; echo "summary (runs, messages sent, lost, runs with loss, kernel packets) in $OUT:"
awk -F'\t' 'NR>1 {k=$1"\t"$2; n[k]++; s[k]+=$4; l[k]+=$6; if ($6+0>0) lr[k]++; kp[k]+=$7+$8; if ($19!="ok" && $19!="LOSS") b[k]++}
  END {for (k in n) printf "%s\t%d runs\tsent %d\tlost %d\truns-with-loss %d\tkernel-pkts %d\tbad %d\n", k, n[k], s[k], l[k], lr[k]+0, kp[k], b[k]+0}' "$RES" | sort
exit $BAD
