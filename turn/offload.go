package turn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	pionstun "github.com/pion/stun/v4"
	"github.com/prometheus/client_golang/prometheus"

	"icegate/internal/kfast"
	"icegate/internal/stunwire"
)

// The kernel fast path (issue 17): internal/kfast's TC program relays the
// ChannelData of UDP clients with a bound channel inside the kernel, and
// this file decides whether it runs and which flows it holds. The
// allocation table (allocs.go) is the one place that learns pion's events,
// so it is the one that binds and unbinds flows (syncOffload); the gate
// tells it of the refreshes pion makes without an event (a ChannelBind,
// CreatePermission or Refresh that succeeded). The kernel skips every
// user-space check, so a flow is offloaded only when none applies: no
// bandwidth cap, a dedicated relay socket (not shared mode), a peer the
// policy allows and no reload has blocked, and each entry carries a
// deadline before pion's own channel, permission and allocation timers
// fire, so the kernel stops first even when user space is late.

// Values of RelayConfig.KernelOffload.
const (
	// OffloadOff never loads the program.
	OffloadOff = "off"
	// OffloadAuto loads and attaches it when the kernel, the capabilities
	// and the interfaces allow, and otherwise logs why not and relays in
	// user space.
	OffloadAuto = "auto"
	// OffloadOn fails New when it cannot load or attach.
	OffloadOn = "on"
)

// OffloadError is New's error when RelayConfig.KernelOffload is OffloadOn
// and the program cannot be loaded or attached. Err says why (the kernel,
// the capabilities, the interfaces); the caller that knows where the
// setting was written (cmd, with the config file's position) says so.
type OffloadError struct {
	Err error
}

func (e *OffloadError) Error() string {
	return "kernel offload is required (\"on\") but cannot run: " + e.Err.Error()
}

func (e *OffloadError) Unwrap() error { return e.Err }

// offloadMargin is how long before pion's earliest timer (channel,
// permission, allocation) the kernel stops relaying a flow. Its deadlines
// are counted from when the gate passed the request on, before pion
// started its timer, so they are early already; the margin adds room for
// the conversion to the kernel's clock and for a refresh that user space
// learns of late.
const offloadMargin = 2 * time.Second

// pion's defaults for a channel's and a permission's lifetime (RFC 8656
// §12: 10 minutes; §9: 300 seconds), which icegate does not change.
const (
	pionChannelLifetime    = 10 * time.Minute
	pionPermissionLifetime = 5 * time.Minute
)

// offload is the loaded program and what the table needs to fill it.
type offload struct {
	prog *kfast.Program
	log  *slog.Logger
	// Lifetimes pion gives channels and permissions (its ServerConfig's).
	chanLife, permLife time.Duration
	// refused counts channel bindings (a channel and its peer) the kernel
	// did not take (Bind's error), each once: they stay in user space.
	refused atomic.Uint64
}

// openOffload loads and attaches the program as cfg.Relay.KernelOffload
// says. It returns nil (user space only) for "off", and for "auto" when it
// cannot, after one log line saying why; for "on" that is an error.
func openOffload(cfg Config, log *slog.Logger) (*offload, error) {
	mode := cfg.Relay.KernelOffload
	if mode == "" || mode == OffloadOff {
		return nil, nil
	}
	ifaces, why, err := offloadInterfaces(cfg)
	if err == nil {
		var prog *kfast.Program
		if prog, err = kfast.Open(kfast.Config{}); err == nil {
			if err = prog.Attach(ifaces...); err == nil {
				kinds := prog.Attachments()
				desc := make([]string, 0, len(ifaces))
				for _, n := range ifaces {
					desc = append(desc, n+" ("+kinds[n]+")")
				}
				log.Info("kernel offload on: UDP ChannelData of bound channels is relayed in the kernel",
					"interfaces", strings.Join(desc, ", "), "chosen", why)
				return &offload{prog: prog, log: log, chanLife: cfg.Relay.channelLifetime(), permLife: cfg.Relay.permissionLifetime()}, nil
			}
			_ = prog.Close()
			err = fmt.Errorf("attaching to %s: %w", strings.Join(ifaces, ", "), err)
		}
	}
	if mode == OffloadOn {
		return nil, &OffloadError{Err: err}
	}
	var le *kfast.LoadError
	if errors.As(err, &le) {
		log.Warn("kernel offload off, relaying in user space: the kernel refused the program",
			"err", err, "verifier_log", strings.Join(le.Log, "\n"))
		return nil, nil
	}
	log.Warn("kernel offload off, relaying in user space", "reason", err.Error())
	return nil, nil
}

