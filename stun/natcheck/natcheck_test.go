package natcheck

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/logging"
	pionstun "github.com/pion/stun/v4"
	"github.com/pion/transport/v5/vnet"

	"icegate/internal/testutil"
	"icegate/stun"
)

// vnetServer answers Binding with a stun.Responder on four vnet sockets, as
// icegate's gate does on real ones.
type vnetServer struct {
	conns [4]net.PacketConn
	wg    sync.WaitGroup
}

func startVnetServer(t *testing.T, n *vnet.Net, addrs [4]netip.AddrPort, public [4]netip.AddrPort) *vnetServer {
	t.Helper()
	cfg := stun.Config{Addrs: public}
	if !addrs[stun.AltPort].IsValid() {
		cfg = stun.Config{}
	}
	r, err := stun.NewResponder(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return startAnswering(t, n, addrs, r.Answer)
}

func startAnswering(t *testing.T, n *vnet.Net, addrs [4]netip.AddrPort, answer func(stun.Request) (stun.Reply, error)) *vnetServer {
	t.Helper()
	s := &vnetServer{}
	for i, ap := range addrs {
		if !ap.IsValid() {
			continue
		}
		pc, err := n.ListenPacket("udp4", ap.String())
		if err != nil {
			t.Fatal(err)
		}
		s.conns[i] = pc
	}
	for i, pc := range s.conns {
		if pc == nil {
			continue
		}
		s.wg.Go(func() {
			buf := make([]byte, 1600)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				m := &pionstun.Message{Raw: append([]byte(nil), buf[:n]...)}
				if m.Decode() != nil {
					continue
				}
				src, _ := netip.ParseAddrPort(from.String())
				rep, err := answer(stun.Request{Msg: m, Src: src, On: stun.Socket(i)})
				if err != nil {
					continue
				}
				out := s.conns[rep.From]
				if out == nil {
					out = pc
				}
				_, _ = out.WriteTo(rep.Data, net.UDPAddrFromAddrPort(rep.To))
			}
		})
	}
	t.Cleanup(func() {
		for _, pc := range s.conns {
			if pc != nil {
				_ = pc.Close()
			}
		}
		s.wg.Wait()
	})
	return s
}

var (
	a1 = netip.MustParseAddr("203.0.113.10")
	a2 = netip.MustParseAddr("203.0.113.11")
)

func fourAddrs(ip1, ip2 netip.Addr) [4]netip.AddrPort {
	return [4]netip.AddrPort{
		netip.AddrPortFrom(ip1, 3478), netip.AddrPortFrom(ip1, 3479),
		netip.AddrPortFrom(ip2, 3478), netip.AddrPortFrom(ip2, 3479),
	}
}

// lab is a vnet topology: a WAN with the server (two addresses), and a
// client behind a NAT of the given type, or on the WAN itself when nat is
// nil.
type lab struct {
	wan    *vnet.Router
	client *vnet.Net
	server *vnet.Net
}

// buildMu serializes building topologies: vnet numbers MAC addresses with
// an unguarded global counter.
var buildMu sync.Mutex

func newLab(t *testing.T, nat *vnet.NATType, serverAlt bool) *lab {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	wan, err := vnet.NewRouter(&vnet.RouterConfig{CIDR: "203.0.113.0/24", LoggerFactory: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ips := []string{a1.String()}
	if serverAlt {
		ips = append(ips, a2.String())
	}
	server, err := vnet.NewNet(&vnet.NetConfig{StaticIPs: ips})
	if err != nil {
		t.Fatal(err)
	}
	if err := wan.AddNet(server); err != nil {
		t.Fatal(err)
	}
	client, err := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{"203.0.113.50"}})
	if err != nil {
		t.Fatal(err)
	}
	if nat == nil {
		if err := wan.AddNet(client); err != nil {
			t.Fatal(err)
		}
	} else {
		client, err = vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{"10.200.1.2"}})
		if err != nil {
			t.Fatal(err)
		}
		lan, err := vnet.NewRouter(&vnet.RouterConfig{
			CIDR: "10.200.1.0/24", StaticIPs: []string{"203.0.113.1"}, NATType: nat, LoggerFactory: quiet,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := lan.AddNet(client); err != nil {
			t.Fatal(err)
		}
		if err := wan.AddRouter(lan); err != nil {
			t.Fatal(err)
		}
	}
	if err := wan.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = wan.Stop() })
	return &lab{wan: wan, client: client, server: server}
}

