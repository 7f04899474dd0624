//go:build linux

package kfast

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"icegate/internal/stunwire"
)

// Program is the loaded relay program, its links and its tables. Its
// methods are safe for concurrent use.
type Program struct {
	mu     sync.Mutex
	objs   relayObjects
	links  []io.Closer // a TCX link or a classic filter per interface
	names  []string
	kinds  []string // "tcx" or "clsact", per interface
	route  *router
	ncpu   int
	clsact bool // Config.Clsact
	closed bool

	// The tables as written, so that a rebind or a removal finds what to
	// take out without reading the kernel's maps back.
	flows   map[relayC2pKey]flowRec
	byPeer  map[relayP2cKey]relayC2pKey
	byAlloc map[uint64]map[relayC2pKey]struct{}
}

type flowRec struct {
	alloc uint64
	p2c   relayP2cKey
}

// Open loads the program and creates its maps (empty). It must run in the
// network namespace of the interfaces it will be attached to: the routes
// to clients and peers are looked up there. It needs CAP_BPF (loading,
// maps) and, to attach, CAP_NET_ADMIN.
func Open(cfg Config) (*Program, error) {
	spec, err := loadRelay()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotSupported, err)
	}
	max := uint32(cfg.maxFlows())
	spec.Maps[relayMapC2p].MaxEntries = max
	spec.Maps[relayMapP2c].MaxEntries = max
	spec.Maps[relayMapStats].MaxEntries = max
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotSupported, err)
	}
	p := &Program{
		ncpu:    ncpu,
		clsact:  cfg.Clsact,
		flows:   map[relayC2pKey]flowRec{},
		byPeer:  map[relayP2cKey]relayC2pKey{},
		byAlloc: map[uint64]map[relayC2pKey]struct{}{},
	}
	if err := spec.LoadAndAssign(&p.objs, nil); err != nil {
		return nil, loadErr(err)
	}
	if p.route, err = newRouter(); err != nil {
		p.objs.Close()
		return nil, err
	}
	return p, nil
}

// loadErr classifies a load failure for the caller (and for
// relay.kernel_offload = "auto", which logs why it stays in user space).
func loadErr(err error) error {
	var ve *ebpf.VerifierError
	switch {
	case errors.Is(err, unix.EPERM):
		// Missing capabilities; a verifier rejection is EACCES.
		return fmt.Errorf("%w: %w", ErrPermission, err)
	case errors.As(err, &ve):
		return &LoadError{Err: err, Log: ve.Log}
	case errors.Is(err, ebpf.ErrNotSupported), errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EINVAL):
		return fmt.Errorf("%w: %w", ErrNotSupported, err)
	}
	return fmt.Errorf("kfast: load: %w", err)
}

// Attach attaches the program to the ingress of each named interface, in
// the calling thread's network namespace, which must be the one Open ran
// in. Name every interface that carries client or peer traffic. It uses a
// TCX link (Linux ≥ 6.6), which goes away with the process; on an older
// kernel, or with Config.Clsact, a classic clsact qdisc and bpf filter
// (tc_linux.go). On an error nothing new stays attached.
func (p *Program) Attach(ifaces ...string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	var added []io.Closer
	var kinds []string
	for i, name := range ifaces {
		if slices.Contains(p.names, name) || slices.Contains(ifaces[:i], name) {
			closeAll(added)
			return fmt.Errorf("kfast: interface %q named twice", name)
		}
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			closeAll(added)
			return fmt.Errorf("kfast: interface %q: %w", name, err)
		}
		if len(ifi.HardwareAddr) != 6 {
			// The program reads a 14-byte Ethernet header; an L3 device
			// (tun, WireGuard) has none and no 6-byte hardware address.
			// (Read here rather than from /sys, which shows the namespace
			// it was mounted in, not this thread's.)
			closeAll(added)
			return fmt.Errorf("%w: interface %q is not Ethernet", ErrNotSupported, name)
		}
		l, kind, err := p.attachOne(ifi.Index)
		if err != nil {
			closeAll(added)
			if errors.Is(err, unix.EPERM) {
				return fmt.Errorf("%w: attach to %q: %w", ErrPermission, name, err)
			}
			if errors.Is(err, ebpf.ErrNotSupported) {
				return fmt.Errorf("%w: attach to %q: %w", ErrNotSupported, name, err)
			}
			return fmt.Errorf("kfast: attach to %q: %w", name, err)
		}
		added = append(added, l)
		kinds = append(kinds, kind)
	}
	p.links = append(p.links, added...)
	p.names = append(p.names, ifaces...)
	p.kinds = append(p.kinds, kinds...)
	return nil
}

