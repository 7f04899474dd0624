package turn

import (
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	pionturn "github.com/pion/turn/v5"
)

// The allocation table: the one place where icegate keeps what pion knows
// about allocations. pion owns allocations (RFC 8656 §7: created by
// Allocate, refreshed and deleted by Refresh or their lifetime, with their
// permissions, §9, and channels, §12) and tells us about them only through
// its EventHandler, once per change. The table learns each change from
// there, and everything else reads the table:
//
//   - the relay allocator registers each relay socket or listener it hands
//     pion here, by relayed address, and its Close takes it out again;
//   - the gate records the credential of an authenticated Allocate
//     (pending, until pion reports the allocation) and reads the table for
//     limits.allocations_per_user (pion's QuotaHandler, 486),
//     limits.permissions_per_allocation (508) and whether a connection
//     holds an allocation;
//   - events name the user of a client address from it;
//   - a reload's revocation takes a snapshot of it (revoke.go);
//   - the fast path's per-packet view lives on each relayConn as atomic
//     snapshots (the client's link, the channel table, the permitted
//     peers) and on each listener group's client index; only the table
//     writes them, under its lock, so a packet reads them without one.
//
// pion's events can come in odd orders: when an allocation ends, pion
// removes its permissions and channels (each reported), closes the relay
// socket and then reports the deletion, but a permission's or a channel's
// own timer may fire at the same moment and report it once more, after the
// allocation is gone. Events for an allocation the table does not hold are
// therefore ignored, and every gauge counts only what the table holds, so
// that nothing leaks and no gauge goes below zero.
type allocTable struct {
	metrics *Metrics
	// kf is the kernel fast path (offload.go), nil when off: the table
	// binds a flow there for each channel it may relay (syncOffload).
	kf *offload
	// kfStopped is set at shutdown (stopOffload): nothing more is bound.
	// kretired is what the kernel relayed for the allocations it no
	// longer holds (release).
	kfStopped bool
	kretired  Traffic
	// ended, if set, hears of each allocation the table forgets on pion's
	// word, by 5-tuple key, outside the lock: a TCP, TLS or DTLS
	// connection re-arms its idle timeout (streamConns.allocationEnded).
	ended func(key string)

	mu sync.RWMutex
	// relays are the relay sockets handed to pion, by relayed address:
	// *relayConn for UDP relays, *relayListener for RFC 6062 TCP relays.
	relays map[relayKey]io.Closer
	// listeners are the UDP listener sockets by local address, one per
	// event loop, so that a relay answers a client from the socket of
	// its own loop.
	listeners map[netip.AddrPort][]*gatePacketConn
	// pending holds, per client address, the credential of an Allocate the
	// gate let through, until pion reports the allocation or answers the
	// Allocate (answered; bounded by maxPending besides).
	pending map[string]grant
	allocs  map[string]*allocEntry   // allocKey(client, server) -> allocation
	bySrc   map[string][]*allocEntry // client address -> its allocations
	perUser map[string]int           // user id -> live allocations
	byID    map[uint64]*allocEntry   // the admin API's allocation ids
	lastID  uint64
	// retired is what the allocations that ended relayed, by client
	// transport (transportIndex): the part of the relayed totals that
	// no live allocation holds any more (traffic.go).
	retired [len(transports)]Traffic
}

// maxPending bounds allocTable.pending: an entry stays behind only when
// pion never answers an authenticated Allocate.
const maxPending = 10000

// grant is the credential a client authenticated with: the USERNAME it sent,
// the user id derived from it, the key that verified it and the transport
// it came over. The key is what revocation tests against new credentials
// (auth.Credentials.Accepts(username, key)); the names are what events
// say.
type grant struct {
	username, userID string
	key              []byte
	transport        string
}