func fastOpts(n *vnet.Net, server string) Options {
	return Options{Server: server, Net: n, Timeout: 150 * time.Millisecond, Attempts: 2, Interval: 5 * time.Millisecond}
}

// TestVnetMatrix runs natcheck through every mapping × filtering
// combination pion's vnet models, and without NAT.
func TestVnetMatrix(t *testing.T) {
	kinds := []struct {
		vnet vnet.EndpointDependencyType
		want Behavior
	}{
		{vnet.EndpointIndependent, EndpointIndependent},
		{vnet.EndpointAddrDependent, AddressDependent},
		{vnet.EndpointAddrPortDependent, AddressAndPortDependent},
	}
	type tc struct {
		name               string
		nat                *vnet.NATType
		mapping, filtering Behavior
		classic            string
		relay              bool
	}
	cases := []tc{{name: "no NAT", mapping: EndpointIndependent, filtering: EndpointIndependent, classic: "open internet"}}
	classic := map[[2]Behavior]string{
		{EndpointIndependent, EndpointIndependent}:     "full cone",
		{EndpointIndependent, AddressDependent}:        "restricted cone",
		{EndpointIndependent, AddressAndPortDependent}: "port restricted cone",
	}
	for _, m := range kinds {
		for _, f := range kinds {
			name, ok := classic[[2]Behavior{m.want, f.want}]
			if !ok {
				name = "symmetric"
			}
			cases = append(cases, tc{
				name:    fmt.Sprintf("%s mapping, %s filtering", m.want, f.want),
				nat:     &vnet.NATType{MappingBehavior: m.vnet, FilteringBehavior: f.vnet},
				mapping: m.want, filtering: f.want, classic: name, relay: m.want != EndpointIndependent,
			})
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			l := newLab(t, c.nat, true)
			addrs := fourAddrs(a1, a2)
			startVnetServer(t, l.server, addrs, addrs)
			rep, err := Run(context.Background(), fastOpts(l.client, addrs[0].String()))
			if err != nil {
				t.Fatal(err)
			}
			if !is(rep.UDP, true) || rep.ServerProblem != "" || rep.Mapping != c.mapping || rep.Filtering != c.filtering ||
				rep.Classic != c.classic || !is(rep.RelayNeeded, c.relay) || !is(rep.NAT, c.nat != nil) || rep.Confidence != High {
				t.Errorf("got udp=%s nat=%s %s mapping, %s filtering, %q relay=%s problem %q confidence %s; want nat=%v %s, %s, %q relay=%v\n%+v",
					b(rep.UDP), b(rep.NAT), rep.Mapping, rep.Filtering, rep.Classic, b(rep.RelayNeeded), rep.ServerProblem, rep.Confidence,
					c.nat != nil, c.mapping, c.filtering, c.classic, c.relay, rep.Tests)
			}
			if rep.ALG == nil || *rep.ALG {
				t.Errorf("ALG %v, want false", rep.ALG)
			}
			// vnet has no hairpinning of its own, but a packet to the NAT's
			// address goes up to the WAN and back in, which endpoint-independent
			// filtering lets through.
			if want := c.filtering == EndpointIndependent; c.nat != nil && (rep.Hairpinning == nil || *rep.Hairpinning != want) {
				t.Errorf("hairpinning %v, want %v", rep.Hairpinning, want)
			}
		})
	}
}

// TestVnetServerBehindNAT: the server sits behind a 1:1 NAT and advertises
// its public addresses; natcheck sees a coherent server.
func TestVnetServerBehindNAT(t *testing.T) {
	wan, err := vnet.NewRouter(&vnet.RouterConfig{CIDR: "203.0.113.0/24", LoggerFactory: quiet})
	if err != nil {
		t.Fatal(err)
	}
	dc, err := vnet.NewRouter(&vnet.RouterConfig{
		CIDR: "10.200.9.0/24", StaticIPs: []string{"203.0.113.10/10.200.9.10", "203.0.113.11/10.200.9.11"},
		NATType: &vnet.NATType{Mode: vnet.NATModeNAT1To1}, LoggerFactory: quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	server, _ := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{"10.200.9.10", "10.200.9.11"}})
	client, _ := vnet.NewNet(&vnet.NetConfig{StaticIPs: []string{"203.0.113.50"}})
	for _, err := range []error{dc.AddNet(server), wan.AddRouter(dc), wan.AddNet(client), wan.Start()} {
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = wan.Stop() })
	local := fourAddrs(netip.MustParseAddr("10.200.9.10"), netip.MustParseAddr("10.200.9.11"))
	public := fourAddrs(a1, a2)
	startVnetServer(t, server, local, public)
	rep, err := Run(context.Background(), fastOpts(client, public[0].String()))
	if err != nil {
		t.Fatal(err)
	}
	if rep.ServerProblem != "" || rep.Classic != "open internet" {
		t.Errorf("got %q problem %q, want open internet\n%+v", rep.Classic, rep.ServerProblem, rep.Tests)
	}
}

