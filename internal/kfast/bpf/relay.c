// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// icegate's kernel fast path: a TC (SCHED_CLS) program for ingress that
// relays TURN ChannelData (RFC 8656 §12) for UDP clients with a bound
// channel, the same two things the user-space fast path does
// (turn/fastpath.go):
//
//   client -> listener, ChannelData on a channel with an entry
//     => strip the 4-byte header (and any padding, §12.5: over UDP it is
//        optional), send UDP from the relayed address to the peer;
//   peer -> relayed address, from a peer with a bound channel
//     => prepend the ChannelData header (no padding, as the user-space
//        path sends it), send UDP from the listener address to the client.
//
// Everything else returns TC_ACT_OK untouched and reaches the sockets:
// STUN, Send and Data indications, TCP, fragments, IPv4 options and IPv6
// extension headers, VLAN tags, GSO packets, IPv4 datagrams without a UDP
// checksum, unknown channels, expired entries, and anything else it does
// not recognise. The entries come from user space (internal/kfast), which
// learns them from pion's events; each carries a deadline in
// bpf_ktime_get_ns time after which the program refuses it, so the kernel
// cannot relay past what pion allows even if user space is late.
//
// The headers stay where they are and the payload moves by 4 bytes
// instead: bpf_skb_adjust_room would move the headers, and whether a
// CHECKSUM_PARTIAL skb's csum_start (an offset from the buffer's head)
// follows them is a kernel detail we do not rely on; moving the payload
// leaves csum_start and the header offsets valid as they are. Checksums are
// updated incrementally: the removed or added 4 bytes are whole 16-bit
// words at an even offset, and the payload keeps its word alignment.

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define IPPROTO_UDP 17
#define UDP_HLEN 8
#define CD_HLEN 4
// The IP header fields of the relayed datagram follow RFC 8656's rules
// for UDP-to-UDP translation: the DSCP and ECN bits (the TOS byte, the
// IPv6 traffic class) and IPv4's DF bit are copied from the incoming
// datagram (the preferred behaviour), and the TTL or hop limit is the
// default for outgoing packets (the alternate behaviour, what the relay's
// own socket sends: Linux's default of 64 for both families).
#define RELAY_TTL 64
// The payload is moved in CHUNK-byte steps; MAX_DATA bounds what the
// program relays (larger datagrams go to user space).
#define CHUNK 512
#define MAX_CHUNKS 4
#define MAX_DATA (CHUNK * MAX_CHUNKS)

// An address is 16 bytes, IPv4 as ::ffff:a.b.c.d; ports and the channel
// number are in network byte order, as on the wire. A key's listener or
// relayed address may be the unspecified address of its family, for a
// socket bound to it: the program looks the exact address up first, then
// that one. The values always hold the concrete source address to send
// from.

// c2p_key is a client's 5-tuple (client address, listener address) and
// the channel number of its ChannelData.
struct c2p_key {
	__u8 client[16];
	__u8 listener[16];
	__u8 client_port[2];
	__u8 listener_port[2];
	__u8 channel[2];
	__u8 pad[2];
};

// c2p_val is where that channel's data goes: from the relayed address to
// the peer, out of ifindex.
struct c2p_val {
	__u8 relay[16];
	__u8 peer[16];
	__u8 relay_port[2];
	__u8 peer_port[2];
	__u32 ifindex;
	__u64 expires; // bpf_ktime_get_ns deadline
	__u64 alloc;   // allocation id, the key of the counters
};

// p2c_key is a peer's datagram to a relayed address.
struct p2c_key {
	__u8 peer[16];
	__u8 relay[16];
	__u8 peer_port[2];
	__u8 relay_port[2];
	__u8 pad[4];
};

// p2c_val is where the peer's data goes: as ChannelData on channel, from
// the listener address to the client, out of ifindex.
struct p2c_val {
	__u8 listener[16];
	__u8 client[16];
	__u8 listener_port[2];
	__u8 client_port[2];
	__u8 channel[2];
	__u8 pad[2];
	__u32 ifindex;
	__u64 expires;
	__u64 alloc;
};

