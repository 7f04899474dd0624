// Command signaling-bench loads icegate's signaling server over loopback:
// it opens many WebSockets, pairs them up in rooms, and has every peer send
// directed messages to the others in its room at a fixed rate, measuring
// connection setup, joins and message latency through the room (sender →
// server → receiver, one clock). By default it runs its own in-process
// server on 127.0.0.1; -url points it at a running icegate on this machine.
//
//	go run ./tools/signaling-bench -conns 1000 -room 2 -rate 10 -duration 5s
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"icegate/signaling"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "signaling-bench:", err)
		os.Exit(1)
	}
}

type options struct {
	conns, room, parallel int
	rate                  float64
	duration              time.Duration
	url                   string
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("signaling-bench", flag.ContinueOnError)
	var o options
	fs.IntVar(&o.conns, "conns", 1000, "WebSocket connections (peers)")
	fs.IntVar(&o.room, "room", 2, "peers per room")
	fs.Float64Var(&o.rate, "rate", 10, "messages per second each peer sends (to the next peer in its room)")
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "how long peers send")
	fs.IntVar(&o.parallel, "parallel", 64, "connections opened at once")
	fs.StringVar(&o.url, "url", "", "ws://127.0.0.1:PORT/ws of a running icegate (default: an in-process server)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case o.conns < 2 || o.conns > 20000:
		return errors.New("-conns must be 2-20000")
	case o.room < 2 || o.room > o.conns:
		return errors.New("-room must be 2 or more, at most -conns")
	case o.rate <= 0 || o.rate > 1000:
		return errors.New("-rate must be in (0, 1000]")
	case o.duration <= 0 || o.duration > 5*time.Minute:
		return errors.New("-duration must be in (0, 5m]")
	}
	target := o.url
	where := "a running icegate at " + o.url
	if target == "" {
		u, stop, err := inProcess(o)
		if err != nil {
			return err
		}
		defer stop()
		target, where = u, "an in-process server on "+strings.TrimSuffix(strings.TrimPrefix(u, "ws://"), "/ws")
	} else if u, err := url.Parse(target); err != nil || !loopback(u.Hostname()) {
		return errors.New("-url must name a server on this machine (127.0.0.1, ::1 or localhost)")
	}
	fmt.Fprintf(out, "signaling bench: %d connections in rooms of %d, %.0f msg/s per peer for %s, against %s (GOMAXPROCS %d)\n",
		o.conns, o.room, o.rate, o.duration, where, runtime.GOMAXPROCS(0))
	return bench(o, target, out)
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// inProcess starts a signaling server with limits that let the load through.
func inProcess(o options) (string, func(), error) {
	// The relay it names is not run: the load never uses TURN, but hello
	// carries the URLs a served relay's would (icegate's default ports).
	cfg := signaling.Config{
		MaxConnections:    o.conns + 10,
		MessagesPerSecond: 1000,
		MessagesBurst:     2000,
		PeersPerRoom:      max(o.room, 2),
		Relay:             signaling.Relay{Port: 3478, TLSPort: 5349, UDP: true, TCP: true, TLS: true, SelfSignedCert: true},
	}
	hub, err := signaling.New(cfg, signaling.Options{Secret: func() string { return "bench-secret-0123456789" }})
	if err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	hs := &http.Server{Handler: hub.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = hs.Shutdown(ctx)
		_ = hub.Close(ctx)
	}
	return "ws://" + ln.Addr().String() + "/ws", stop, nil
}

// peer is one benchmark client.
type peer struct {
	ws    *websocket.Conn
	id    string
	wmu   sync.Mutex
	joins chan []string
}

type stats struct {
	mu        sync.Mutex
	latencies []time.Duration
	received  atomic.Int64
	errors    atomic.Int64
	errCodes  sync.Map
}

func (s *stats) add(d time.Duration) {
	s.mu.Lock()
	s.latencies = append(s.latencies, d)
	s.mu.Unlock()
}

func (p *peer) send(v any) error {
	b, _ := json.Marshal(v)
	p.wmu.Lock()
	defer p.wmu.Unlock()
	_ = p.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return p.ws.WriteMessage(websocket.TextMessage, b)
}

func (p *peer) read(st *stats, wg *sync.WaitGroup) {
	defer wg.Done()
	for {
		_, b, err := p.ws.ReadMessage()
		if err != nil {
			return
		}
		now := time.Now()
		var m struct {
			Type  string
			Peers []string
			Code  string
			Data  struct{ T int64 }
		}
		if json.Unmarshal(b, &m) != nil {
			continue
		}
		switch m.Type {
		case "message":
			st.received.Add(1)
			st.add(now.Sub(time.Unix(0, m.Data.T)))
		case "joined":
			p.joins <- m.Peers
		case "error":
			st.errors.Add(1)
			v, _ := st.errCodes.LoadOrStore(m.Code, new(atomic.Int64))
			v.(*atomic.Int64).Add(1)
		}
	}
}