// TestVnetMisconfigured: a server without an alternate address, one whose
// OTHER-ADDRESS shares the primary's port, and one that ignores
// CHANGE-REQUEST are reported, not guessed at.
func TestVnetMisconfigured(t *testing.T) {
	addrs := fourAddrs(a1, a2)
	good := must(stun.NewResponder(stun.Config{Addrs: addrs}))
	for _, c := range []struct {
		name    string
		answer  func(stun.Request) (stun.Reply, error)
		problem string
	}{
		{"no alternate", (*stun.Responder)(nil).Answer, "no OTHER-ADDRESS"},
		{"same port", func(r stun.Request) (stun.Reply, error) {
			m := pionstun.MustBuild(pionstun.NewTransactionIDSetter(r.Msg.TransactionID), pionstun.BindingSuccess,
				&pionstun.XORMappedAddress{IP: r.Src.Addr().AsSlice(), Port: int(r.Src.Port())},
				&pionstun.OtherAddress{IP: a2.AsSlice(), Port: 3478})
			return stun.Reply{Data: m.Raw, From: r.On, To: r.Src}, nil
		}, "does not differ"},
		{"ignores CHANGE-REQUEST", func(r stun.Request) (stun.Reply, error) {
			r.Msg.Attributes = slices.DeleteFunc(r.Msg.Attributes, func(a pionstun.RawAttribute) bool { return a.Type == pionstun.AttrChangeRequest })
			return good.Answer(r)
		}, "ignores CHANGE-REQUEST"},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := newLab(t, &vnet.NATType{MappingBehavior: vnet.EndpointIndependent, FilteringBehavior: vnet.EndpointAddrPortDependent}, true)
			startAnswering(t, l.server, addrs, c.answer)
			rep, err := Run(context.Background(), fastOpts(l.client, addrs[0].String()))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(rep.ServerProblem, c.problem) || rep.Filtering != Unknown || !is(rep.UDP, true) || !is(rep.NAT, true) || rep.Classic != "unknown" {
				t.Errorf("got problem %q filtering %s classic %q, want a problem with %q\n%+v", rep.ServerProblem, rep.Filtering, rep.Classic, c.problem, rep.Tests)
			}
		})
	}
}

// dropNthSource wraps answer so that every request from the nth distinct
// source (counting from 1) seen on the primary socket goes unanswered. Each
// natcheck test that talks to the primary address from a fresh socket is a
// new source there: test I is the first, the socket of the first filtering
// test the second, and so on.
func dropNthSource(n int, answer func(stun.Request) (stun.Reply, error)) func(stun.Request) (stun.Reply, error) {
	var mu sync.Mutex
	var seen []netip.AddrPort
	return func(r stun.Request) (stun.Reply, error) {
		if r.On == stun.Primary {
			mu.Lock()
			i := slices.Index(seen, r.Src)
			if i < 0 {
				seen = append(seen, r.Src)
				i = len(seen) - 1
			}
			mu.Unlock()
			if i == n-1 {
				return stun.Reply{}, errors.New("dropped")
			}
		}
		return answer(r)
	}
}