// attachOne attaches to one interface: TCX where the kernel has it (and
// Config.Clsact is off), else the classic filter.
func (p *Program) attachOne(ifindex int) (io.Closer, string, error) {
	if !p.clsact {
		l, err := link.AttachTCX(link.TCXOptions{
			Interface: ifindex,
			Program:   p.objs.IcegateRelay,
			Attach:    ebpf.AttachTCXIngress,
		})
		if err == nil {
			return l, "tcx", nil
		}
		if !errors.Is(err, ebpf.ErrNotSupported) {
			return nil, "", err
		}
	}
	f, err := attachClsact(p.route, ifindex, p.objs.IcegateRelay)
	if err != nil {
		return nil, "", err
	}
	return f, "clsact", nil
}

func closeAll(ls []io.Closer) {
	for _, l := range ls {
		_ = l.Close()
	}
}

// Attachments returns how the program is attached, by interface name:
// "tcx" or "clsact".
func (p *Program) Attachments() map[string]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := make(map[string]string, len(p.names))
	for i, n := range p.names {
		m[n] = p.kinds[i]
	}
	return m
}

// Interfaces returns the names of the interfaces the program is attached to.
func (p *Program) Interfaces() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.names...)
}

// Close detaches the program from every interface and releases it and its
// maps (nothing is pinned, so they are gone when the last descriptor
// closes). Datagrams go to the sockets again at once.
func (p *Program) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	var errs []error
	for _, l := range p.links {
		errs = append(errs, l.Close())
	}
	p.links, p.names, p.kinds = nil, nil, nil
	errs = append(errs, p.objs.Close())
	p.route.close()
	return errors.Join(errs...)
}

// Bind adds or updates the flow of one channel binding, both directions,
// and creates the allocation's counters if they do not exist. A channel
// of the same client rebound to another peer, or a peer of the relayed
// address moved to another channel, replaces the old entry. A flow the
// kernel cannot take returns an error matching ErrFlow or ErrNoRoute and
// changes nothing; the caller keeps it in user space.
func (p *Program) Bind(f Flow) error {
	ck, pk, cv, pv, err := f.entries()
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	// The interfaces to send from, and the source addresses of sockets
	// bound to the unspecified address (what the kernel would pick for
	// the user-space path's datagrams).
	var src netip.Addr
	if cv.Ifindex, src, err = p.route.route(f.Peer.Addr(), f.Relay.Addr()); err != nil {
		return err
	}
	cv.Relay = src.As16()
	if pv.Ifindex, src, err = p.route.route(f.Client.Addr(), f.Listener.Addr()); err != nil {
		return err
	}
	pv.Listener = src.As16()
	// The kernel's monotonic clock, which bpf_ktime_get_ns reads.
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return fmt.Errorf("kfast: clock: %w", err)
	}
	left := time.Until(f.Expires)
	if left <= 0 {
		return fmt.Errorf("%w: expired %v ago", ErrFlow, -left)
	}
	deadline := uint64(ts.Nano()) + uint64(left)
	cv.Expires, pv.Expires = deadline, deadline

	if err := p.ensureStats(f.Alloc); err != nil {
		return err
	}
	// Whatever this flow replaces goes first, so that no packet finds
	// half of an old binding and half of the new one.
	if old, ok := p.flows[ck]; ok && (old.p2c != pk || old.alloc != f.Alloc) {
		p.deleteFlow(ck)
	}
	if oldC, ok := p.byPeer[pk]; ok && oldC != ck {
		p.deleteFlow(oldC)
	}
	if err := p.objs.P2c.Update(&pk, &pv, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("kfast: add flow: %w", err)
	}
	if err := p.objs.C2p.Update(&ck, &cv, ebpf.UpdateAny); err != nil {
		_ = p.objs.P2c.Delete(&pk)
		return fmt.Errorf("kfast: add flow: %w", err)
	}
	p.flows[ck] = flowRec{alloc: f.Alloc, p2c: pk}
	p.byPeer[pk] = ck
	set := p.byAlloc[f.Alloc]
	if set == nil {
		set = map[relayC2pKey]struct{}{}
		p.byAlloc[f.Alloc] = set
	}
	set[ck] = struct{}{}
	return nil
}

