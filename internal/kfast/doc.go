// Package kfast is icegate's kernel fast path: an eBPF TC program
// (bpf/relay.c) that relays TURN ChannelData for UDP clients with a bound
// channel without waking the process, and the Go API that loads it,
// attaches it and fills its tables.
//
// It does what the user-space fast path (turn/fastpath.go) does for the
// same packets: a client's ChannelData (RFC 8656 §12.4) to the listener
// becomes a UDP datagram from the relayed address to the peer, and a
// peer's datagram to the relayed address becomes ChannelData from the
// listener address to the client (§12.5: no padding over UDP), for IPv4
// and IPv6. Everything else reaches the sockets untouched. The caller (the
// allocation table, from pion's events) decides which flows the kernel
// serves and until when; each entry carries a deadline after which the
// program refuses it, so the kernel never relays past what pion allows even
// when user space is late to remove it.
//
// What it needs: Linux 5.12 or newer for the helpers the program calls
// (bpf_redirect_neigh, bpf_check_mtu; it reads no kernel structures, so
// no kernel BTF), though it was tested only on 6.18; TCX links on Linux
// ≥ 6.6, and on older kernels (Debian 12's 6.1) a classic clsact qdisc
// and bpf filter, which Attach falls back to (Config.Clsact forces it);
// CAP_BPF and CAP_NET_ADMIN (CAP_PERFMON is not needed); Ethernet
// interfaces (no tun or WireGuard devices), with VLAN-tagged traffic left
// to user space. Only one Program may attach classically to an interface
// (its filter has a fixed priority and handle, so that a filter a dead
// process left behind is replaced). Open and Attach report why it cannot run with
// errors that match ErrNotSupported or ErrPermission, and a verifier
// rejection as a *LoadError carrying the verifier's log; nothing panics,
// and the user-space path stays complete whatever happens here. Nothing is
// pinned: Close detaches the program, and the maps go with the last file
// descriptor.
//
// A flow whose listener or relayed address is unspecified (a socket bound
// to 0.0.0.0 or [::]) matches its port on any destination address that
// arrives on the attached interfaces; on a host that also routes traffic
// for others, give concrete addresses. The egress interface of each
// direction is looked up once, when the flow is bound (the routing
// table's answer then, like `ip route get`): a route that changes later
// takes effect for a flow when it is bound again.
//
// Offloaded datagrams leave through bpf_redirect_neigh on the egress
// device: they bypass the host's netfilter rules (as the ingress hook runs
// before them) and the relay socket's own counters; the program keeps
// per-allocation packet and byte counters instead (Counters).
package kfast