// counters are one allocation's relayed packets and application-data
// bytes (the ChannelData payload, as the user-space path counts), per CPU.
struct counters {
	__u64 to_peer_packets;
	__u64 to_peer_bytes;
	__u64 to_client_packets;
	__u64 to_client_bytes;
};

// Reasons the program dropped a packet it had started to rewrite (a
// helper failed half-way; the packet cannot be passed on half-written).
enum fail_reason {
	FAIL_REWRITE = 0,
	FAIL_REDIRECT = 1,
	FAIL_MAX = 2,
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct c2p_key);
	__type(value, struct c2p_val);
} c2p SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct p2c_key);
	__type(value, struct p2c_val);
} p2c SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct counters);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FAIL_MAX);
	__type(key, __u32);
	__type(value, __u64);
} failures SEC(".maps");

// scratch is the buffer the payload moves through: too big for the
// program's 512-byte stack.
struct chunk {
	__u8 b[CHUNK];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct chunk);
} scratch SEC(".maps");

// The IPv4 and IPv6 headers as the program reads and writes them.
struct ip4 {
	__u8 vihl;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag;
	__u8 ttl;
	__u8 proto;
	__be16 check;
	__u8 saddr[4];
	__u8 daddr[4];
};

struct ip6 {
	__be32 vtcfl;
	__be16 plen;
	__u8 next;
	__u8 hops;
	__u8 saddr[16];
	__u8 daddr[16];
};

struct udp {
	__u8 sport[2];
	__u8 dport[2];
	__be16 len;
	__be16 check;
};

// One packet as parsed.
struct pkt {
	int v6;
	__u32 l4;        // offset of the UDP header
	__u32 ulen;      // UDP length
	__u8 saddr[16];  // as ::ffff:a.b.c.d for IPv4
	__u8 daddr[16];
	struct ip4 h4;
	struct ip6 h6;
	struct udp uh;
};

static __always_inline void fail(__u32 reason)
{
	__u64 *n = bpf_map_lookup_elem(&failures, &reason);
	if (n)
		*n += 1;
}

static __always_inline void mapped4(__u8 dst[16], const __u8 src[4])
{
	__builtin_memset(dst, 0, 10);
	dst[10] = 0xff;
	dst[11] = 0xff;
	__builtin_memcpy(dst + 12, src, 4);
}

// any_addr writes the unspecified address of the family as keys hold it:
// :: for IPv6, ::ffff:0.0.0.0 for IPv4.
static __always_inline void any_addr(__u8 a[16], int v6)
{
	__builtin_memset(a, 0, 16);
	if (!v6) {
		a[10] = 0xff;
		a[11] = 0xff;
	}
}

static __always_inline __u16 fold(__s64 sum)
{
	__u32 s = (__u32)sum;
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

// parse reads the IP and UDP headers of an Ethernet frame; it returns 0
// for a UDP datagram the program may rewrite, -1 for anything else.
static __always_inline int parse(struct __sk_buff *skb, struct pkt *p)
{
	// A GSO skb holds many datagrams; a VLAN tag moves the headers.
	if (skb->gso_size || skb->vlan_present)
		return -1;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		p->v6 = 0;
		if (bpf_skb_load_bytes(skb, ETH_HLEN, &p->h4, sizeof(p->h4)))
			return -1;
		// No options (IHL 5), UDP, not a fragment (MF clear, offset 0).
		if (p->h4.vihl != 0x45 || p->h4.proto != IPPROTO_UDP ||
		    (p->h4.frag & bpf_htons(0x3fff)))
			return -1;
		__u32 tot = bpf_ntohs(p->h4.tot_len);
		if (tot < sizeof(struct ip4) + UDP_HLEN || ETH_HLEN + tot > skb->len)
			return -1;
		p->l4 = ETH_HLEN + sizeof(struct ip4);
		p->ulen = tot - sizeof(struct ip4);
		mapped4(p->saddr, p->h4.saddr);
		mapped4(p->daddr, p->h4.daddr);
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		p->v6 = 1;
		if (bpf_skb_load_bytes(skb, ETH_HLEN, &p->h6, sizeof(p->h6)))
			return -1;
		// UDP straight after the fixed header: no extension headers.
		if ((bpf_ntohl(p->h6.vtcfl) >> 28) != 6 || p->h6.next != IPPROTO_UDP)
			return -1;
		__u32 plen = bpf_ntohs(p->h6.plen);
		if (plen < UDP_HLEN || ETH_HLEN + sizeof(struct ip6) + plen > skb->len)
			return -1;
		p->l4 = ETH_HLEN + sizeof(struct ip6);
		p->ulen = plen;
		__builtin_memcpy(p->saddr, p->h6.saddr, 16);
		__builtin_memcpy(p->daddr, p->h6.daddr, 16);
	} else {
		return -1;
	}
	if (bpf_skb_load_bytes(skb, p->l4, &p->uh, sizeof(p->uh)))
		return -1;
	if (bpf_ntohs(p->uh.len) != p->ulen)
		return -1;
	// An IPv4 datagram without a checksum (RFC 768) goes to user space:
	// an incremental update needs one. IPv6 requires it (RFC 8200 §8.1).
	if (p->uh.check == 0)
		return -1;
	return 0;
}