// TestVnetFilteringUnanswered: when the plain request that opens the first
// filtering test goes unanswered, filtering is unknown, no server problem is
// made up, and the classic name says unknown where it depends on the
// filtering (no NAT, endpoint-independent mapping) and symmetric where it
// does not.
func TestVnetFilteringUnanswered(t *testing.T) {
	addrs := fourAddrs(a1, a2)
	good := must(stun.NewResponder(stun.Config{Addrs: addrs}))
	for _, c := range []struct {
		name    string
		nat     *vnet.NATType
		mapping Behavior
		classic string
		relay   bool
	}{
		{"no NAT", nil, EndpointIndependent, "no NAT (filtering unknown)", false},
		{"endpoint-independent mapping", &vnet.NATType{MappingBehavior: vnet.EndpointIndependent, FilteringBehavior: vnet.EndpointIndependent},
			EndpointIndependent, "unknown", false},
		{"address-dependent mapping", &vnet.NATType{MappingBehavior: vnet.EndpointAddrDependent, FilteringBehavior: vnet.EndpointAddrDependent},
			AddressDependent, "symmetric", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			l := newLab(t, c.nat, true)
			startAnswering(t, l.server, addrs, dropNthSource(2, good.Answer))
			rep, err := Run(context.Background(), fastOpts(l.client, addrs[0].String()))
			if err != nil {
				t.Fatal(err)
			}
			if !is(rep.UDP, true) || rep.ServerProblem != "" || rep.Mapping != c.mapping || rep.Filtering != Unknown ||
				rep.Classic != c.classic || !is(rep.RelayNeeded, c.relay) || !is(rep.NAT, c.nat != nil) {
				t.Errorf("got udp=%s nat=%s %s mapping, %s filtering, %q relay=%s problem %q; want %s mapping, unknown filtering, %q relay=%v\n%+v",
					b(rep.UDP), b(rep.NAT), rep.Mapping, rep.Filtering, rep.Classic, b(rep.RelayNeeded), rep.ServerProblem,
					c.mapping, c.classic, c.relay, rep.Tests)
			}
			if !slices.ContainsFunc(rep.Tests, func(t Test) bool { return strings.Contains(t.Note, "filtering untested") }) {
				t.Errorf("no test says the filtering went untested\n%+v", rep.Tests)
			}
			if !c.relay && !strings.Contains(rep.WebRTC, "filtering test went unanswered") {
				t.Errorf("WebRTC advice %q does not say the filtering is unknown", rep.WebRTC)
			}
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestBlocked: no answer at all, from the test socket nor from a connected
// one, is the UDP-blocked verdict, within the configured timeouts; the JSON
// says null for what could not be learned (no NAT is not "no NAT").
func TestBlocked(t *testing.T) {
	l := newLab(t, &vnet.NATType{}, true)
	l.wan.AddChunkFilter(func(c vnet.Chunk) bool { return c.Network() != "udp" })
	start := time.Now()
	rep, err := Run(context.Background(), fastOpts(l.client, "203.0.113.10:3478"))
	if err != nil {
		t.Fatal(err)
	}
	if !is(rep.UDP, false) || rep.Reach != NoAnswer || rep.Classic != "UDP blocked" || !is(rep.RelayNeeded, true) {
		t.Errorf("got %+v", rep)
	}
	// 4 attempts from the test socket, 4 from a connected one, 150 ms each.
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %s", d)
	}
	if n := len(rep.Tests); n != 2 || rep.Tests[0].Attempts != 4 || rep.Tests[1].Name != "reach (connected socket)" || rep.Tests[1].Attempts != 4 {
		t.Errorf("tests %+v, want mapping I and the connected socket's, 4 attempts each", rep.Tests)
	}
	var got map[string]any
	if err := json.Unmarshal(must(json.Marshal(rep)), &got); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]any{
		"udp": false, "nat": nil, "mapped": nil, "hairpinning": nil, "alg": nil, "lifetime": nil,
		"mapping": "unknown", "filtering": "unknown", "relay_needed": true, "reach": "no answer",
	} {
		if v, ok := got[key]; !ok || v != want {
			t.Errorf("JSON %q = %v (present %v), want %v", key, v, ok, want)
		}
	}
}

// TestClosedPort: a server port with nothing behind it answers with ICMP
// port unreachable, which a connected socket hears as ECONNREFUSED (on
// Linux on the read after the first send). That is a server problem, not
// UDP blocked: no advice to use TURN over TCP. Real sockets on loopback.
func TestClosedPort(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := pc.LocalAddr().String()
	_ = pc.Close()
	start := time.Now()
	rep, err := Run(context.Background(), Options{Server: closed, Timeout: 200 * time.Millisecond, Interval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Reach != PortUnreachable || rep.UDP != nil || rep.NAT != nil || rep.RelayNeeded != nil ||
		rep.Classic != "server not answering on that port" ||
		!strings.Contains(rep.ServerProblem, "not answering on "+closed+" (ICMP port unreachable / connection refused)") ||
		!strings.Contains(rep.WebRTC, "server problem, not your network") || strings.Contains(rep.WebRTC, "TCP") {
		t.Errorf("got reach %q udp %s nat %s relay %s classic %q problem %q webrtc %q\n%+v",
			rep.Reach, b(rep.UDP), b(rep.NAT), b(rep.RelayNeeded), rep.Classic, rep.ServerProblem, rep.WebRTC, rep.Tests)
	}
	last := rep.Tests[len(rep.Tests)-1]
	if last.Name != "reach (connected socket)" || !strings.Contains(last.Error, "connection refused") || last.Attempts > 2 {
		t.Errorf("last test %+v, want the connected socket refused at once", last)
	}
	// The refusal comes within a round trip, not after the attempts.
	if d := time.Since(start); d > 4*200*time.Millisecond+500*time.Millisecond {
		t.Errorf("took %s", d)
	}
	var got map[string]any
	if err := json.Unmarshal(must(json.Marshal(rep)), &got); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"udp", "nat", "relay_needed", "mapped"} {
		if v, ok := got[key]; !ok || v != nil {
			t.Errorf("JSON %q = %v (present %v), want null", key, v, ok)
		}
	}
}

// TestLifetime: the lifetime test finds vnet's mapping lifetime, ends soon
// after the first dead binding (well before LifetimeMax), and says what it
// does on Progress.
func TestLifetime(t *testing.T) {
	if testing.Short() {
		t.Skip("waits a few seconds")
	}
	l := newLab(t, &vnet.NATType{MappingBehavior: vnet.EndpointIndependent, FilteringBehavior: vnet.EndpointAddrPortDependent, MappingLifeTime: time.Second}, true)
	addrs := fourAddrs(a1, a2)
	startVnetServer(t, l.server, addrs, addrs)
	o := fastOpts(l.client, addrs[0].String())
	var progress testutil.SyncBuffer
	o.Lifetime, o.LifetimeMax, o.LifetimePrecision, o.Progress = true, 3*time.Second, 250*time.Millisecond, &progress
	rep, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	lt := rep.Lifetime
	if lt == nil || lt.AtLeastSeconds == nil || lt.BelowSeconds == nil || lt.Result != "measured" {
		t.Fatalf("lifetime %+v\n%+v", lt, rep.Tests)
	}
	if lo, hi := *lt.AtLeastSeconds, *lt.BelowSeconds; lo > 1.05 || hi < 0.95 || hi-lo > 0.6 {
		t.Errorf("lifetime between %.2f and %.2f s, want around 1 s", lo, hi)
	}
	if lt.MaxIdleSeconds > 2 {
		t.Errorf("probed up to %.1f s idle; the search should stop at the first dead binding", lt.MaxIdleSeconds)
	}
	for _, want := range []string{"natcheck: lifetime: opening 12 bindings", "alive after", "gone by"} {
		if !strings.Contains(progress.String(), want) {
			t.Errorf("progress lacks %q:\n%s", want, progress.String())
		}
	}
}

// TestLifetimeBounded: a binding that outlives every probe; the whole
// lifetime test ends by LifetimeMax after it starts (the old binary search
// waited about three times that), and the result says it is a lower bound.
func TestLifetimeBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("waits a few seconds")
	}
	l := newLab(t, &vnet.NATType{MappingBehavior: vnet.EndpointIndependent, FilteringBehavior: vnet.EndpointAddrPortDependent, MappingLifeTime: time.Minute}, true)
	addrs := fourAddrs(a1, a2)
	startVnetServer(t, l.server, addrs, addrs)
	o := fastOpts(l.client, addrs[0].String())
	o.Lifetime, o.LifetimeMax = true, 2*time.Second
	var lifetimeStart time.Time
	o.Progress = progressFunc(func(s string) {
		if lifetimeStart.IsZero() {
			lifetimeStart = time.Now()
		}
	})
	rep, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(lifetimeStart)
	lt := rep.Lifetime
	if lt == nil || lt.Result != "outlived every probe" || lt.BelowSeconds != nil || lt.AtLeastSeconds == nil || *lt.AtLeastSeconds < 1.5 {
		t.Fatalf("lifetime %+v\n%+v", lt, rep.Tests)
	}
	if took > o.LifetimeMax+300*time.Millisecond {
		t.Errorf("the lifetime test took %s, want at most LifetimeMax %s", took, o.LifetimeMax)
	}
}

