package turn

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/netip"

	"icegate/internal/stunwire"
	"icegate/internal/udploop"
)

// The fast path relays UDP data without pion: ChannelData (RFC 8656 §12)
// and Send/Data indications (§11) for peers with a permission.
//
// pion stays in charge of every control message, of authentication and of
// allocation state; the allocation table (allocs.go) learns from pion's
// events which client owns which relay socket, which channels are bound and
// which permissions exist, and keeps a lock-free view of it on each relay
// socket (link, chans, perms) and listener group (clients). With that, the
// listener socket hands a client's ChannelData or Send indication
// straight to the relay socket, and the relay socket turns a peer's datagram
// into ChannelData (or a Data indication) for the client, without allocating
// or waking another goroutine. Everything else (TCP, TLS and DTLS clients,
// client packets for channels we have not heard of, anything unusual) takes
// pion's path as before, so the fast path can only ever be a shortcut for
// something pion would have done the same way: pion's own loop also relays on
// a bound channel without looking at permissions (a channel binding installs
// and refreshes its permission), and discards a peer's datagram with neither,
// which the relay socket now does itself.

// clientLink is where a relay sends ChannelData: the client's address and
// the listener socket the client talks to.
type clientLink struct {
	addr     netip.AddrPort
	listener *gatePacketConn
}

// chanTable is an immutable snapshot of one allocation's channel bindings,
// replaced as a whole when a channel is bound or expires.
type chanTable struct {
	byPeer map[netip.AddrPort]uint16
	byNum  map[uint16]netip.AddrPort
}

