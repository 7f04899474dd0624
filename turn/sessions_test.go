package turn

import (
	"math"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	pionturn "github.com/pion/turn/v5"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"icegate/auth"
	"icegate/internal/udploop"
)

// usageSink collects what the usage hook hears.
type usageSink struct {
	mu      sync.Mutex
	sum     map[string]Traffic // by user id
	deleted []string           // EventAllocationDeleted's details
}

func (u *usageSink) event(e Event) {
	if e.Kind == EventAllocationDeleted {
		u.mu.Lock()
		u.deleted = append(u.deleted, e.UserID+": "+e.Detail)
		u.mu.Unlock()
	}
}

func (u *usageSink) events() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.deleted...)
}

func (u *usageSink) hook(r []UsageReport) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.sum == nil {
		u.sum = map[string]Traffic{}
	}
	for _, x := range r {
		u.sum[x.User+"|"+x.CustomID] = u.sum[x.User+"|"+x.CustomID].Add(x.Traffic)
	}
}

func (u *usageSink) get(key string) Traffic {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.sum[key]
}

// startCounted starts a server with a registry and a usage hook reporting
// every 50 ms.
func startCounted(t *testing.T, portable bool) (*testServer, *prometheus.Registry, *usageSink) {
	t.Helper()
	reg := prometheus.NewRegistry()
	sink := &usageSink{}
	loops := udploop.UnreservedProcs()
	if !portable {
		t.Cleanup(udploop.ReserveProcs(loops))
	}
	srv := startServerWith(t, nil, Options{PortableIO: portable, Loops: loops, Registerer: reg,
		Usage: sink.hook, UsageInterval: 50 * time.Millisecond, Events: sink.event})
	return srv, reg, sink
}

// relayedMetric reads icegate_relayed_{bytes,packets}_total for a
// direction and transport from reg.
func relayedMetric(t *testing.T, reg *prometheus.Registry, what, direction, transport string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "icegate_relayed_"+what+"_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labels(m)["direction"] == direction && labels(m)["transport"] == transport {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no icegate_relayed_%s_total{direction=%q,transport=%q}", what, direction, transport)
	return 0
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// near reports whether got is within 3% of want.
func near(got, want float64) bool { return math.Abs(got-want) <= 0.03*want }