// TestLifetimeInterrupted: cancelling the context (Ctrl-C in the command)
// during the lifetime test ends it with what was found, not an error.
func TestLifetimeInterrupted(t *testing.T) {
	l := newLab(t, &vnet.NATType{MappingBehavior: vnet.EndpointIndependent, FilteringBehavior: vnet.EndpointIndependent, MappingLifeTime: time.Minute}, true)
	addrs := fourAddrs(a1, a2)
	startVnetServer(t, l.server, addrs, addrs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	o := fastOpts(l.client, addrs[0].String())
	o.Lifetime, o.LifetimeMax = true, 20*time.Second
	o.Progress = progressFunc(func(s string) {
		if strings.Contains(s, "alive after") {
			cancel() // after the first live binding
		}
	})
	start := time.Now()
	rep, err := Run(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	lt := rep.Lifetime
	if lt == nil || lt.Result != "interrupted" || lt.AtLeastSeconds == nil || lt.BelowSeconds != nil || rep.Classic != "full cone" {
		t.Errorf("%q, lifetime %+v", rep.Classic, lt)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s after the cancel", d)
	}
}

// TestLifetimeOpenUnanswered: when the request that opens a binding for the
// lifetime test goes unanswered, that binding is not timed (rather than
// counted as dead, which would report a lifetime under its wait); the
// others still are.
func TestLifetimeOpenUnanswered(t *testing.T) {
	l := newLab(t, &vnet.NATType{MappingBehavior: vnet.EndpointIndependent, FilteringBehavior: vnet.EndpointIndependent}, true)
	addrs := fourAddrs(a1, a2)
	good := must(stun.NewResponder(stun.Config{Addrs: addrs}))
	// Sources on the primary: test I, filtering II, then the first binding
	// of the lifetime test.
	startAnswering(t, l.server, addrs, dropNthSource(3, good.Answer))
	o := fastOpts(l.client, addrs[0].String())
	o.Lifetime, o.LifetimeMax, o.LifetimePrecision = true, 2*time.Second, 250*time.Millisecond
	rep, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Filtering != EndpointIndependent || rep.Classic != "full cone" {
		t.Fatalf("got %s filtering, %q; want the full cone the lab builds\n%+v", rep.Filtering, rep.Classic, rep.Tests)
	}
	lt := rep.Lifetime
	if lt == nil || lt.BelowSeconds != nil || lt.Result != "outlived every probe" {
		t.Errorf("lifetime %+v, want no upper bound from a binding that was never opened\n%+v", lt, rep.Tests)
	}
	i := slices.IndexFunc(rep.Tests, func(t Test) bool { return t.Name == "lifetime: open binding 1" })
	if i < 0 || rep.Tests[i].Answered || !strings.Contains(rep.Tests[i].Note, "not timed") {
		t.Errorf("tests %+v, want the unanswered opening request with a note", rep.Tests)
	}
	if slices.ContainsFunc(rep.Tests, func(t Test) bool { return strings.HasPrefix(t.Name, "lifetime: answer to binding 1 ") }) {
		t.Error("binding 1 was probed though never opened")
	}
}

// is says whether p holds want (false for nil).
func is(p *bool, want bool) bool { return p != nil && *p == want }

// b prints a *bool as JSON does.
func b(p *bool) string {
	if p == nil {
		return "null"
	}
	return fmt.Sprint(*p)
}

type progressFunc func(string)

func (f progressFunc) Write(p []byte) (int, error) { f(string(p)); return len(p), nil }

// quiet is a pion logger factory that logs nothing.
var quiet = func() logging.LoggerFactory {
	f := logging.NewDefaultLoggerFactory()
	f.DefaultLogLevel = logging.LogLevelDisabled
	return f
}()

// TestLossy: 20% random loss each way on the WAN (a fixed seed per run), 30
// runs across five kinds of NAT. A missing answer must not become a
// confident verdict: a run may say "unknown", or give a verdict with
// confidence low and a caveat, but never a wrong verdict with confidence
// high. Before missing answers were retried with a loss model, 3 of 30 such
// runs in the NAT lab named the wrong filtering.
func TestLossy(t *testing.T) {
	if testing.Short() {
		t.Skip("30 runs of several seconds")
	}
	kinds := []lossyKind{
		{nil, EndpointIndependent, EndpointIndependent},
		{&vnet.NATType{MappingBehavior: vnet.EndpointIndependent, FilteringBehavior: vnet.EndpointIndependent}, EndpointIndependent, EndpointIndependent},
		{&vnet.NATType{MappingBehavior: vnet.EndpointIndependent, FilteringBehavior: vnet.EndpointAddrDependent}, EndpointIndependent, AddressDependent},
		{&vnet.NATType{MappingBehavior: vnet.EndpointIndependent, FilteringBehavior: vnet.EndpointAddrPortDependent}, EndpointIndependent, AddressAndPortDependent},
		{&vnet.NATType{MappingBehavior: vnet.EndpointAddrPortDependent, FilteringBehavior: vnet.EndpointAddrPortDependent}, AddressAndPortDependent, AddressAndPortDependent},
	}
	const runs = 30
	var tally lossyTally
	// The runs mostly wait for timeouts: run ten at a time, more than
	// -parallel's default (GOMAXPROCS) would allow subtests.
	t.Run("runs", func(t *testing.T) {
		var wg sync.WaitGroup
		sem := make(chan struct{}, 10)
		for i := range runs {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				t.Run(fmt.Sprint(i), func(t *testing.T) { lossyRun(t, uint64(i), kinds[i%len(kinds)], &tally) })
			})
		}
		wg.Wait()
	})
	t.Logf("%d of %d runs right, %d with confidence low; %d retries, %d answers missing", tally.right, runs, tally.low, tally.retries, tally.missing)
	if tally.retries == 0 || tally.missing == 0 {
		t.Errorf("no retries (%d) or missing answers (%d) reported under 20%% loss", tally.retries, tally.missing)
	}
	// Retrying is what makes the verdicts right, not only less sure.
	if tally.right < runs*2/3 {
		t.Errorf("only %d of %d runs right", tally.right, runs)
	}
}