// Unbind removes the flow of a client's channel (both directions), if
// there is one. The next datagram of either direction goes to user space.
func (p *Program) Unbind(client, listener netip.AddrPort, channel uint16) {
	k := c2pKey(client, listener, channel)
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.deleteFlow(k)
	}
}

// RemoveAllocation removes every flow of an allocation and its counters,
// and returns what the counters held last.
func (p *Program) RemoveAllocation(alloc uint64) (Counters, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return Counters{}, ErrClosed
	}
	for ck := range p.byAlloc[alloc] {
		p.deleteFlow(ck)
	}
	delete(p.byAlloc, alloc)
	c, err := p.counters(alloc)
	if err != nil {
		return Counters{}, err
	}
	if err := p.objs.Stats.Delete(&alloc); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return c, fmt.Errorf("kfast: remove counters: %w", err)
	}
	return c, nil
}

// deleteFlow removes one flow from the maps and the mirror. p.mu is held.
func (p *Program) deleteFlow(ck relayC2pKey) {
	rec, ok := p.flows[ck]
	if !ok {
		return
	}
	_ = p.objs.C2p.Delete(&ck)
	_ = p.objs.P2c.Delete(&rec.p2c)
	delete(p.flows, ck)
	if p.byPeer[rec.p2c] == ck {
		delete(p.byPeer, rec.p2c)
	}
	if set := p.byAlloc[rec.alloc]; set != nil {
		delete(set, ck)
	}
}

// Flows returns how many flows (channel bindings) the kernel holds.
func (p *Program) Flows() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.flows)
}

// ensureStats creates zero counters for an allocation unless it has some.
func (p *Program) ensureStats(alloc uint64) error {
	zero := make([]relayCounters, p.ncpu)
	err := p.objs.Stats.Update(&alloc, zero, ebpf.UpdateNoExist)
	if err != nil && !errors.Is(err, ebpf.ErrKeyExist) {
		return fmt.Errorf("kfast: counters: %w", err)
	}
	return nil
}

// Counters returns what the kernel relayed for an allocation since its
// first Bind (or the last ResetCounters), summed over the CPUs.
func (p *Program) Counters(alloc uint64) (Counters, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return Counters{}, ErrClosed
	}
	return p.counters(alloc)
}

func (p *Program) counters(alloc uint64) (Counters, error) {
	var per []relayCounters
	if err := p.objs.Stats.Lookup(&alloc, &per); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return Counters{}, nil
		}
		return Counters{}, fmt.Errorf("kfast: counters: %w", err)
	}
	var c Counters
	for _, v := range per {
		c.ToPeerPackets += v.ToPeerPackets
		c.ToPeerBytes += v.ToPeerBytes
		c.ToClientPackets += v.ToClientPackets
		c.ToClientBytes += v.ToClientBytes
	}
	return c, nil
}

// ResetCounters sets an allocation's counters to zero. What the program
// counts between a Counters call and this one is lost: callers that merge
// the counters into totals should keep the last value read and add the
// difference instead.
func (p *Program) ResetCounters(alloc uint64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	zero := make([]relayCounters, p.ncpu)
	if err := p.objs.Stats.Update(&alloc, zero, ebpf.UpdateExist); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("kfast: counters: %w", err)
	}
	return nil
}