// move_payload moves n bytes at from to to (|to - from| = 4) through a
// stack buffer, CHUNK bytes at a time, in the order that does not
// overwrite what is still to be read.
static __always_inline int move_payload(struct __sk_buff *skb, __u32 from, __u32 to, __u32 n)
{
	__u32 zero = 0;
	struct chunk *buf = bpf_map_lookup_elem(&scratch, &zero);
	if (!buf || n > MAX_DATA)
		return -1;
#pragma unroll
	for (int i = 0; i < MAX_CHUNKS; i++) {
		__u32 done = i * CHUNK;
		if (done >= n)
			break;
		__u32 m = n - done;
		if (m > CHUNK)
			m = CHUNK;
		// m is 1..CHUNK here; say so in a way the verifier can follow
		// (the barrier keeps clang from folding the mask away).
		asm volatile("" : "+r"(m));
		m = ((m - 1) & (CHUNK - 1)) + 1;
		// Forwards when moving down, from the end when moving up.
		__u32 off = to < from ? done : n - done - m;
		if (bpf_skb_load_bytes(skb, from + off, buf->b, m))
			return -1;
		if (bpf_skb_store_bytes(skb, to + off, buf->b, m, 0))
			return -1;
	}
	return 0;
}

// rewrite_l3 writes the new IP header: addresses, length, hop limit and,
// for IPv4, a header checksum computed afresh.
static __always_inline int rewrite_l3(struct __sk_buff *skb, struct pkt *p, const __u8 src[16],
				      const __u8 dst[16], __u32 ulen)
{
	if (!p->v6) {
		struct ip4 h = p->h4;
		__builtin_memcpy(h.saddr, src + 12, 4);
		__builtin_memcpy(h.daddr, dst + 12, 4);
		h.tot_len = bpf_htons(sizeof(struct ip4) + ulen);
		h.ttl = RELAY_TTL;
		h.check = 0;
		__s64 sum = bpf_csum_diff(0, 0, (__be32 *)&h, sizeof(h), 0);
		if (sum < 0)
			return -1;
		h.check = fold(sum);
		return bpf_skb_store_bytes(skb, ETH_HLEN, &h, sizeof(h), 0);
	}
	struct ip6 h = p->h6;
	__builtin_memcpy(h.saddr, src, 16);
	__builtin_memcpy(h.daddr, dst, 16);
	h.plen = bpf_htons(ulen);
	h.hops = RELAY_TTL;
	return bpf_skb_store_bytes(skb, ETH_HLEN, &h, sizeof(h), 0);
}

// The parts of the checksum the pseudo-header (RFC 768, RFC 8200 §8.1)
// contributes and that change: both addresses and the UDP length.
struct pseudo4 {
	__u8 saddr[4];
	__u8 daddr[4];
	__be32 len;
};

struct pseudo6 {
	__u8 saddr[16];
	__u8 daddr[16];
	__be32 len;
};

