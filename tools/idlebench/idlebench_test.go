package main

import (
	"io"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"icegate/internal/redistest"
)

// TestMain lets the test binary be its own worker process, as the
// command is.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		if err := worker(os.Args[2:]); err != nil {
			os.Stdout.WriteString("fail " + strings.ReplaceAll(err.Error(), "\n", " ") + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// idleBoundKiB is a generous bound on the server's memory per idle
// connection at 2,000 connections, plain and TLS, where the heap's fixed
// part still weighs in: about twice what the reader that waits on its
// socket measured there (10.8 KiB plain, 23.6 KiB TLS, 2026-12-07; the
// lean design before it: 13.5 and 30.5), so a regression that doubles
// what a connection holds (a goroutine or a buffer for life more)
// crosses it; signaling's TestIdleReaderPongs checks that idle readers
// wait on their sockets. The targets of issue #15 are measured at 19,000
// by make bench-signaling-idle.
var idleBoundKiB = map[string]float64{"plain": 22, "tls": 48}

// TestIdleConnections is the small version of the benchmark that make
// test runs: 2,000 idle /ws connections (hello, joined to a room, pings
// answered) from two worker processes, plain and over TLS. Every
// connection opens and stays up, memory per connection stays under the
// bound, on Linux no goroutine is held per idle connection (the shared
// waiter: 8.3 KiB plain, 18.0 TLS here, 2026-12-08), and once they have
// all closed the server's goroutines are back where they started.
func TestIdleConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and opens 4,000 connections")
	}
	rows, err := run([]string{"-conns", "2000", "-per-worker", "1000", "-centrifugo", "none",
		"-settle", "3s", "-idle", "3s", "-timeout", "5m"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 {
		t.Fatalf("%d rows, want plain and tls", len(rows))
	}
	checkIdle(t, rows, idleBoundKiB)
}

// sioIdleBoundKiB is TestIdleConnectionsSocketIO's bound, plain only: 1.6×
// what a socket.io WebSocket session measured at 2,000 connections once
// its reader waited on the socket as /ws's does (12.6 KiB, 2026-12-07
// night, 9.8 at 9,000; 15.0 at 2,000 before, 18.9 before that).
var sioIdleBoundKiB = map[string]float64{"plain": 20}

// TestIdleConnectionsSocketIO is the socket.io case of the same: 2,000
// idle socket.io connections over an Engine.IO WebSocket (open packet,
// CONNECT, join, Engine.IO pings answered), plain: each opens and stays
// up, memory per connection under the bound, no goroutine each on Linux
// (one elsewhere), and none left once they closed (a socket.io session
// ends with its connection).
func TestIdleConnectionsSocketIO(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and opens 2,000 connections")
	}
	rows, err := run([]string{"-proto", "sio", "-modes", "plain", "-conns", "2000", "-per-worker", "1000", "-centrifugo", "none",
		"-settle", "3s", "-idle", "3s", "-timeout", "5m"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].name != "icegate-sio" {
		t.Fatalf("rows %+v, want icegate-sio's alone", rows)
	}
	checkIdle(t, rows, sioIdleBoundKiB)
}

// checkIdle checks the rows of an idle run against bound (KiB per
// connection, by mode): every connection opened and stayed up, no
// goroutine each on Linux (one elsewhere), and none left after they
// closed.
func checkIdle(t *testing.T, rows []result, bound map[string]float64) {
	t.Helper()
	for _, r := range rows {
		t.Log(r.line())
		if r.errors != 0 || r.lost != 0 {
			t.Errorf("%s: %d connections failed, %d ended while idle", r.mode, r.errors, r.lost)
		}
		if kib := r.perConnKiB(); kib <= 0 || kib > bound[r.mode] {
			t.Errorf("%s: %.1f KiB per idle connection, bound %.0f", r.mode, kib, bound[r.mode])
		}
		if r.goroutinesIdle <= 0 {
			t.Errorf("%s: %d goroutines with %d connections: the count is not read", r.mode, r.goroutinesIdle, r.conns)
		}
		// On Linux an idle /ws connection, and a socket.io session
		// over a WebSocket, holds no goroutine (it waits in the
		// server's shared waiter, signaling/watch.go): the server's
		// own few, and handlers still warm from the last burst of
		// pongs. Elsewhere each holds one (its reader). Issue 15.
		perConn := runtime.GOOS != "linux"
		switch {
		case perConn && r.goroutinesIdle < r.conns:
			t.Errorf("%s: %d goroutines with %d connections: the count is not read", r.mode, r.goroutinesIdle, r.conns)
		case perConn && r.goroutinesIdle > r.conns+r.goroutinesStart+20:
			t.Errorf("%s: %d goroutines with %d idle connections, %d at the start: more than one each", r.mode, r.goroutinesIdle, r.conns, r.goroutinesStart)
		case !perConn && r.goroutinesIdle > r.goroutinesStart+r.conns/20:
			t.Errorf("%s: %d goroutines with %d idle connections, %d at the start: want no goroutine per connection", r.mode, r.goroutinesIdle, r.conns, r.goroutinesStart)
		}
		if r.goroutinesAfter > r.goroutinesStart+10 {
			t.Errorf("%s: %d goroutines after every connection closed, %d at the start", r.mode, r.goroutinesAfter, r.goroutinesStart)
		}
	}
}

// TestClusterStorm is the small version of -cluster and -storm that make
// test runs: 400 idle connections on two icegate nodes on a redis-server,
// the two of each room on different nodes; cross-node probes delivered;
// then every client of the first node dropped at once and resumed on the
// other, while probe senders keep sending to receivers that are dropped
// and resumed too: every acked message is delivered exactly once, every
// client comes back (a 503 at the door, signaling.max_opening's busy, is
// a configured limit the clients retry, not a failure), and fresh
// clients' joins are answered. Timing targets are the benchmark's to report, not this
// test's: the machine is shared.
func TestClusterStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs a cluster")
	}
	redistest.Binary(t) // skips without redis-server (fails with ICEGATE_REQUIRE_REDIS=1)
	var out strings.Builder
	rows, err := run([]string{"-cluster", "2", "-storm", "-conns", "400", "-per-worker", "200",
		"-settle", "1s", "-idle", "2s", "-probe-pairs", "50", "-probe-time", "2s", "-timeout", "3m"}, &out)
	t.Log(out.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 {
		t.Fatalf("%d rows, want the cluster's", len(rows))
	}
	r := rows[0]
	if r.errors != 0 || r.lost != 0 {
		t.Errorf("%d connections failed, %d ended by the servers", r.errors, r.lost)
	}
	if len(r.nodes) != 2 || r.nodes[0].conns != 200 || r.nodes[1].conns != 200 {
		t.Errorf("nodes %+v, want 200 connections on each of two", r.nodes)
	}
	if l := r.latency; l == nil || l.sent == 0 || l.delivered < l.sent*99/100 || len(l.lat) == 0 {
		t.Errorf("cross-node probes: %+v", l)
	}
	st := r.storm
	if st == nil {
		t.Fatal("no storm result")
	}
	if st.dropped != 200 || st.resumed != 200 || st.failed != 0 {
		t.Errorf("storm: %d dropped, %d resumed, %d refused, %d not back; want 200 dropped and resumed", st.dropped, st.resumed, st.refused, st.failed)
	}
	if st.acked == 0 || st.missing != 0 || st.duplicated != 0 {
		t.Errorf("storm probes: %d acked, %d missing, %d duplicated", st.acked, st.missing, st.duplicated)
	}
	if len(st.fresh) == 0 || st.freshFailures() != 0 {
		t.Errorf("fresh joins: %d answered, failed %v", len(st.fresh), st.freshFailed)
	}
}