// offloadInterfaces returns the interfaces to attach to and why those:
// RelayConfig.KernelOffloadInterfaces when set; otherwise the Ethernet
// interfaces (up, not loopback) that hold a listen or relay address, all
// of them for an unspecified (wildcard) address. Traffic for the
// listeners and relays arrives on the interface that holds their address
// on an ordinary host; a router that receives it elsewhere lists the
// interfaces.
func offloadInterfaces(cfg Config) ([]string, string, error) {
	if len(cfg.Relay.KernelOffloadInterfaces) > 0 {
		return cfg.Relay.KernelOffloadInterfaces, "listed in relay.kernel_offload_interfaces", nil
	}
	var addrs []netip.Addr
	addrs = append(addrs, cfg.Listen.Addrs...)
	if !cfg.Relay.NoIPv4 {
		addrs = append(addrs, cfg.Relay.IPv4Bind)
	}
	if !cfg.Relay.NoIPv6 {
		addrs = append(addrs, cfg.Relay.IPv6Bind)
	}
	all, err := net.Interfaces()
	if err != nil {
		return nil, "", fmt.Errorf("listing interfaces: %w", err)
	}
	var out []string
	for _, ifc := range all {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 || len(ifc.HardwareAddr) != 6 {
			continue
		}
		held, _ := ifc.Addrs()
		if slices.ContainsFunc(addrs, func(a netip.Addr) bool { return a.IsUnspecified() || holds(held, a) }) {
			out = append(out, ifc.Name)
		}
	}
	if len(out) == 0 {
		return nil, "", errors.New("no Ethernet interface holds a listen or relay address (loopback-only traffic stays in user space); list the interfaces to attach to in relay.kernel_offload_interfaces")
	}
	return out, "the Ethernet interfaces holding the listen and relay addresses", nil
}

func holds(held []net.Addr, a netip.Addr) bool {
	for _, h := range held {
		if n, ok := h.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == a.Unmap() {
				return true
			}
		}
	}
	return false
}

// close detaches the program and removes its maps.
func (o *offload) close() error {
	if o == nil {
		return nil
	}
	return o.prog.Close()
}

// kernelFlow is a flow as the table bound it: to which peer, until when.
type kernelFlow struct {
	peer    netip.AddrPort
	expires time.Time
}

// offloadCollector exports the kernel fast path's state.
type offloadCollector struct {
	o                              *offload
	table                          *allocTable
	enabled, flows, fails, refused *prometheus.Desc
	bytes, packets                 *prometheus.Desc
}

func newOffloadCollector(o *offload, t *allocTable) *offloadCollector {
	return &offloadCollector{o: o, table: t,
		bytes: prometheus.NewDesc("icegate_kernel_offload_relayed_bytes_total",
			"The part of icegate_relayed_bytes_total{transport=\"udp\"} the kernel fast path relayed (ChannelData payload bytes), by direction.", []string{"direction"}, nil),
		packets: prometheus.NewDesc("icegate_kernel_offload_relayed_packets_total",
			"The part of icegate_relayed_packets_total{transport=\"udp\"} the kernel fast path relayed, by direction.", []string{"direction"}, nil),
		enabled: prometheus.NewDesc("icegate_kernel_offload_enabled",
			"1 when the kernel fast path (relay.kernel_offload) is loaded and attached, else 0.", nil, nil),
		flows: prometheus.NewDesc("icegate_kernel_offload_flows",
			"Channel bindings the kernel fast path relays now.", nil, nil),
		fails: prometheus.NewDesc("icegate_kernel_offload_failures_total",
			"Datagrams the kernel program dropped, by reason: rewrite (a header could not be rewritten) or redirect (the egress device refused it).", []string{"reason"}, nil),
		refused: prometheus.NewDesc("icegate_kernel_offload_refused_total",
			"Channel bindings the kernel did not take (no route out of an Ethernet interface, a full table, mixed families): they are relayed in user space.", nil, nil),
	}
}