// fix_pseudo updates the UDP checksum for the new pseudo-header. With
// BPF_F_PSEUDO_HDR the update applies to a CHECKSUM_PARTIAL skb too, whose
// checksum field holds only the pseudo-header sum that the device (or the
// kernel, for a device without checksum offload) completes.
static __always_inline int fix_pseudo(struct __sk_buff *skb, struct pkt *p, const __u8 src[16],
				      const __u8 dst[16], __u32 ulen)
{
	__s64 diff;
	if (!p->v6) {
		struct pseudo4 o = {}, n = {};
		__builtin_memcpy(o.saddr, p->saddr + 12, 4);
		__builtin_memcpy(o.daddr, p->daddr + 12, 4);
		o.len = bpf_htonl(p->ulen);
		__builtin_memcpy(n.saddr, src + 12, 4);
		__builtin_memcpy(n.daddr, dst + 12, 4);
		n.len = bpf_htonl(ulen);
		diff = bpf_csum_diff((__be32 *)&o, sizeof(o), (__be32 *)&n, sizeof(n), 0);
	} else {
		struct pseudo6 o = {}, n = {};
		__builtin_memcpy(o.saddr, p->saddr, 16);
		__builtin_memcpy(o.daddr, p->daddr, 16);
		o.len = bpf_htonl(p->ulen);
		__builtin_memcpy(n.saddr, src, 16);
		__builtin_memcpy(n.daddr, dst, 16);
		n.len = bpf_htonl(ulen);
		diff = bpf_csum_diff((__be32 *)&o, sizeof(o), (__be32 *)&n, sizeof(n), 0);
	}
	if (diff < 0)
		return -1;
	return bpf_l4_csum_replace(skb, p->l4 + 6, 0, (__u32)diff, BPF_F_PSEUDO_HDR);
}

// The UDP header words and the 4 bytes that come or go, as the checksum
// sees them (the checksum field itself is not part of the sum).
struct l4words {
	__u8 sport[2];
	__u8 dport[2];
	__be16 len;
	__be16 zero;
	__u8 cd[4];  // the ChannelData header
	__u8 pad[4]; // the padding removed, at its word position
};

// fix_l4 updates the checksum for the words of the datagram itself. A
// CHECKSUM_PARTIAL skb ignores it (the sum over the datagram is computed
// later); BPF_F_MARK_MANGLED_0 writes a result of 0 as 0xffff (RFC 768).
static __always_inline int fix_l4(struct __sk_buff *skb, struct pkt *p, struct l4words *o,
				  struct l4words *n)
{
	__s64 diff = bpf_csum_diff((__be32 *)o, sizeof(*o), (__be32 *)n, sizeof(*n), 0);
	if (diff < 0)
		return -1;
	return bpf_l4_csum_replace(skb, p->l4 + 6, 0, (__u32)diff, BPF_F_MARK_MANGLED_0);
}

// no_complete grows the skb past both its current length and final (the
// length it will have), by at least a byte. Growing turns a
// CHECKSUM_COMPLETE skb into CHECKSUM_NONE (__skb_grow_rcsum), so that
// skb->csum never has to be kept in step with the edits; a final
// bpf_skb_change_tail trims to the length wanted (and drops any
// link-layer trailer).
static __always_inline int no_complete(struct __sk_buff *skb, __u32 final)
{
	__u32 len = skb->len;
	if (final > len)
		len = final;
	return bpf_skb_change_tail(skb, len + 1, 0);
}

static __always_inline struct counters *counters_of(__u64 alloc)
{
	return bpf_map_lookup_elem(&stats, &alloc);
}