func addrPortOf(a net.Addr) netip.AddrPort {
	switch v := a.(type) {
	case *net.UDPAddr:
		return v.AddrPort()
	case *net.TCPAddr:
		return v.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// canonical unmaps an address so that lookups do not depend on how the
// kernel or pion spelled an IPv4 address.
func canonical(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// remember and forget maintain the listener group's client -> relay index;
// the allocation table calls them.
func (l *gatePacketConn) remember(client netip.AddrPort, rc *relayConn) {
	l.group.clients.Store(client, rc)
}

func (l *gatePacketConn) forget(client netip.AddrPort, rc *relayConn) {
	l.group.clients.CompareAndDelete(client, rc)
}

// relayFor returns the relay of the client at from, or nil.
func (l *gatePacketConn) relayFor(from netip.AddrPort) *relayConn {
	rc, _ := l.group.clients.Load(canonical(from))
	r, _ := rc.(*relayConn)
	return r
}

// relayChannelData sends a client's ChannelData message b straight out of
// its relay socket, reporting false when pion must handle it instead.
func (l *gatePacketConn) relayChannelData(out udploop.Sender, b []byte, from netip.AddrPort) bool {
	rc := l.relayFor(from)
	if rc == nil {
		return false
	}
	t := rc.chans.Load()
	if t == nil {
		return false
	}
	number, data, ok := stunwire.ChannelData(b)
	if !ok {
		return false // pion counts and drops the malformed frame
	}
	peer, ok := t.byNum[number]
	if !ok {
		return false
	}
	rc.sendToPeer(out, data, peer)
	return true
}

// sendToPeer is the fast twin of relayConn.WriteTo.
func (c *relayConn) sendToPeer(out udploop.Sender, p []byte, peer netip.AddrPort) {
	if c.isBlocked(peer.Addr()) {
		c.alloc.metrics.Dropped.WithLabelValues("peer_revoked").Inc()
		return
	}
	if c.alloc.selfPort(peer) {
		c.alloc.selfDrop(peer)
		return
	}
	if c.shared != nil {
		switch c.shared.claim(c, peer) {
		case claimTaken:
			c.alloc.dropTaken.Inc()
			return
		case claimsFull:
			c.alloc.dropClaimsFull.Inc()
			return
		}
	}
	if !c.out.take(len(p)) {
		c.alloc.metrics.BandwidthDrops.Inc()
		return
	}
	c.traffic.toPeer(len(p))
	out.Send(c.sock, p, peer)
}

// headroom is the space the sockets keep in front of a datagram so that
// either header can be written in place: ChannelData (4 bytes) or a Data
// indication (48 bytes); tailroom is the room after it for the Data
// indication's padding.
const (
	headroom = stunwire.DataIndicationHeadroom
	tailroom = 4
)

// socketConfig is how a relay socket is set up: a peer's datagrams go
// through loopPacket first, and what it leaves (the data of an allocation
// the fast path does not serve: a TCP, TLS or DTLS client's) waits for
// pion's goroutine in a queue. While that queue is full the loop stops
// reading the socket (udploop.SocketConfig.Pause) and the peers' datagrams
// wait in the socket's kernel buffer (listen.socket_buffer, 4 MiB by
// default), exactly as they would for a UDP client whose path is slow, so
// nothing is dropped in user space; the queue only has to cover the time it
// takes to stop and start reading, and 64 datagrams keep the memory per
// allocation small. This was chosen over giving stream clients a fast path
// of their own (framing ChannelData on the loop and writing to their
// connections through a bounded writer per connection): that writer would
// need its own flow control for the same reason, a TLS connection cannot be
// written from the loop without blocking it, and pion's goroutine already is
// that writer; stopping the read costs two epoll_ctl calls per half queue
// (32 datagrams) only while pion is behind.
func (c *relayConn) socketConfig() udploop.SocketConfig {
	return udploop.SocketConfig{
		Handler: c.loopPacket, Headroom: headroom, Tailroom: tailroom, Buffer: c.alloc.sockBuf,
		FreeBind: c.alloc.freeBind, Queue: 64, Pause: true,
	}
}

// ReadFrom is pion's read of the relay socket. For a UDP client, datagrams
// from a peer with a bound channel or a permission go to the client
// (ChannelData or a Data indication) before pion sees them; for a stream
// client they are returned to pion, which frames and writes them; datagrams
// from any other peer are discarded (see loopPacket).
func (c *relayConn) ReadFrom(p []byte) (int, net.Addr, error) {
	if c.shared != nil {
		return c.recvShared(p)
	}
	n, from, err := c.sock.Recv(p) // the fast path has run (loopPacket)
	if err != nil {
		return 0, nil, err
	}
	return n, net.UDPAddrFromAddrPort(canonical(from)), nil
}

// loopPacket is the relay socket's handler (udploop.Handler). It relays a
// peer's datagram at b[headroom:headroom+n] to the client: as ChannelData
// when a channel is bound (RFC 8656 §12.5), as a Data indication when only a
// permission exists (§11.4). It also applies the bandwidth cap. It reports
// true when the datagram was consumed.
func (c *relayConn) loopPacket(out udploop.Sender, b []byte, n int, from netip.AddrPort) bool {
	if c.isBlocked(from.Addr()) {
		c.alloc.metrics.Dropped.WithLabelValues("peer_revoked").Inc()
		return true
	}
	if !c.in.take(n) {
		c.alloc.metrics.BandwidthDrops.Inc()
		return true
	}
	from = canonical(from)
	link := c.link.Load()
	if link == nil {
		// A TCP, TLS or DTLS client's allocation (or one not yet linked):
		// pion frames and writes the data to the client's connection, and
		// the loop stops reading this socket while pion is behind (see
		// socketConfig), so what it queues must be what pion relays. A
		// datagram from a peer with neither a channel nor a permission is
		// discarded here, as pion would (RFC 8656 §9 and §11.3: no permission, no
		// relaying), so that a flood from strangers cannot fill the queue
		// and hold up the allocation's peers. pion reports a permission and
		// a channel (which installs one) before it answers the request that
		// made them, so the client's peer cannot be ahead of this mirror.
		if c.permitted(from) {
			c.traffic.toClient(n) // pion frames and writes it
			return false
		}
		c.alloc.dropNoPerm.Inc()
		return true
	}
	if t := c.chans.Load(); t != nil {
		if num, ok := t.byPeer[from]; ok {
			h := b[headroom-4:]
			stunwire.PutChannelDataHeader(h, num, n)
			c.traffic.toClient(n)
			out.Send(link.listener.sock, h[:4+n], link.addr)
			return true
		}
	}
	if perms := c.perms.Load(); perms != nil {
		if _, ok := (*perms)[from.Addr()]; ok {
			msg := dataIndication(b, n, from)
			c.traffic.toClient(n)
			out.Send(link.listener.sock, msg, link.addr)
			return true
		}
	}
	c.alloc.dropNoPerm.Inc()
	return true // pion would discard it too
}

// permitted reports whether pion relays a datagram from peer to the client:
// a channel is bound to it or its address has a permission.
func (c *relayConn) permitted(peer netip.AddrPort) bool {
	if t := c.chans.Load(); t != nil {
		if _, ok := t.byPeer[peer]; ok {
			return true
		}
	}
	if perms := c.perms.Load(); perms != nil {
		if _, ok := (*perms)[peer.Addr()]; ok {
			return true
		}
	}
	return false
}

// dataIndication writes a Data indication around the datagram at
// b[headroom:headroom+n] and returns it. b must have room for the padding.
func dataIndication(b []byte, n int, from netip.AddrPort) []byte {
	var txid [12]byte // RFC 8489 §6: random, though nothing answers an indication
	binary.BigEndian.PutUint64(txid[:8], rand.Uint64())
	binary.BigEndian.PutUint32(txid[8:], rand.Uint32())
	return stunwire.DataIndication(b, n, from, txid)
}

// relaySend handles a client's Send indication (RFC 8656 §11.1) whose peer
// has a permission: the DATA goes out of the relay socket at once. Anything
// unusual (other attributes than XOR-PEER-ADDRESS, DATA, FINGERPRINT and
// SOFTWARE, a malformed attribute, no permission) is left to pion.
func (l *gatePacketConn) relaySend(out udploop.Sender, b []byte, from netip.AddrPort) bool {
	rc := l.relayFor(from)
	if rc == nil {
		return false
	}
	perms := rc.perms.Load()
	if perms == nil {
		return false
	}
	peer, data, ok := stunwire.SendIndication(b)
	if !ok {
		return false
	}
	if _, ok := (*perms)[peer.Addr()]; !ok {
		return false
	}
	rc.sendToPeer(out, data, peer)
	return true
}

// countUnbound counts, as no_channel, ChannelData that pion is about to
// discard.
//
// The fast path cannot count a ChannelData message it does not relay: the
// ChannelBind that makes its channel may still wait in the socket's queue
// for pion, so the message goes to pion. By the time pion reads it, pion has
// handled every earlier datagram of this socket (its read loop handles one
// datagram before reading the next), and a client's 5-tuple always lands on
// the same SO_REUSEPORT socket, so the allocation table's mirror of the
// client's channels is exactly pion's. What the mirror lacks, pion drops
// (RFC 8656 §12.4: ChannelData on a channel not bound to a peer is
// discarded), and is counted here; pion still sees it, so counting can never
// stop a datagram that pion would relay. A channel whose timer has just
// fired may linger in the mirror for a moment: such a drop goes uncounted,
// never the other way round.
func (l *gatePacketConn) countUnbound(b []byte, from netip.AddrPort) {
	if !l.channelBound(b, from) {
		l.g.droppedNoChannel.Inc()
	}
}

// channelBound reports whether pion relays the ChannelData message b from
// the client at from: the client has an allocation and b names one of its
// bound channels.
func (l *gatePacketConn) channelBound(b []byte, from netip.AddrPort) bool {
	rc := l.relayFor(from)
	if rc == nil {
		return false
	}
	t := rc.chans.Load()
	if t == nil {
		return false
	}
	number, _, ok := stunwire.ChannelData(b)
	if !ok {
		return false
	}
	_, ok = t.byNum[number]
	return ok
}
