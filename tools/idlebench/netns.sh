#!/bin/sh
# netns.sh up|down — the two network namespaces of idlebench -gen-netns.
#
# On loopback a server's write(2) runs the receiving client's TCP input
# and wakes the client inside the server's own system call (the
# loopback device hands the packet to the softirq of the sending CPU, and
# this kernel has no CONFIG_IRQ_TIME_ACCOUNTING, so that softirq time is
# the sender's CPU time). Over a veth whose ends have threaded NAPI
# (GRO on, /sys/class/net/DEV/threaded = 1) the sender's write stops at
# the device's queue, and the receive runs in that end's NAPI kernel
# thread (napi/DEV-N), whose CPU idlebench -cpu-comm napi/ reports apart:
# the server's own receive (pongs, ACKs) is on ig-srv0's thread, the
# clients' on ig-gen0's. A real network charges a server neither the
# clients' receive nor their wake-ups.
#
# Namespaces icegate-srv (servers, Redis, idlebench itself; 10.200.150.1)
# and icegate-gen (workers; 10.200.1-13.1-4, four source addresses per
# worker as on loopback). Both veth ends live in these namespaces;
# nothing is added to the root namespace.
#
#   sudo tools/idlebench/netns.sh up
#   ip netns exec icegate-srv /tmp/idlebench -gen-netns icegate-gen -cpu-comm napi/ ...
#   sudo tools/idlebench/netns.sh down
set -eu
srv=icegate-srv
gen=icegate-gen
case "${1:-}" in
up)
	ip netns add $srv
	ip netns add $gen
	ip link add ig-srv0 netns $srv type veth peer name ig-gen0 netns $gen
	ip -n $srv link set lo up
	ip -n $gen link set lo up
	ip -n $srv addr add 10.200.150.1/16 dev ig-srv0
	for w in $(seq 1 13); do
		for a in 1 2 3 4; do
			ip -n $gen addr add 10.200.$w.$a/16 dev ig-gen0
		done
	done
	ip -n $srv link set ig-srv0 up
	ip -n $gen link set ig-gen0 up
	# GRO on gives a veth its NAPI; veth_xmit uses it for TCP only when
	# the sending device does no TSO (veth_skb_is_eligible_for_gro):
	# with TSO on, the packet goes through netif_rx and is received in
	# the sender's softirq, as on loopback.
	ip netns exec $srv ethtool -K ig-srv0 gro on tso off >/dev/null
	ip netns exec $gen ethtool -K ig-gen0 gro on tso off >/dev/null
	ip netns exec $srv sh -c 'echo 1 > /sys/class/net/ig-srv0/threaded'
	ip netns exec $gen sh -c 'echo 1 > /sys/class/net/ig-gen0/threaded'
	;;
down)
	ip netns del $srv 2>/dev/null || true
	ip netns del $gen 2>/dev/null || true
	;;
*)
	echo "usage: $0 up|down" >&2
	exit 2
	;;
esac