// TestRelayedCounters: what a pion client sends to an echo peer and gets
// back shows up, within a few percent (UDP on loopback may lose a
// datagram), in the allocation's counters, in the totals by direction and
// transport, in the usage hook and in the usage line when it ends; over
// UDP (the fast path: Send indications, then ChannelData both ways) and
// TCP (pion writes the peer's data to the connection).
func TestRelayedCounters(t *testing.T) {
	for _, portable := range []bool{false, true} {
		for _, transport := range []string{"udp", "tcp"} {
			t.Run(map[bool]string{false: "event-loop", true: "portable"}[portable]+"/"+transport, func(t *testing.T) {
				srv, reg, sink := startCounted(t, portable)
				echo := udpEcho(t, "127.0.0.1")
				server := srv.addr(t, transport, "4")
				user, pass, _ := auth.MintREST(testSecret, "tenant-7", time.Hour, time.Now(), ":")
				c := newClient(t, dialClient(t, transport, server), server, user, pass, pionturn.RequestedAddressFamilyIPv4)
				relay, err := c.Allocate()
				if err != nil {
					t.Fatal(err)
				}
				defer relay.Close()

				const n, size = 400, 700
				payload := make([]byte, size)
				buf := make([]byte, 1500)
				var sent, got, sentBytes, gotBytes float64
				for i := range n {
					if _, err := relay.WriteTo(payload, echo); err != nil {
						t.Fatal(err)
					}
					sent++
					sentBytes += size
					// Read back as we go, so that no queue overflows.
					_ = relay.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
					if k, _, err := relay.ReadFrom(buf); err == nil {
						got++
						gotBytes += float64(k)
					} else if i == 0 {
						t.Logf("first echo: %v", err) // the permission race: counted as sent, not received
					}
				}
				if got < n*0.9 {
					t.Fatalf("only %v of %d echoes came back", got, n)
				}

				list := srv.Allocations(AllocationFilter{CustomID: "tenant-7"})
				if len(list) != 1 {
					t.Fatalf("allocations of tenant-7: %+v", list)
				}
				a := list[0]
				if a.User != "tenant-7" || a.CustomID != "tenant-7" || a.Username != user || a.Transport != transport {
					t.Errorf("allocation %+v: want user and custom id tenant-7, transport %s", a, transport)
				}
				if len(a.Permissions) != 1 || a.Permissions[0] != "127.0.0.1" || len(a.Channels) != 1 || a.Channels[0].Peer != echo.String() {
					t.Errorf("permissions %v, channels %v: want 127.0.0.1 and one channel to %v", a.Permissions, a.Channels, echo)
				}
				if !near(float64(a.PacketsToPeer), sent) || !near(float64(a.BytesToPeer), sentBytes) {
					t.Errorf("client_to_peer %d packets %d bytes, client sent %v and %v", a.PacketsToPeer, a.BytesToPeer, sent, sentBytes)
				}
				if !near(float64(a.PacketsToClient), got) || !near(float64(a.BytesToClient), gotBytes) {
					t.Errorf("peer_to_client %d packets %d bytes, client got %v and %v", a.PacketsToClient, a.BytesToClient, got, gotBytes)
				}
				for _, c := range []struct {
					what, dir string
					want      float64
				}{{"packets", "client_to_peer", sent}, {"bytes", "client_to_peer", sentBytes},
					{"packets", "peer_to_client", got}, {"bytes", "peer_to_client", gotBytes}} {
					if v := relayedMetric(t, reg, c.what, c.dir, transport); !near(v, c.want) {
						t.Errorf("icegate_relayed_%s_total{%s,%s} = %v, want about %v", c.what, c.dir, transport, v, c.want)
					}
				}
				other := map[string]string{"udp": "tcp", "tcp": "udp"}[transport]
				if v := relayedMetric(t, reg, "bytes", "client_to_peer", other); v != 0 {
					t.Errorf("%s counted %v bytes, want 0", other, v)
				}

				// Ended: the totals keep it, the usage hook has all of it, and
				// the usage line says it.
				before := srv.RelayedTotals()[transport]
				if err := relay.Close(); err != nil {
					t.Fatal(err)
				}
				waitAllocations(t, srv, 0)
				if after := srv.RelayedTotals()[transport]; after.BytesToPeer < before.BytesToPeer {
					t.Errorf("the totals went down at the end: %+v after %+v", after, before)
				}
				// pion reports the deletion (and with it the rest of the
				// usage) after its count dropped.
				u := sink.get("tenant-7|tenant-7")
				for wait := time.Now().Add(2 * time.Second); !near(float64(u.BytesToPeer), sentBytes) && time.Now().Before(wait); {
					time.Sleep(10 * time.Millisecond)
					u = sink.get("tenant-7|tenant-7")
				}
				if !near(float64(u.BytesToPeer), sentBytes) || !near(float64(u.BytesToClient), gotBytes) {
					t.Errorf("usage reported %+v, want about %v bytes each way", u, sentBytes)
				}
				deadline := time.Now().Add(2 * time.Second)
				for !strings.Contains(srv.log.String(), "allocation usage") && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
				if line := srv.log.String(); !strings.Contains(line, "custom_id=tenant-7") || !strings.Contains(line, " sb=") {
					t.Errorf("no usage line with custom_id and sb in the log")
				}
				if ev := sink.events(); len(ev) != 1 || !strings.HasPrefix(ev[0], "tenant-7: relay ") || !strings.Contains(ev[0], " rb=") {
					t.Errorf("usage events %q, want one for tenant-7 with rb=", ev)
				}
			})
		}
	}
}