func (c *offloadCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.enabled
	ch <- c.flows
	ch <- c.fails
	ch <- c.refused
	ch <- c.bytes
	ch <- c.packets
}

func (c *offloadCollector) Collect(ch chan<- prometheus.Metric) {
	if c.o == nil {
		ch <- prometheus.MustNewConstMetric(c.enabled, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.enabled, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(c.flows, prometheus.GaugeValue, float64(c.o.prog.Flows()))
	if rw, rd, err := c.o.prog.Failures(); err == nil {
		ch <- prometheus.MustNewConstMetric(c.fails, prometheus.CounterValue, float64(rw), "rewrite")
		ch <- prometheus.MustNewConstMetric(c.fails, prometheus.CounterValue, float64(rd), "redirect")
	}
	ch <- prometheus.MustNewConstMetric(c.refused, prometheus.CounterValue, float64(c.o.refused.Load()))
	k := c.table.kernelTotals()
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(k.BytesToPeer), "client_to_peer")
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.CounterValue, float64(k.BytesToClient), "peer_to_client")
	ch <- prometheus.MustNewConstMetric(c.packets, prometheus.CounterValue, float64(k.PacketsToPeer), "client_to_peer")
	ch <- prometheus.MustNewConstMetric(c.packets, prometheus.CounterValue, float64(k.PacketsToClient), "peer_to_client")
}

// KernelOffload reports whether the kernel fast path is loaded and
// attached, and to which interfaces.
func (s *Server) KernelOffload() (bool, []string) {
	if s.kf == nil {
		return false, nil
	}
	return true, s.kf.prog.Interfaces()
}

// kernelTraffic is the kernel's counters as Traffic.
func kernelTraffic(c kfast.Counters) Traffic {
	return Traffic{BytesToPeer: c.ToPeerBytes, PacketsToPeer: c.ToPeerPackets,
		BytesToClient: c.ToClientBytes, PacketsToClient: c.ToClientPackets}
}

// syncOffload makes the kernel hold exactly the flows of a that it may
// relay (wantFlow), each until its deadline: a flow no longer wanted is
// unbound at once, a new or refreshed one bound. t.mu is held.
func (t *allocTable) syncOffload(a *allocEntry) {
	if t.kf == nil || t.kfStopped || a.rc == nil || a.kflows == nil {
		return
	}
	now := time.Now()
	for n, p := range a.krefused {
		if a.chans[n] != p {
			delete(a.krefused, n) // the channel is gone or bound anew
		}
	}
	for n, have := range a.kflows {
		if want, ok := t.wantFlow(a, n, now); !ok || want.peer != have.peer {
			t.kf.prog.Unbind(canonical(addrPortOf(a.src)), canonical(addrPortOf(a.dst)), n)
			delete(a.kflows, n)
		}
	}
	for n := range a.chans {
		want, ok := t.wantFlow(a, n, now)
		if !ok || a.kflows[n] == want {
			continue
		}
		err := t.kf.prog.Bind(kfast.Flow{
			Alloc:    a.id,
			Client:   canonical(addrPortOf(a.src)),
			Listener: canonical(addrPortOf(a.dst)),
			Relay:    canonical(addrPortOf(a.rc.sock.LocalAddr())),
			Peer:     want.peer,
			Channel:  n,
			Expires:  want.expires,
		})
		if err != nil {
			// It stays in user space; an older entry for the channel must
			// not outlive it (Bind changed nothing).
			if _, had := a.kflows[n]; had {
				t.kf.prog.Unbind(canonical(addrPortOf(a.src)), canonical(addrPortOf(a.dst)), n)
				delete(a.kflows, n)
			}
			// A channel binding is refused once, however often a
			// later event of the allocation offers it again.
			if p, had := a.krefused[n]; !had || p != want.peer {
				a.krefused[n] = want.peer
				t.kf.refused.Add(1)
				t.kf.log.Debug("kernel offload: flow stays in user space", "client", a.src.String(), "peer", want.peer.String(), "channel", n, "err", err)
			}
			continue
		}
		delete(a.krefused, n)
		a.kflows[n] = want
		a.rc.kfAlloc.Store(a.id)
	}
}