type lossyKind struct {
	nat                *vnet.NATType
	mapping, filtering Behavior
}

type lossyTally struct {
	mu                           sync.Mutex
	right, low, retries, missing int
}

// lossyRun is one run of TestLossy, with its own seed.
func lossyRun(t *testing.T, seed uint64, k lossyKind, tally *lossyTally) {
	l := newLab(t, k.nat, true)
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(seed, 20))
	l.wan.AddChunkFilter(func(vnet.Chunk) bool {
		mu.Lock()
		defer mu.Unlock()
		return rng.Float64() >= 0.2
	})
	addrs := fourAddrs(a1, a2)
	startVnetServer(t, l.server, addrs, addrs)
	rep, err := Run(context.Background(), fastOpts(l.client, addrs[0].String()))
	if err != nil {
		t.Fatal(err)
	}
	var wrong []string
	if rep.Reach != Answered {
		wrong = append(wrong, "reach "+string(rep.Reach))
	}
	if rep.ServerProblem != "" {
		wrong = append(wrong, "server problem "+rep.ServerProblem)
	}
	if rep.Mapping != Unknown && rep.Mapping != k.mapping {
		wrong = append(wrong, "mapping "+string(rep.Mapping))
	}
	if rep.Filtering != Unknown && rep.Filtering != k.filtering {
		wrong = append(wrong, "filtering "+string(rep.Filtering))
	}
	// vnet hairpins what endpoint-independent filtering lets in.
	if rep.Hairpinning != nil && *rep.Hairpinning != (k.filtering == EndpointIndependent) {
		wrong = append(wrong, fmt.Sprint("hairpinning ", *rep.Hairpinning))
	}
	if len(wrong) > 0 && rep.Confidence == High {
		t.Errorf("wrong verdict with confidence high: %q\n%+v", wrong, rep.Tests)
	}
	if rep.Confidence == Low && len(rep.Caveats) == 0 {
		t.Errorf("confidence low without a caveat")
	}
	if len(wrong) > 0 {
		t.Logf("wrong, with confidence low: %q; caveats %q", wrong, rep.Caveats)
	}
	tally.mu.Lock()
	defer tally.mu.Unlock()
	if len(wrong) == 0 && rep.Mapping == k.mapping && rep.Filtering == k.filtering {
		tally.right++
	}
	if rep.Confidence == Low {
		tally.low++
	}
	tally.retries += rep.Retries
	tally.missing += rep.AnswersMissing
}
