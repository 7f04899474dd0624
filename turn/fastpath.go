package turn

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// The fast path relays ChannelData (RFC 8656 §12) over UDP without pion.
//
// pion stays in charge of every control message, of authentication and of
// allocation state; it tells us through its events which client owns which
// relay socket and which channels are bound. With that, the listener socket
// hands a client's ChannelData straight to the relay socket, and the relay
// socket turns a bound peer's datagram into ChannelData for the client, both
// without allocating, logging or waking another goroutine. Everything else
// (Send and Data indications, TCP and TLS clients, packets for channels we
// have not heard of) takes pion's path as before, so the fast path can only
// ever be a shortcut for something pion would have done the same way:
// pion's own loop also relays on a bound channel without looking at
// permissions (a channel binding installs and refreshes its permission).
type fastPath struct {
	mu        sync.RWMutex
	relays    map[netip.AddrPort]*relayConn      // advertised relay address -> socket
	listeners map[netip.AddrPort]*gatePacketConn // local address -> UDP listener
}

func newFastPath() *fastPath {
	return &fastPath{relays: map[netip.AddrPort]*relayConn{}, listeners: map[netip.AddrPort]*gatePacketConn{}}
}

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

func (f *fastPath) addListener(l *gatePacketConn) {
	f.mu.Lock()
	f.listeners[canonical(l.sock.localAP)] = l
	f.mu.Unlock()
}

func (f *fastPath) addRelay(rc *relayConn) {
	f.mu.Lock()
	f.relays[canonical(rc.public)] = rc
	f.mu.Unlock()
}

func (f *fastPath) removeRelay(rc *relayConn) {
	f.mu.Lock()
	if f.relays[canonical(rc.public)] == rc {
		delete(f.relays, canonical(rc.public))
	}
	f.mu.Unlock()
	if link := rc.link.Swap(nil); link != nil {
		link.listener.forget(link.addr, rc)
	}
}

func (f *fastPath) lookup(relay, local net.Addr) (*relayConn, *gatePacketConn) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.relays[canonical(addrPortOf(relay))], f.listeners[canonical(addrPortOf(local))]
}

// allocationCreated links a UDP client to its relay socket.
func (f *fastPath) allocationCreated(src, local, relay net.Addr) {
	rc, l := f.lookup(relay, local)
	if rc == nil || l == nil {
		return // a TCP or TLS client, or a TCP relay: pion's path
	}
	link := &clientLink{addr: canonical(addrPortOf(src)), listener: l}
	rc.link.Store(link)
	l.remember(link.addr, rc)
}

func (f *fastPath) channelCreated(relay, peer net.Addr, number uint16) {
	f.mu.RLock()
	rc := f.relays[canonical(addrPortOf(relay))]
	f.mu.RUnlock()
	if rc == nil {
		return
	}
	rc.setChannel(canonical(addrPortOf(peer)), number, true)
}

func (f *fastPath) channelDeleted(relay, peer net.Addr, number uint16) {
	f.mu.RLock()
	rc := f.relays[canonical(addrPortOf(relay))]
	f.mu.RUnlock()
	if rc == nil {
		return
	}
	rc.setChannel(canonical(addrPortOf(peer)), number, false)
}

// setChannel adds or removes a binding by copying the table.
func (c *relayConn) setChannel(peer netip.AddrPort, number uint16, bound bool) {
	c.chanMu.Lock()
	defer c.chanMu.Unlock()
	old := c.chans.Load()
	next := &chanTable{byPeer: map[netip.AddrPort]uint16{}, byNum: map[uint16]netip.AddrPort{}}
	if old != nil {
		for k, v := range old.byPeer {
			next.byPeer[k] = v
		}
		for k, v := range old.byNum {
			next.byNum[k] = v
		}
	}
	if bound {
		next.byPeer[peer] = number
		next.byNum[number] = peer
	} else {
		delete(next.byPeer, peer)
		delete(next.byNum, number)
	}
	c.chans.Store(next)
}