// wantFlow returns the flow of a's channel n the kernel may relay, and
// false when it may not: the kernel skips every user-space check, so only
// a UDP client on the fast path (a linked relay socket of its own, not
// shared mode), without a bandwidth cap, to a peer with a permission that
// no reload has blocked, with every timer known, until the earliest of
// the channel's, the permission's and the allocation's ends less
// offloadMargin. t.mu is held.
func (t *allocTable) wantFlow(a *allocEntry, n uint16, now time.Time) (kernelFlow, bool) {
	rc := a.rc
	peer, ok := a.chans[n]
	if !ok || rc.closed.Load() || rc.shared != nil || rc.out != nil || rc.in != nil || rc.link.Load() == nil {
		return kernelFlow{}, false
	}
	ip := peer.Addr().Unmap()
	if _, ok := a.peers[ip]; !ok || rc.isBlocked(ip) {
		return kernelFlow{}, false
	}
	pe, ce := a.permExp[ip], a.chanExp[n]
	if a.expires.IsZero() || pe.IsZero() || ce.IsZero() {
		return kernelFlow{}, false
	}
	exp := a.expires
	for _, e := range [...]time.Time{pe, ce} {
		if e.Before(exp) {
			exp = e
		}
	}
	exp = exp.Add(-offloadMargin)
	if !exp.After(now) {
		return kernelFlow{}, false
	}
	return kernelFlow{peer: peer, expires: exp}, true
}

// releaseRelay takes a relay socket's flows and counters out of the
// kernel before the socket closes. It takes the lock even when rc holds
// nothing yet: a syncOffload that saw rc open may be binding its first
// flow right now, and must finish first (after this, rc.closed keeps
// any other from binding).
func (t *allocTable) releaseRelay(rc *relayConn) {
	if t.kf == nil {
		return
	}
	t.mu.Lock()
	t.release(rc)
	t.mu.Unlock()
}

// release removes rc's flows and counters from the kernel and adds the
// final counts to rc's own, in one step under t.mu (which traffic's
// readers hold too). t.mu is held.
func (t *allocTable) release(rc *relayConn) {
	id := rc.kfAlloc.Swap(0)
	if t.kf == nil || id == 0 {
		return
	}
	c, err := t.kf.prog.RemoveAllocation(id)
	if err != nil {
		t.kf.log.Warn("kernel offload: removing an allocation", "err", err)
	}
	t.kretired = t.kretired.Add(kernelTraffic(c))
	rc.traffic.bytesToPeer.Add(c.ToPeerBytes)
	rc.traffic.packetsToPeer.Add(c.ToPeerPackets)
	rc.traffic.bytesToClient.Add(c.ToClientBytes)
	rc.traffic.packetsToClient.Add(c.ToClientPackets)
	if a := t.byID[id]; a != nil {
		clear(a.kflows)
	}
}