// allocEntry is one live allocation as pion reported it.
type allocEntry struct {
	id       uint64    // its number for the admin API, unique while the server runs
	start    time.Time // when pion reported it
	src, dst net.Addr  // the 5-tuple (RFC 8656 §2): client and server address
	cred     grant
	// reported is what of rc's traffic the usage hook heard of already
	// (usage.go).
	reported Traffic
	relay    relayKey                  // relayed transport address
	sock     io.Closer                 // its relay socket, as registered; nil if unknown
	rc       *relayConn                // sock when it is a UDP relay, whose views the table writes
	peers    map[netip.Addr]struct{}   // permissions (RFC 8656 §9), by IP
	chans    map[uint16]netip.AddrPort // channel bindings (§12)

	// The kernel fast path (offload.go): the program (nil when off), when
	// pion's timers for the allocation (§7), its permissions and its
	// channels run out as far as the table can tell (a zero or missing
	// time is unknown, and nothing is offloaded on it), and the flows the
	// kernel holds, by channel, and the peers of channels the kernel
	// refused (counted once in icegate_kernel_offload_refused_total, and
	// offered again at each later event: a full table may have room then).
	kf       *offload
	expires  time.Time
	permExp  map[netip.Addr]time.Time
	chanExp  map[uint16]time.Time
	kflows   map[uint16]kernelFlow
	krefused map[uint16]netip.AddrPort
}

// allocKey names an allocation by its 5-tuple: the client's address and
// the server address it talks to (RFC 8656 §2).
func allocKey(src, local net.Addr) string { return src.String() + "|" + local.String() }

// relayKey names a relayed transport address: a UDP relay and a TCP relay
// may share an address and port. In shared mode (shared.go) many
// allocations share one relayed address, and tag, the number of the
// Allocate's intent (reserve.go), tells them apart; it is 0 otherwise.
type relayKey struct {
	addr netip.AddrPort
	tcp  bool
	tag  uint64
}

func relayKeyOf(a net.Addr) relayKey {
	_, tcp := a.(*net.TCPAddr)
	return relayKey{addr: canonical(addrPortOf(a)), tcp: tcp}
}

func newAllocTable(m *Metrics) *allocTable {
	return &allocTable{
		metrics:   m,
		relays:    map[relayKey]io.Closer{},
		listeners: map[netip.AddrPort][]*gatePacketConn{},
		pending:   map[string]grant{},
		allocs:    map[string]*allocEntry{},
		bySrc:     map[string][]*allocEntry{},
		perUser:   map[string]int{},
		byID:      map[uint64]*allocEntry{},
	}
}

// Sockets.

// addListener registers a UDP listener socket.
func (t *allocTable) addListener(l *gatePacketConn) {
	ap := canonical(l.sock.AddrPort())
	t.mu.Lock()
	t.listeners[ap] = append(t.listeners[ap], l)
	t.mu.Unlock()
}

// addRelay registers the relay socket (or RFC 6062 listener) under k, as
// the allocator hands it to pion.
func (t *allocTable) addRelay(k relayKey, sock io.Closer) {
	t.mu.Lock()
	t.relays[k] = sock
	t.mu.Unlock()
}

// removeRelay forgets a relay socket that closed. A UDP relay's client
// stops being served by the fast path at once.
func (t *allocTable) removeRelay(k relayKey, sock io.Closer) {
	t.mu.Lock()
	if t.relays[k] == sock {
		delete(t.relays, k)
	}
	t.mu.Unlock()
	if rc, ok := sock.(*relayConn); ok {
		if link := rc.link.Swap(nil); link != nil {
			link.listener.forget(link.addr, rc)
		}
	}
}

// Credentials.

// granted records the credential a request from src passed the gate
// with. An Allocate's is kept for the allocation pion is about to report;
// any other request (Refresh, CreatePermission, ChannelBind) from the same
// client and user id updates its allocations: the credential last used is
// the one that has to stay valid.
func (t *allocTable) granted(src net.Addr, c grant, allocate bool) {
	k := src.String()
	t.mu.Lock()
	defer t.mu.Unlock()
	if allocate {
		if len(t.pending) >= maxPending {
			clear(t.pending)
		}
		t.pending[k] = c
		return
	}
	for _, a := range t.bySrc[k] {
		if a.cred.userID == c.userID {
			c.transport = a.cred.transport
			a.cred = c
		}
	}
}