// client_to_peer relays a client's ChannelData as plain UDP to the peer.
static __always_inline int client_to_peer(struct __sk_buff *skb, struct pkt *p)
{
	if (p->ulen < UDP_HLEN + CD_HLEN)
		return TC_ACT_OK;
	__u8 cd[4];
	if (bpf_skb_load_bytes(skb, p->l4 + UDP_HLEN, cd, sizeof(cd)))
		return TC_ACT_OK;
	if ((cd[0] & 0xc0) != 0x40) // RFC 8656 §12.4: ChannelData starts 01
		return TC_ACT_OK;
	struct c2p_key k = {};
	__builtin_memcpy(k.client, p->saddr, 16);
	__builtin_memcpy(k.listener, p->daddr, 16);
	__builtin_memcpy(k.client_port, p->uh.sport, 2);
	__builtin_memcpy(k.listener_port, p->uh.dport, 2);
	k.channel[0] = cd[0];
	k.channel[1] = cd[1];
	struct c2p_val *v = bpf_map_lookup_elem(&c2p, &k);
	if (!v) {
		// A listener bound to the unspecified address takes the
		// datagram on any local address.
		any_addr(k.listener, p->v6);
		v = bpf_map_lookup_elem(&c2p, &k);
		if (!v)
			return TC_ACT_OK;
	}
	if (bpf_ktime_get_ns() >= v->expires)
		return TC_ACT_OK; // pion decides; the entry is stale
	__u32 n = ((__u32)cd[2] << 8) | cd[3];
	__u32 avail = p->ulen - UDP_HLEN - CD_HLEN;
	// The data must fit; at most 3 bytes of padding follow (§12.5). More
	// is unusual and left to user space, which ignores it too.
	if (n > avail || avail - n > 3 || n > MAX_DATA)
		return TC_ACT_OK;
	__u32 padlen = avail - n;
	__u32 ulen = UDP_HLEN + n;

	struct l4words o = {}, nw = {};
	__builtin_memcpy(o.sport, p->uh.sport, 2);
	__builtin_memcpy(o.dport, p->uh.dport, 2);
	o.len = p->uh.len;
	__builtin_memcpy(o.cd, cd, 4);
	if (padlen) {
		// The padding's bytes as the old sum saw them: after an odd
		// data length the first pad byte is the low half of a word.
		__u8 pb[3] = {};
		__u32 at = p->l4 + UDP_HLEN + CD_HLEN + n;
		int r;
		if (padlen == 1)
			r = bpf_skb_load_bytes(skb, at, pb, 1);
		else if (padlen == 2)
			r = bpf_skb_load_bytes(skb, at, pb, 2);
		else
			r = bpf_skb_load_bytes(skb, at, pb, 3);
		if (r)
			return TC_ACT_OK;
		if (n & 1) {
			o.pad[1] = pb[0];
			o.pad[2] = pb[1];
			o.pad[3] = pb[2];
		} else {
			o.pad[0] = pb[0];
			o.pad[1] = pb[1];
			o.pad[2] = pb[2];
		}
	}
	__builtin_memcpy(nw.sport, v->relay_port, 2);
	__builtin_memcpy(nw.dport, v->peer_port, 2);
	nw.len = bpf_htons(ulen);

	// Copy what the rewrite needs: the entry may change under us.
	__u8 relay[16], peer[16];
	__builtin_memcpy(relay, v->relay, 16);
	__builtin_memcpy(peer, v->peer, 16);
	__u32 ifindex = v->ifindex;
	struct counters *c = counters_of(v->alloc);
	// A datagram the egress device cannot take whole goes to user space,
	// whose socket fragments it or reports the error, as without us.
	__u32 mtu = 0;
	if (bpf_check_mtu(skb, ifindex, &mtu, -(__s32)(CD_HLEN + padlen), 0))
		return TC_ACT_OK;

	// From here on the packet is being changed: a failure drops it.
	if (no_complete(skb, p->l4 + ulen))
		goto fail;
	if (move_payload(skb, p->l4 + UDP_HLEN + CD_HLEN, p->l4 + UDP_HLEN, n))
		goto fail;
	if (bpf_skb_change_tail(skb, p->l4 + ulen, 0))
		goto fail;
	struct udp uh = p->uh;
	__builtin_memcpy(uh.sport, nw.sport, 2);
	__builtin_memcpy(uh.dport, nw.dport, 2);
	uh.len = nw.len;
	if (bpf_skb_store_bytes(skb, p->l4, &uh, 6, 0)) // not the checksum
		goto fail;
	if (fix_l4(skb, p, &o, &nw))
		goto fail;
	if (fix_pseudo(skb, p, relay, peer, ulen))
		goto fail;
	if (rewrite_l3(skb, p, relay, peer, ulen))
		goto fail;
	if (c) {
		c->to_peer_packets += 1;
		c->to_peer_bytes += n;
	}
	// The source is a local address: TC_ACT_OK would meet the martian
	// check. The neighbour subsystem fills in the Ethernet header.
	long r = bpf_redirect_neigh(ifindex, 0, 0, 0);
	if (r != TC_ACT_REDIRECT)
		fail(FAIL_REDIRECT);
	return r;
fail:
	fail(FAIL_REWRITE);
	return TC_ACT_SHOT;
}