// TestActivePeers is the small version of -active: rooms of two whose
// peers send to each other at 5 msg/s, at two counts in one run. Every
// message sent is delivered, none lost and none answered with an error,
// and the latencies are read (the comparison is the benchmark's to
// report, not this test's: the machine is shared).
func TestActivePeers(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs two servers")
	}
	var out strings.Builder
	_, err := run([]string{"-active", "5", "-active-conns", "100,300:2", "-active-time", "2s", "-active-workers", "2",
		"-settle", "1s", "-timeout", "3m"}, &out)
	t.Log(out.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"| 100 | 5 |", "| 300 | 2 |"} {
		if !strings.Contains(out.String(), n) {
			t.Errorf("no row %q", n)
		}
	}
}

func TestActiveHistogram(t *testing.T) {
	for _, c := range []struct{ us, want int64 }{{-3, 0}, {0, 0}, {57, 57}, {99, 99}, {100, 100}, {123, 120}, {999, 990}, {1234, 1200}, {98765, 98000}} {
		if got := bucketUS(c.us); got != c.want {
			t.Errorf("bucketUS(%d) = %d, want %d", c.us, got, c.want)
		}
	}
	r := activeResult{hist: map[int64]int64{}}
	if err := r.parseSent("sent 10 9 1 0 50:5,120:3,4000:1"); err != nil {
		t.Fatal(err)
	}
	if err := r.parseSent("sent 4 3 0 2 -"); err != nil {
		t.Fatal(err)
	}
	if r.sent != 14 || r.delivered != 12 || r.errors != 1 || r.late != 2 {
		t.Errorf("totals %+v", r)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50 * time.Microsecond}, {0.6, 120 * time.Microsecond}, {0.99, 4 * time.Millisecond}, {1, 4 * time.Millisecond}} {
		if got := r.quantile(c.q); got != c.want {
			t.Errorf("quantile(%g) = %v, want %v", c.q, got, c.want)
		}
	}
	for _, bad := range []string{"up 3 0", "sent 1 2 3", "sent 1 1 0 0 x:1"} {
		if r.parseSent(bad) == nil {
			t.Errorf("parseSent(%q) took it", bad)
		}
	}
}