// Events.

// eventHandler is pion's EventHandler: every event goes to the table, and
// report hears of allocations created and deleted (for events and logs).
func (t *allocTable) eventHandler(report func(created bool, a allocInfo)) pionturn.EventHandler {
	return pionturn.EventHandler{
		OnAllocationCreated: func(src, dst net.Addr, _, userID, realm string, relay net.Addr, _ int) {
			report(true, t.created(src, dst, userID, realm, relay))
		},
		OnAllocationDeleted: func(src, dst net.Addr, _, _, _ string) {
			if a, ok := t.deleted(src, dst); ok {
				report(false, a)
			}
			if t.ended != nil {
				t.ended(allocKey(src, dst))
			}
		},
		OnPermissionCreated: func(src, dst net.Addr, _, _, _ string, _ net.Addr, peer net.IP) {
			t.permission(src, dst, peer, true)
		},
		OnPermissionDeleted: func(src, dst net.Addr, _, _, _ string, _ net.Addr, peer net.IP) {
			t.permission(src, dst, peer, false)
		},
		OnChannelCreated: func(src, dst net.Addr, _, _, _ string, _, peer net.Addr, number uint16) {
			t.channel(src, dst, peer, number, true)
		},
		OnChannelDeleted: func(src, dst net.Addr, _, _, _ string, _, peer net.Addr, number uint16) {
			t.channel(src, dst, peer, number, false)
		},
	}
}

// allocInfo is what an event or a log line says about an allocation.
type allocInfo struct {
	id                         uint64
	client, relay              string
	username, userID, customID string
	transport                  string
	start                      time.Time
	traffic                    Traffic // all it relayed so far
	unreported                 Traffic // the part the usage hook has not heard of
}

func (a *allocEntry) info() allocInfo {
	t := a.traffic()
	return allocInfo{id: a.id, client: a.src.String(), relay: a.relay.addr.String(),
		username: a.cred.username, userID: a.cred.userID, customID: a.cred.customID(),
		transport: a.cred.transport, start: a.start, traffic: t, unreported: t.Sub(a.reported)}
}

// traffic is what a relayed so far: its UDP relay socket's counters, or
// its RFC 6062 TCP relay's (every peer connection's, countedConn).
func (a *allocEntry) traffic() Traffic {
	if a.rc != nil {
		t := a.rc.traffic.load()
		if a.kf != nil && a.rc.kfAlloc.Load() != 0 {
			// What the kernel relayed for it; at its end the final counts
			// move to rc.traffic (release), under the table's lock like
			// this read, so a total never dips.
			if c, err := a.kf.prog.Counters(a.id); err == nil {
				t = t.Add(kernelTraffic(c))
			}
		}
		return t
	}
	if l, ok := a.sock.(*relayListener); ok {
		return l.traffic.load()
	}
	return Traffic{}
}

// customID is the custom identifier a credential carries: the USER part
// of a shared-secret credential ("EXPIRY:USER", which an application
// fills with its end user's or tenant's id), "" for a static user and for
// a shared-secret credential without a user part. auth derives the user id
// of a shared-secret username from that part, and of a static user from
// the whole name, so they differ exactly when there is one.
func (c grant) customID() string {
	if c.username == c.userID {
		return ""
	}
	return c.userID
}