// TestKick: a kicked allocation stops relaying at once, pion deletes it,
// the client's next request on it fails (a new peer needs a
// CreatePermission, answered 437 over UDP; over TCP the connection is
// closed), and allocations of others keep relaying. KickUser ends every
// allocation of a user.
func TestKick(t *testing.T) {
	for _, portable := range []bool{false, true} {
		for _, transport := range []string{"udp", "tcp"} {
			t.Run(map[bool]string{false: "event-loop", true: "portable"}[portable]+"/"+transport, func(t *testing.T) {
				srv := startServerIO(t, nil, portable)
				echo := udpEcho(t, "127.0.0.1")
				other := udpEcho(t, "127.0.0.2") // another IP: the client needs a new permission
				server := srv.addr(t, transport, "4")
				alloc := func(user, pass string) net.PacketConn {
					c := newClient(t, dialClient(t, transport, server), server, user, pass, pionturn.RequestedAddressFamilyIPv4)
					relay, err := c.Allocate()
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { _ = relay.Close() })
					echoThrough(t, relay, echo)
					return relay
				}
				victim := alloc(testUser, testPass)
				kept := alloc("bob", "builder")
				waitAllocations(t, srv, 2)

				list := srv.Allocations(AllocationFilter{User: testUser})
				if len(list) != 1 {
					t.Fatalf("alice's allocations: %+v", list)
				}
				if _, ok := srv.Allocation(list[0].ID); !ok {
					t.Fatalf("allocation %s not found by id", list[0].ID)
				}
				if srv.Kick("no-such-id", "test") || srv.Kick("999999", "test") {
					t.Error("kicking an unknown id succeeded")
				}
				if !srv.Kick(list[0].ID, "test") {
					t.Fatal("kick failed")
				}
				waitAllocations(t, srv, 1)
				// The table learns of the deletion from pion's event, a
				// moment after pion's own count: wait for it, bounded.
				for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
					if _, ok := srv.Allocation(list[0].ID); !ok {
						break
					}
					if time.Now().After(deadline) {
						t.Error("the kicked allocation is still listed")
						break
					}
				}
				if !silent(t, victim, echo) {
					t.Error("the kicked allocation still relays")
				}
				failed := false
				for range 10 {
					if _, err := victim.WriteTo([]byte("new peer"), other); err != nil {
						failed = true
						break
					}
					time.Sleep(50 * time.Millisecond)
				}
				if !failed {
					t.Error("the kicked client's sends to a new peer never failed")
				}
				echoThrough(t, kept, echo)
				if got := counterValue(t, srv.kicked); got != 1 {
					t.Errorf("icegate_allocations_kicked_total = %v, want 1", got)
				}

				// Every allocation of a user.
				alloc("bob", "builder")
				waitAllocations(t, srv, 2)
				if n := srv.KickUser("bob", "test"); n != 2 {
					t.Errorf("KickUser ended %d, want 2", n)
				}
				waitAllocations(t, srv, 0)
				if !silent(t, kept, echo) {
					t.Error("bob's allocation still relays after KickUser")
				}
			})
		}
	}
}

// TestAllocationFilter: filters by user, custom id and client address.
func TestAllocationFilter(t *testing.T) {
	srv := startServer(t, nil)
	echo := udpEcho(t, "127.0.0.1")
	ru, rp, _ := auth.MintREST(testSecret, "acme/erin", time.Hour, time.Now(), ":")
	_, relay := relayed(t, srv, ru, rp, echo)
	relayed(t, srv, testUser, testPass, echo)
	waitAllocations(t, srv, 2)
	erin := srv.Allocations(AllocationFilter{CustomID: "acme/erin"})
	if len(erin) != 1 || erin[0].User != "acme/erin" {
		t.Fatalf("custom id filter: %+v", erin)
	}
	alice := srv.Allocations(AllocationFilter{User: testUser})
	if len(alice) != 1 || alice[0].CustomID != "" {
		t.Fatalf("user filter: %+v (a static user has no custom id)", alice)
	}
	for _, f := range []AllocationFilter{{Client: "127.0.0.1"}, {}} {
		if got := srv.Allocations(f); len(got) != 2 {
			t.Errorf("filter %+v: %d allocations, want 2", f, len(got))
		}
	}
	if got := srv.Allocations(AllocationFilter{Client: erin[0].Client}); len(got) != 1 || got[0].ID != erin[0].ID {
		t.Errorf("client ip:port filter: %+v", got)
	}
	if got := srv.Allocations(AllocationFilter{Client: "192.0.2.1"}); len(got) != 0 {
		t.Errorf("another client's filter: %+v", got)
	}
	_ = relay
}