// remember and forget maintain the listener group's client -> relay index.
func (l *gatePacketConn) remember(client netip.AddrPort, rc *relayConn) {
	g := l.group
	g.mu.Lock()
	if g.clients == nil {
		g.clients = map[netip.AddrPort]*relayConn{}
	}
	g.clients[client] = rc
	g.mu.Unlock()
}

func (l *gatePacketConn) forget(client netip.AddrPort, rc *relayConn) {
	g := l.group
	g.mu.Lock()
	if g.clients[client] == rc {
		delete(g.clients, client)
	}
	g.mu.Unlock()
}

// relayChannelData sends a client's ChannelData message b straight out of
// its relay socket, reporting false when pion must handle it instead.
func (l *gatePacketConn) relayChannelData(b []byte, from netip.AddrPort) bool {
	l.group.mu.RLock()
	rc := l.group.clients[canonical(from)]
	l.group.mu.RUnlock()
	if rc == nil {
		return false
	}
	t := rc.chans.Load()
	if t == nil {
		return false
	}
	peer, ok := t.byNum[binary.BigEndian.Uint16(b)]
	if !ok {
		return false
	}
	n := int(binary.BigEndian.Uint16(b[2:]))
	if 4+n > len(b) {
		return false // pion counts and drops the malformed frame
	}
	rc.sendToPeer(b[4:4+n], peer)
	return true
}

// sendToPeer is the fast twin of relayConn.WriteTo.
func (c *relayConn) sendToPeer(p []byte, peer netip.AddrPort) {
	if c.alloc.self != nil && c.alloc.self(peer.Addr()) && !c.alloc.inRange(int(peer.Port())) {
		c.alloc.metrics.Dropped.WithLabelValues("self_port").Inc()
		return
	}
	if !c.out.take(len(p)) {
		c.alloc.metrics.BandwidthDrops.Inc()
		return
	}
	_ = c.sock.sendTo(p, peer)
}

// ReadFrom is pion's read of the relay socket. Datagrams from a peer with a
// bound channel go to the client as ChannelData before pion sees them; the
// rest are returned to pion (Data indications, or drops without permission).
func (c *relayConn) ReadFrom(p []byte) (int, net.Addr, error) {
	if c.sock.conn == nil {
		n, from, err := c.sock.recvSlow(p) // the event loop ran the fast path
		if err != nil {
			return 0, nil, err
		}
		return n, net.UDPAddrFromAddrPort(from), nil
	}
	if len(p) < 8 {
		n, from, err := c.sock.conn.ReadFromUDPAddrPort(p)
		return n, net.UDPAddrFromAddrPort(from), err
	}
	for {
		// Read behind a 4-byte gap so the ChannelData header fits in front.
		n, from, err := c.sock.conn.ReadFromUDPAddrPort(p[4:])
		if err != nil {
			return 0, nil, err
		}
		if c.loopPacket(p, n, from) {
			continue
		}
		copy(p, p[4:4+n])
		return n, net.UDPAddrFromAddrPort(canonical(from)), nil
	}
}

// loopPacket relays a peer's datagram at b[4:4+n] to the client as
// ChannelData when a channel is bound; it also applies the bandwidth cap.
// It reports true when the datagram was consumed (relayed or dropped).
func (c *relayConn) loopPacket(b []byte, n int, from netip.AddrPort) bool {
	if !c.in.take(n) {
		c.alloc.metrics.BandwidthDrops.Inc()
		return true
	}
	link := c.link.Load()
	if link == nil {
		return false
	}
	t := c.chans.Load()
	if t == nil {
		return false
	}
	num, ok := t.byPeer[canonical(from)]
	if !ok {
		return false
	}
	binary.BigEndian.PutUint16(b[0:], num)
	binary.BigEndian.PutUint16(b[2:], uint16(n))
	_ = link.listener.sock.sendTo(b[:4+n], link.addr)
	return true
}

// Compile-time check that the atomics are the types we think.
var _ = atomic.Pointer[chanTable]{}