// created records an allocation pion made, with the credential the gate
// saw its Allocate pass with, and links a UDP client to its relay socket
// for the fast path. realm is the one pion handed the allocator: in shared
// mode its intent number finds the relay among those sharing its address.
func (t *allocTable) created(src, dst net.Addr, userID, realm string, relay net.Addr) allocInfo {
	key, k := allocKey(src, dst), src.String()
	t.mu.Lock()
	defer t.mu.Unlock()
	if old := t.allocs[key]; old != nil {
		t.dropEntry(key, old) // pion refuses a duplicate 5-tuple; never two records for one
	}
	c, ok := t.pending[k]
	delete(t.pending, k)
	if !ok || c.userID != userID {
		// The gate's record went in a purge or belongs to another request:
		// the names pion knows, no key (revocation cannot judge it).
		c = grant{userID: userID}
	}
	if c.transport == "" {
		c.transport = "udp"
		if _, udp := src.(*net.UDPAddr); !udp {
			c.transport = "tcp"
		}
	}
	t.lastID++
	a := &allocEntry{id: t.lastID, start: time.Now(), src: src, dst: dst, cred: c, relay: relayKeyOf(relay),
		peers: map[netip.Addr]struct{}{}, chans: map[uint16]netip.AddrPort{}, kf: t.kf}
	if t.kf != nil {
		a.permExp, a.chanExp, a.kflows = map[netip.Addr]time.Time{}, map[uint16]time.Time{}, map[uint16]kernelFlow{}
		a.krefused = map[uint16]netip.AddrPort{}
	}
	if n := intentNumber(realm); n != 0 && !a.relay.tcp {
		if k := (relayKey{addr: a.relay.addr, tag: n}); t.relays[k] != nil {
			a.relay = k
		}
	}
	a.sock = t.relays[a.relay]
	a.rc, _ = a.sock.(*relayConn)
	t.allocs[key] = a
	t.byID[a.id] = a
	t.bySrc[k] = append(t.bySrc[k], a)
	t.perUser[userID]++
	t.metrics.Allocations.Inc()
	t.link(a)
	return a.info()
}

// link points the fast path at a UDP client's relay: pion reports every
// allocation as UDP, and a TCP or TLS client is told apart by its address
// type (its listener shares the UDP listener's address and port). A relay
// answers the client from the listener socket of its own event loop. t.mu
// is held.
func (t *allocTable) link(a *allocEntry) {
	if _, udp := a.src.(*net.UDPAddr); !udp || a.rc == nil {
		return
	}
	if _, udp := a.dst.(*net.UDPAddr); !udp {
		return
	}
	ls := t.listeners[canonical(addrPortOf(a.dst))]
	if len(ls) == 0 {
		return // a listener without a fast path (RFC 5780's alternates)
	}
	l := ls[0]
	for _, c := range ls {
		if c.sock.Loop() == a.rc.sock.Loop() {
			l = c
			break
		}
	}
	link := &clientLink{addr: canonical(addrPortOf(a.src)), listener: l}
	a.rc.link.Store(link)
	l.remember(link.addr, a.rc)
}

// deleted forgets an allocation pion removed; false when the table did not
// hold it.
func (t *allocTable) deleted(src, dst net.Addr) (allocInfo, bool) {
	key := allocKey(src, dst)
	t.mu.Lock()
	defer t.mu.Unlock()
	a := t.allocs[key]
	if a == nil {
		return allocInfo{}, false
	}
	t.dropEntry(key, a)
	return a.info(), true
}