// Failures returns how many datagrams the program dropped because a
// rewrite failed half-way (a helper refused; the datagram could not be
// passed on half-written) and how many it could not redirect.
func (p *Program) Failures() (rewrite, redirect uint64, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, 0, ErrClosed
	}
	sum := func(i uint32) (uint64, error) {
		var per []uint64
		if err := p.objs.Failures.Lookup(&i, &per); err != nil {
			return 0, err
		}
		var s uint64
		for _, v := range per {
			s += v
		}
		return s, nil
	}
	if rewrite, err = sum(0); err != nil {
		return 0, 0, err
	}
	redirect, err = sum(1)
	return rewrite, redirect, err
}

// entries validates f and builds its map entries (without interfaces and
// deadline).
func (f Flow) entries() (ck relayC2pKey, pk relayP2cKey, cv relayC2pVal, pv relayP2cVal, err error) {
	client, peer := canonical(f.Client), canonical(f.Peer)
	listener, relay := local(f.Listener, client), local(f.Relay, peer)
	for _, a := range []netip.AddrPort{client, listener, relay, peer} {
		if !a.IsValid() || a.Port() == 0 {
			return ck, pk, cv, pv, fmt.Errorf("%w: address %v", ErrFlow, a)
		}
		if ip := a.Addr(); !ip.IsGlobalUnicast() && !ip.IsPrivate() && !ip.IsLinkLocalUnicast() &&
			!(ip.IsUnspecified() && (a == listener || a == relay)) {
			return ck, pk, cv, pv, fmt.Errorf("%w: address %v", ErrFlow, a)
		}
	}
	v4 := client.Addr().Is4()
	if listener.Addr().Is4() != v4 || relay.Addr().Is4() != v4 || peer.Addr().Is4() != v4 {
		// The program keeps the IP version of the packet it rewrites.
		return ck, pk, cv, pv, fmt.Errorf("%w: client %v and peer %v are of different families", ErrFlow, client, peer)
	}
	if !stunwire.ValidChannel(f.Channel) {
		return ck, pk, cv, pv, fmt.Errorf("%w: channel number %#x", ErrFlow, f.Channel)
	}
	ck = c2pKey(client, listener, f.Channel)
	cv.Relay, cv.RelayPort = addrBytes(relay)
	cv.Peer, cv.PeerPort = addrBytes(peer)
	cv.Alloc = f.Alloc
	pk.Peer, pk.PeerPort = addrBytes(peer)
	pk.Relay, pk.RelayPort = addrBytes(relay)
	pv.Listener, pv.ListenerPort = addrBytes(listener)
	pv.Client, pv.ClientPort = addrBytes(client)
	binary.BigEndian.PutUint16(pv.Channel[:], f.Channel)
	pv.Alloc = f.Alloc
	return ck, pk, cv, pv, nil
}

func c2pKey(client, listener netip.AddrPort, channel uint16) relayC2pKey {
	var k relayC2pKey
	client = canonical(client)
	k.Client, k.ClientPort = addrBytes(client)
	k.Listener, k.ListenerPort = addrBytes(local(listener, client))
	binary.BigEndian.PutUint16(k.Channel[:], channel)
	return k
}

// addrBytes is an address as the program keys it: 16 bytes (IPv4 as
// ::ffff:a.b.c.d) and the port in network byte order.
func addrBytes(ap netip.AddrPort) (a [16]byte, port [2]byte) {
	a = ap.Addr().As16()
	binary.BigEndian.PutUint16(port[:], ap.Port())
	return a, port
}

// local is a server address (a listener's or a relayed one) as the
// program keys it. The unspecified address stands for every local address
// of the family of the remote end: a socket bound to :: also takes IPv4
// datagrams, as ::ffff:a.b.c.d, and the program sees those as IPv4.
func local(ap, remote netip.AddrPort) netip.AddrPort {
	ap = canonical(ap)
	if ap.Addr().IsUnspecified() && remote.Addr().Is4() {
		return netip.AddrPortFrom(netip.IPv4Unspecified(), ap.Port())
	}
	if ap.Addr().IsUnspecified() && remote.Addr().Is6() {
		return netip.AddrPortFrom(netip.IPv6Unspecified(), ap.Port())
	}
	return ap
}

func canonical(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