func bench(o options, target string, out io.Writer) error {
	st := &stats{}
	peers := make([]*peer, o.conns)
	connectTimes := make([]time.Duration, o.conns)
	var readers sync.WaitGroup
	defer func() {
		for _, p := range peers {
			if p != nil {
				p.ws.Close()
			}
		}
		readers.Wait()
	}()

	// Connect, waiting for each hello.
	var ms0 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	cpu0 := cpuTime()
	start := time.Now()
	sem := make(chan struct{}, o.parallel)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for i := range peers {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			t0 := time.Now()
			ws, _, err := websocket.DefaultDialer.Dial(target, nil)
			if err != nil {
				firstErr.CompareAndSwap(nil, err)
				return
			}
			var hello struct{ Peer string }
			_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
			if err := ws.ReadJSON(&hello); err != nil {
				ws.Close()
				firstErr.CompareAndSwap(nil, err)
				return
			}
			_ = ws.SetReadDeadline(time.Time{})
			connectTimes[i] = time.Since(t0)
			peers[i] = &peer{ws: ws, id: hello.Peer, joins: make(chan []string, 1)}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	elapsed := time.Since(start)
	fmt.Fprintf(out, "connect: %d WebSockets with hello in %.2fs (%.0f/s); per connection %s\n",
		o.conns, elapsed.Seconds(), float64(o.conns)/elapsed.Seconds(), summary(connectTimes))
	for _, p := range peers {
		readers.Add(1)
		go p.read(st, &readers)
	}

	// Join rooms of o.room peers.
	joinTimes := make([]time.Duration, 0, o.conns)
	rooms := (o.conns + o.room - 1) / o.room
	start = time.Now()
	for i, p := range peers {
		t0 := time.Now()
		if err := p.send(map[string]any{"type": "join", "room": fmt.Sprintf("bench-%d", i/o.room)}); err != nil {
			return err
		}
		select {
		case <-p.joins:
		case <-time.After(10 * time.Second):
			return fmt.Errorf("join: no answer in 10s")
		}
		joinTimes = append(joinTimes, time.Since(t0))
	}
	fmt.Fprintf(out, "join: %d rooms in %.2fs; per join %s\n", rooms, time.Since(start).Seconds(), summary(joinTimes))

	var ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms1)
	fmt.Fprintf(out, "memory: %.1f KiB heap per connection (client and server sides together, in-process)\n",
		float64(int64(ms1.HeapAlloc)-int64(ms0.HeapAlloc))/1024/float64(o.conns))

	// Every peer sends to the next one in its room at o.rate.
	var sent atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), o.duration)
	defer cancel()
	interval := time.Duration(float64(time.Second) / o.rate)
	cpuSend := cpuTime()
	start = time.Now()
	for i, p := range peers {
		first := i / o.room * o.room
		size := min(o.room, o.conns-first)
		if size < 2 {
			continue // a lone peer in the last room
		}
		to := peers[first+(i-first+1)%size].id
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Spread the peers' ticks over the interval.
			time.Sleep(time.Duration(i) * interval / time.Duration(o.conns))
			t := time.NewTicker(interval)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					if p.send(map[string]any{"type": "message", "to": to, "data": map[string]int64{"t": time.Now().UnixNano()}}) != nil {
						return
					}
					sent.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	// Let the last messages arrive.
	deadline := time.Now().Add(5 * time.Second)
	for st.received.Load()+st.errors.Load() < sent.Load() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	elapsed = time.Since(start)
	cpu := cpuTime() - cpuSend
	st.mu.Lock()
	lat := slices.Clone(st.latencies)
	st.mu.Unlock()
	fmt.Fprintf(out, "messages: %d sent, %d delivered, %d errors", sent.Load(), st.received.Load(), st.errors.Load())
	st.errCodes.Range(func(k, v any) bool {
		fmt.Fprintf(out, " [%s: %d]", k, v.(*atomic.Int64).Load())
		return true
	})
	fmt.Fprintf(out, "; %.0f delivered/s\n", float64(st.received.Load())/elapsed.Seconds())
	fmt.Fprintf(out, "latency through the room (send → server → receiver): %s\n", summary(lat))
	fmt.Fprintf(out, "cpu: %.2f s for the message phase (%.1f µs per delivered message, load generator and server together); %.2f s in all\n",
		cpu.Seconds(), float64(cpu.Microseconds())/float64(max(st.received.Load(), 1)), (cpuTime() - cpu0).Seconds())
	if st.received.Load() < sent.Load()*99/100 {
		return fmt.Errorf("only %d of %d messages delivered", st.received.Load(), sent.Load())
	}
	return nil
}

// summary gives p50, p90, p99 and max.
func summary(d []time.Duration) string {
	if len(d) == 0 {
		return "no samples"
	}
	slices.Sort(d)
	q := func(f float64) time.Duration { return d[min(int(f*float64(len(d))), len(d)-1)] }
	r := func(x time.Duration) string { return x.Round(time.Microsecond).String() }
	return fmt.Sprintf("p50 %s, p90 %s, p99 %s, max %s (n=%d)", r(q(0.5)), r(q(0.9)), r(q(0.99)), r(d[len(d)-1]), len(d))
}

// cpuTime is this process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