// dropEntry removes a from the table and the gauges. pion has reported its
// permissions and channels gone before, normally; whatever is left is
// counted off here, and later events for them find nothing. t.mu is held.
func (t *allocTable) dropEntry(key string, a *allocEntry) {
	if a.rc != nil {
		t.release(a.rc) // normally done already, when its relay socket closed
	}
	delete(t.allocs, key)
	delete(t.byID, a.id)
	i := transportIndex(a.cred.transport)
	t.retired[i] = t.retired[i].Add(a.traffic())
	k := a.src.String()
	list := t.bySrc[k]
	for i, b := range list {
		if b == a {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(t.bySrc, k)
	} else {
		t.bySrc[k] = list
	}
	if t.perUser[a.cred.userID] <= 1 {
		delete(t.perUser, a.cred.userID)
	} else {
		t.perUser[a.cred.userID]--
	}
	t.metrics.Permissions.Sub(float64(len(a.peers)))
	t.metrics.Channels.Sub(float64(len(a.chans)))
	t.metrics.Allocations.Dec()
}

// permission records a permission created or deleted (RFC 8656 §9) and
// hands the relay socket its new set of permitted peers.
func (t *allocTable) permission(src, dst net.Addr, peer net.IP, add bool) {
	ip, ok := netip.AddrFromSlice(peer)
	if !ok {
		return
	}
	ip = ip.Unmap()
	t.mu.Lock()
	defer t.mu.Unlock()
	a := t.allocs[allocKey(src, dst)]
	if a == nil {
		return // after the allocation ended: a permission timer that fired late
	}
	_, had := a.peers[ip]
	switch {
	case add && !had:
		a.peers[ip] = struct{}{}
		t.metrics.Permissions.Inc()
		if a.permExp != nil {
			// pion started the permission's timer just before it told us
			// (allocation.AddPermission); offloadMargin covers the gap.
			a.permExp[ip] = time.Now().Add(t.kf.permLife)
		}
	case !add && had:
		delete(a.peers, ip)
		delete(a.permExp, ip)
		t.metrics.Permissions.Dec()
	default:
		return
	}
	defer t.syncOffload(a)
	if a.rc != nil {
		perms := make(map[netip.Addr]struct{}, len(a.peers))
		for p := range a.peers {
			perms[p] = struct{}{}
		}
		a.rc.perms.Store(&perms)
		if !add && a.rc.shared != nil {
			// The permission is gone: so are the claims on its IP's
			// ports that no channel holds (shared.go).
			a.rc.shared.release(a.rc, func(p netip.AddrPort) bool {
				return p.Addr() != ip || a.bound(p)
			})
		}
	}
}

// bound reports whether a has a channel to peer. t.mu is held.
func (a *allocEntry) bound(peer netip.AddrPort) bool {
	for _, p := range a.chans {
		if p == peer {
			return true
		}
	}
	return false
}

// channel records a channel bound or expired (RFC 8656 §12) and hands the
// relay socket its new channel table.
func (t *allocTable) channel(src, dst, peer net.Addr, number uint16, add bool) {
	p := canonical(addrPortOf(peer))
	t.mu.Lock()
	defer t.mu.Unlock()
	a := t.allocs[allocKey(src, dst)]
	if a == nil {
		return
	}
	cur, had := a.chans[number]
	switch {
	case add:
		a.chans[number] = p
		if !had {
			t.metrics.Channels.Inc()
		}
		if a.chanExp != nil {
			a.chanExp[number] = time.Now().Add(t.kf.chanLife)
		}
	case had && cur == p:
		delete(a.chans, number)
		delete(a.chanExp, number)
		t.metrics.Channels.Dec()
	default:
		return
	}
	defer t.syncOffload(a)
	if a.rc != nil {
		next := &chanTable{byPeer: make(map[netip.AddrPort]uint16, len(a.chans)), byNum: make(map[uint16]netip.AddrPort, len(a.chans))}
		for n, p := range a.chans {
			next.byPeer[p] = n
			next.byNum[n] = p
		}
		a.rc.chans.Store(next)
		if !add && a.rc.shared != nil && !a.bound(p) {
			if _, ok := a.peers[p.Addr().Unmap()]; !ok {
				// Neither a channel nor a permission holds the peer now.
				a.rc.shared.release(a.rc, func(q netip.AddrPort) bool { return q != p })
			}
		}
	}
}

// Readers.

// relayOf returns the UDP relay of the allocation at the 5-tuple key
// (allocKey), or nil.
func (t *allocTable) relayOf(key string) *relayConn {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if a := t.allocs[key]; a != nil {
		return a.rc
	}
	return nil
}

// has reports whether the 5-tuple key (allocKey) holds an allocation.
func (t *allocTable) has(key string) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	_, ok := t.allocs[key]
	return ok
}