// stopOffload takes every allocation out of the kernel, their counts into
// user space's, and binds nothing more: at shutdown, before pion stops
// relaying (it closes its listeners first and its allocations after).
func (t *allocTable) stopOffload() {
	if t.kf == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.kfStopped = true
	for _, a := range t.allocs {
		if a.rc != nil {
			t.release(a.rc)
		}
	}
}

// kernelTotals is what the kernel relayed since the server started: the
// ended allocations' final counts and the live ones' so far.
func (t *allocTable) kernelTotals() Traffic {
	if t.kf == nil {
		return Traffic{}
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	sum := t.kretired
	for _, a := range t.allocs {
		if a.rc != nil && a.rc.kfAlloc.Load() != 0 {
			if c, err := t.kf.prog.Counters(a.id); err == nil {
				sum = sum.Add(kernelTraffic(c))
			}
		}
	}
	return sum
}

// resyncOffload applies a change the table does not see as an event (a
// reload blocking peers, revoke.go) to the allocation at the 5-tuple key.
func (t *allocTable) resyncOffload(key string) {
	if t.kf == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if a := t.allocs[key]; a != nil {
		t.syncOffload(a)
	}
}

// offloadNote is what a request the gate passed to pion refreshes when it
// succeeds, noted only while the kernel fast path is on: pion refreshes
// an allocation (Refresh, RFC 8656 §7), a permission (CreatePermission,
// §9) or a channel and its permission (ChannelBind, §12) without an
// event, so the table learns of it from the success response.
type offloadNote struct {
	key     string // the allocation's 5-tuple (allocKey)
	method  pionstun.Method
	at      time.Time // when the gate passed it on: before pion's timer started
	peers   []netip.AddrPort
	channel uint16
}

// noteFor returns the note of a request, or nil when there is none to keep.
func (o *offload) noteFor(in inbound, msg *pionstun.Message) *offloadNote {
	if o == nil {
		return nil
	}
	n := &offloadNote{key: allocKey(in.src, in.local), method: msg.Type.Method, at: time.Now()}
	switch msg.Type.Method {
	case pionstun.MethodAllocate, pionstun.MethodRefresh:
	case pionstun.MethodCreatePermission, pionstun.MethodChannelBind:
		n.peers, _ = peerAddrs(msg)
		if v, err := msg.Get(pionstun.AttrChannelNumber); err == nil && len(v) >= 2 {
			n.channel = binary.BigEndian.Uint16(v)
		}
	default:
		return nil
	}
	return n
}

// refreshed applies a request's success response b to the allocation it
// refreshed: an Allocate's or Refresh's LIFETIME (§7.2, counted from when
// the request was passed on), a CreatePermission's peers, a ChannelBind's
// channel and peer.
func (t *allocTable) refreshed(n *offloadNote, b []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	a := t.allocs[n.key]
	if a == nil || a.kflows == nil {
		return
	}
	switch n.method {
	case pionstun.MethodAllocate, pionstun.MethodRefresh:
		v, ok := stunwire.Find(b, stunwire.AttrLifetime)
		if !ok || len(v) != 4 {
			return
		}
		a.expires = n.at.Add(time.Duration(binary.BigEndian.Uint32(v)) * time.Second)
	case pionstun.MethodCreatePermission:
		for _, p := range n.peers {
			if ip := p.Addr().Unmap(); hasPeer(a, ip) {
				a.permExp[ip] = n.at.Add(t.kf.permLife)
			}
		}
	case pionstun.MethodChannelBind:
		if len(n.peers) != 1 {
			return
		}
		p := canonical(n.peers[0])
		if a.chans[n.channel] != p {
			return
		}
		a.chanExp[n.channel] = n.at.Add(t.kf.chanLife)
		if ip := p.Addr().Unmap(); hasPeer(a, ip) {
			a.permExp[ip] = n.at.Add(t.kf.permLife)
		}
	}
	t.syncOffload(a)
}

func hasPeer(a *allocEntry, ip netip.Addr) bool {
	_, ok := a.peers[ip]
	return ok
}
