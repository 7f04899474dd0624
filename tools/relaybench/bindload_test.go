package main

import (
	"context"
	"encoding/binary"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// stunAnswerer answers Binding requests on 127.0.0.1 with bare success
// responses; it ignores the requests of clients for which ignore says so.
func stunAnswerer(t *testing.T, ignore func(txid []byte) bool) (port int, answered *atomic.Int64) {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	answered = &atomic.Int64{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if n != 20 || binary.BigEndian.Uint16(buf) != 0x0001 || ignore(buf[8:20]) {
				continue
			}
			binary.BigEndian.PutUint16(buf, 0x0101)
			if _, err := c.WriteToUDPAddrPort(buf[:20], from); err == nil {
				answered.Add(1)
			}
		}
	}()
	t.Cleanup(func() { _ = c.Close(); <-done })
	return c.LocalAddr().(*net.UDPAddr).Port, answered
}

// TestBindingLoad: every answered request is counted once, each client
// keeps one request in flight, and a client whose requests go unanswered
// counts timeouts and keeps trying.
func TestBindingLoad(t *testing.T) {
	const clients = 10
	// Client 3 of worker 1 is never answered.
	silent := func(txid []byte) bool { return binary.BigEndian.Uint32(txid) == 1<<20|3 }
	port, answered := stunAnswerer(t, silent)
	res, err := bindingLoad(context.Background(), port, clients, 2, 1200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if res.responses == 0 || res.responses > answered.Load() || res.responses < answered.Load()-clients {
		t.Fatalf("%d responses counted, %d sent by the server", res.responses, answered.Load())
	}
	// The silent client times out about twice in 1.2 s (500 ms each).
	if res.timeouts < 1 || res.timeouts > 3 {
		t.Fatalf("%d timeouts, want the silent client's 1-3", res.timeouts)
	}
	if res.elapsed < 1200*time.Millisecond || res.elapsed > 3*time.Second {
		t.Fatalf("ran for %v", res.elapsed)
	}
}

// TestBindingLoadCancel: cancelling the context ends the load at once.
func TestBindingLoadCancel(t *testing.T) {
	port, _ := stunAnswerer(t, func([]byte) bool { return false })
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err := bindingLoad(ctx, port, 4, 2, time.Minute)
	if err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("after cancel: %v, %v", err, time.Since(start))
	}
}