// holds reports whether the 5-tuple key (allocKey) holds an allocation
// or the client src has an Allocate in pion's hands (pending), which may be
// about to make it.
func (t *allocTable) holds(key string, src net.Addr) bool {
	k := src.String()
	t.mu.RLock()
	defer t.mu.RUnlock()
	if _, ok := t.allocs[key]; ok {
		return true
	}
	_, ok := t.pending[k]
	return ok
}

// tcpRelay returns the RFC 6062 TCP relay whose advertised address is
// addr, or nil.
func (t *allocTable) tcpRelay(addr net.Addr) *relayListener {
	t.mu.RLock()
	defer t.mu.RUnlock()
	l, _ := t.relays[relayKeyOf(addr)].(*relayListener)
	return l
}

// owner returns the user id of the allocation at the 5-tuple key, and
// false when the key holds none.
func (t *allocTable) owner(key string) (string, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	a := t.allocs[key]
	if a == nil {
		return "", false
	}
	return a.cred.userID, true
}

// answered forgets the pending credential of src once pion has answered
// its Allocate: on success created has taken it already, unless pion
// answered a retransmission from its cache; on an error no allocation
// follows. Left behind, it would make holds see an Allocate in flight
// that is not.
func (t *allocTable) answered(src net.Addr) {
	k := src.String()
	t.mu.Lock()
	delete(t.pending, k)
	t.mu.Unlock()
}

// userAllocations is the number of live allocations of a user id.
func (t *allocTable) userAllocations(userID string) int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.perUser[userID]
}

// permissionsAfter is how many permissions the allocation at key would
// hold with peers added: a peer it permits already does not count again.
func (t *allocTable) permissionsAfter(key string, peers []netip.AddrPort) int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var have map[netip.Addr]struct{}
	if a := t.allocs[key]; a != nil {
		have = a.peers
	}
	n := len(have)
	for i, p := range peers {
		ip := p.Addr().Unmap()
		if _, ok := have[ip]; ok {
			continue
		}
		dup := false
		for _, q := range peers[:i] {
			dup = dup || q.Addr().Unmap() == ip
		}
		if !dup {
			n++
		}
	}
	return n
}

// names returns the username and user id of a client address: its live
// allocation's, or those of the Allocate it is making.
func (t *allocTable) names(client string) (username, userID string) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if list := t.bySrc[client]; len(list) > 0 {
		c := list[len(list)-1].cred
		return c.username, c.userID
	}
	c := t.pending[client]
	return c.username, c.userID
}

// liveAlloc is a copy of one allocation for revocation and kicks.
type liveAlloc struct {
	src   net.Addr
	key   string // its 5-tuple (allocKey)
	cred  grant
	relay string
	sock  io.Closer    // nil: its relay socket is closing already
	peers []netip.Addr // permitted peers and channel peers
}

// snapshot copies the live allocations with their relay sockets.
func (t *allocTable) snapshot() []liveAlloc {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]liveAlloc, 0, len(t.allocs))
	for _, a := range t.allocs {
		out = append(out, t.live(a))
	}
	return out
}

// live copies a. t.mu is held.
func (t *allocTable) live(a *allocEntry) liveAlloc {
	l := liveAlloc{src: a.src, key: allocKey(a.src, a.dst), cred: a.cred, relay: a.relay.addr.String()}
	if a.sock != nil && t.relays[a.relay] == a.sock {
		l.sock = a.sock
	}
	for ip := range a.peers {
		l.peers = append(l.peers, ip)
	}
	for _, p := range a.chans {
		l.peers = append(l.peers, p.Addr().Unmap())
	}
	return l
}

// relayedTotals is what every allocation relayed since the server
// started, by client transport (transportIndex): the ended ones' and the
// live ones' so far.
func (t *allocTable) relayedTotals() [len(transports)]Traffic {
	t.mu.RLock()
	defer t.mu.RUnlock()
	sums := t.retired
	for _, a := range t.allocs {
		i := transportIndex(a.cred.transport)
		sums[i] = sums[i].Add(a.traffic())
	}
	return sums
}