// peer_to_client relays a peer's datagram to the client as ChannelData.
static __always_inline int peer_to_client(struct __sk_buff *skb, struct pkt *p)
{
	struct p2c_key k = {};
	__builtin_memcpy(k.peer, p->saddr, 16);
	__builtin_memcpy(k.relay, p->daddr, 16);
	__builtin_memcpy(k.peer_port, p->uh.sport, 2);
	__builtin_memcpy(k.relay_port, p->uh.dport, 2);
	struct p2c_val *v = bpf_map_lookup_elem(&p2c, &k);
	if (!v) {
		// A relay socket bound to the unspecified address.
		any_addr(k.relay, p->v6);
		v = bpf_map_lookup_elem(&p2c, &k);
		if (!v)
			return TC_ACT_OK;
	}
	if (bpf_ktime_get_ns() >= v->expires)
		return TC_ACT_OK;
	__u32 n = p->ulen - UDP_HLEN;
	if (n > MAX_DATA || n > 0xffff - CD_HLEN - UDP_HLEN)
		return TC_ACT_OK;
	__u32 ulen = p->ulen + CD_HLEN;

	struct l4words o = {}, nw = {};
	__builtin_memcpy(o.sport, p->uh.sport, 2);
	__builtin_memcpy(o.dport, p->uh.dport, 2);
	o.len = p->uh.len;
	__builtin_memcpy(nw.sport, v->listener_port, 2);
	__builtin_memcpy(nw.dport, v->client_port, 2);
	nw.len = bpf_htons(ulen);
	nw.cd[0] = v->channel[0];
	nw.cd[1] = v->channel[1];
	nw.cd[2] = n >> 8;
	nw.cd[3] = n & 0xff;

	__u8 listener[16], client[16];
	__builtin_memcpy(listener, v->listener, 16);
	__builtin_memcpy(client, v->client, 16);
	__u32 ifindex = v->ifindex;
	struct counters *c = counters_of(v->alloc);
	// With the 4 bytes added it may not fit the egress device: user space
	// relays it then (and the kernel fragments it, for IPv4).
	__u32 mtu = 0;
	if (bpf_check_mtu(skb, ifindex, &mtu, CD_HLEN, 0))
		return TC_ACT_OK;

	if (no_complete(skb, p->l4 + ulen))
		goto fail;
	if (move_payload(skb, p->l4 + UDP_HLEN, p->l4 + UDP_HLEN + CD_HLEN, n))
		goto fail;
	if (bpf_skb_change_tail(skb, p->l4 + ulen, 0))
		goto fail;
	struct udp uh = p->uh;
	__builtin_memcpy(uh.sport, nw.sport, 2);
	__builtin_memcpy(uh.dport, nw.dport, 2);
	uh.len = nw.len;
	if (bpf_skb_store_bytes(skb, p->l4, &uh, 6, 0))
		goto fail;
	if (bpf_skb_store_bytes(skb, p->l4 + UDP_HLEN, nw.cd, 4, 0))
		goto fail;
	if (fix_l4(skb, p, &o, &nw))
		goto fail;
	if (fix_pseudo(skb, p, listener, client, ulen))
		goto fail;
	if (rewrite_l3(skb, p, listener, client, ulen))
		goto fail;
	if (c) {
		c->to_client_packets += 1;
		c->to_client_bytes += n;
	}
	long r = bpf_redirect_neigh(ifindex, 0, 0, 0);
	if (r != TC_ACT_REDIRECT)
		fail(FAIL_REDIRECT);
	return r;
fail:
	fail(FAIL_REWRITE);
	return TC_ACT_SHOT;
}

SEC("tc")
int icegate_relay(struct __sk_buff *skb)
{
	struct pkt p = {};
	if (parse(skb, &p))
		return TC_ACT_OK;
	int r = client_to_peer(skb, &p);
	if (r != TC_ACT_OK)
		return r;
	return peer_to_client(skb, &p);
}
