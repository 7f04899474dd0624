// Package sigload is the load generator of icegate's signaling benchmarks
// (tools/signaling-bench against one server, tools/cluster-bench against
// several nodes): it opens many /ws WebSockets, puts them in rooms, and has
// every peer send directed messages to the next peer of its room at a fixed
// rate, measuring connection setup, joins and each message's latency from
// sender to receiver (one clock: both ends are in this process).
//
// Peer i connects to Targets[i mod len(Targets)], so with rooms no larger
// than the number of targets the members of a room are each on a different
// server: every message crosses between servers.
//
// The phases are separate calls (Connect, Join, Send) so a caller can take
// its own measurements between them (heap, the CPU time of other
// processes).
//
// With Protocol "socketio" the peers are socket.io clients of
// /socket.io/ instead, written here from the protocol documents: Engine.IO
// 4 over WebSocket (no polling), socket.io's CONNECT, the rooms
// vocabulary's join(room) and message(room, data), pings answered. A Go
// client in this process rather than the npm socket.io-client in Node:
// the numbers are then the server's cost of the protocol beside /ws's,
// measured with the same clock and the same client machinery, not
// Node's; that the real client works is signaling/sio_test.go's job.
package sigload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// Options describe a load.
type Options struct {
	// Targets are ws://HOST:PORT/ws URLs of servers on this machine; peer i
	// connects to Targets[i mod len(Targets)].
	Targets []string
	// Conns is the number of peers, Room the peers per room (the last room
	// may have fewer), Parallel the connections opened at once.
	Conns, Room, Parallel int
	// Rate is the messages per second each peer sends, for Duration.
	Rate     float64
	Duration time.Duration
	// Protocol is "ws" (the default: Targets are /ws URLs, messages are
	// directed) or "socketio" (Targets are
	// ws://HOST:PORT/socket.io/?EIO=4&transport=websocket; a message is
	// message(room, data) to the rest of the room, which for rooms of 2
	// is the same one receiver).
	Protocol string
}

// SocketIO reports whether o's peers speak socket.io.
func (o Options) SocketIO() bool { return o.Protocol == "socketio" }

// Check reports what is wrong with o, with the flag names the tools use.
func (o Options) Check() error {
	switch {
	case len(o.Targets) == 0:
		return errors.New("no server to load")
	case o.Conns < 2 || o.Conns > 20000:
		return errors.New("-conns must be 2-20000")
	case o.Room < 2 || o.Room > o.Conns:
		return errors.New("-room must be 2 or more, at most -conns")
	case o.Rate <= 0 || o.Rate > 1000:
		return errors.New("-rate must be in (0, 1000]")
	case o.Duration <= 0 || o.Duration > 5*time.Minute:
		return errors.New("-duration must be in (0, 5m]")
	case o.Parallel < 1:
		return errors.New("-parallel must be 1 or more")
	case o.Protocol != "" && o.Protocol != "ws" && o.Protocol != "socketio":
		return fmt.Errorf("protocol %q: want ws or socketio", o.Protocol)
	}
	for _, t := range o.Targets {
		u, err := url.Parse(t)
		if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || !Loopback(u.Hostname()) {
			return fmt.Errorf("%q: a server must be a ws:// URL on this machine (127.0.0.1, ::1 or localhost)", t)
		}
	}
	return nil
}

// Loopback reports whether host names this machine.
func Loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Load is one run: its peers and what they measured. Close it.
type Load struct {
	o       Options
	peers   []*peer
	readers sync.WaitGroup

	mu        sync.Mutex
	latencies []time.Duration
	received  atomic.Int64
	errors    atomic.Int64
	errCodes  sync.Map // code → *atomic.Int64
}

// New checks o and returns a Load with no connections yet.
func New(o Options) (*Load, error) {
	if err := o.Check(); err != nil {
		return nil, err
	}
	return &Load{o: o, peers: make([]*peer, o.Conns)}, nil
}

// peer is one client.
type peer struct {
	ws    *websocket.Conn
	id    string
	sio   bool // a socket.io client: send writes an event
	wmu   sync.Mutex
	joins chan []string
}

// send writes v, a /ws message, or for a socket.io peer an event: v is
// then its arguments, name first, sent as an Engine.IO message ("4") of
// a socket.io EVENT ("2").
func (p *peer) send(v any) error {
	b, _ := json.Marshal(v)
	if p.sio {
		b = append([]byte("42"), b...)
	}
	return p.write(b)
}

func (p *peer) write(b []byte) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	_ = p.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return p.ws.WriteMessage(websocket.TextMessage, b)
}

func (l *Load) read(p *peer) {
	defer l.readers.Done()
	if p.sio {
		l.readSIO(p)
		return
	}
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
			l.received.Add(1)
			l.mu.Lock()
			l.latencies = append(l.latencies, now.Sub(time.Unix(0, m.Data.T)))
			l.mu.Unlock()
		case "joined":
			p.joins <- m.Peers
		case "error":
			l.errors.Add(1)
			v, _ := l.errCodes.LoadOrStore(m.Code, new(atomic.Int64))
			v.(*atomic.Int64).Add(1)
		}
	}
}

// readSIO is read for a socket.io peer: Engine.IO pings are answered,
// and the events that matter are joined, message and error.
func (l *Load) readSIO(p *peer) {
	for {
		_, b, err := p.ws.ReadMessage()
		if err != nil {
			return
		}
		now := time.Now()
		switch {
		case len(b) > 0 && b[0] == '2': // ping
			b[0] = '3'
			_ = p.write(b)
			continue
		case len(b) < 3 || b[0] != '4' || b[1] != '2':
			continue
		}
		var ev []json.RawMessage
		if json.Unmarshal(b[2:], &ev) != nil || len(ev) == 0 {
			continue
		}
		var name string
		_ = json.Unmarshal(ev[0], &name)
		switch name {
		case "message":
			var d struct{ T int64 }
			if len(ev) < 3 || json.Unmarshal(ev[2], &d) != nil {
				continue
			}
			l.received.Add(1)
			l.mu.Lock()
			l.latencies = append(l.latencies, now.Sub(time.Unix(0, d.T)))
			l.mu.Unlock()
		case "joined":
			p.joins <- nil
		case "full", "error":
			var e struct{ Code string }
			if len(ev) > 1 {
				_ = json.Unmarshal(ev[1], &e)
			}
			if name == "full" {
				e.Code = "room-full"
				p.joins <- nil
			}
			l.errors.Add(1)
			v, _ := l.errCodes.LoadOrStore(e.Code, new(atomic.Int64))
			v.(*atomic.Int64).Add(1)
		}
	}
}

// dialSIO opens a socket.io connection over WebSocket: the Engine.IO open
// packet, then socket.io's CONNECT and its answer, which carries the
// socket id (the peer id). The ice-servers event that follows is left to
// the reader.
func dialSIO(ws *websocket.Conn) (string, error) {
	_, b, err := ws.ReadMessage()
	if err != nil {
		return "", err
	}
	if len(b) == 0 || b[0] != '0' {
		return "", fmt.Errorf("engine.io open packet %q", b)
	}
	if err := ws.WriteMessage(websocket.TextMessage, []byte("40")); err != nil {
		return "", err
	}
	_, b, err = ws.ReadMessage()
	if err != nil {
		return "", err
	}
	var ok struct{ SID string }
	if len(b) < 3 || string(b[:2]) != "40" || json.Unmarshal(b[2:], &ok) != nil || ok.SID == "" {
		return "", fmt.Errorf("socket.io CONNECT answered %q", b)
	}
	return ok.SID, nil
}

// Close closes every connection and waits for the readers.
func (l *Load) Close() {
	for _, p := range l.peers {
		if p != nil {
			p.ws.Close()
		}
	}
	l.readers.Wait()
}

// Phase is what one phase took: its wall time and each operation's.
type Phase struct {
	Elapsed time.Duration
	Each    []time.Duration
}

// Connect opens every connection, Parallel at a time, each waiting for its
// hello, then starts the readers.
func (l *Load) Connect(ctx context.Context) (Phase, error) {
	o := l.o
	times := make([]time.Duration, o.Conns)
	start := time.Now()
	sem := make(chan struct{}, o.Parallel)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	dialer := *websocket.DefaultDialer
	dialer.HandshakeTimeout = 10 * time.Second
	for i := range l.peers {
		sem <- struct{}{}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			t0 := time.Now()
			ws, _, err := dialer.DialContext(ctx, o.Targets[i%len(o.Targets)], nil)
			if err != nil {
				firstErr.CompareAndSwap(nil, err)
				return
			}
			var hello struct{ Peer string }
			_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
			if o.SocketIO() {
				hello.Peer, err = dialSIO(ws)
			} else {
				err = ws.ReadJSON(&hello)
			}
			if err != nil {
				ws.Close()
				firstErr.CompareAndSwap(nil, err)
				return
			}
			_ = ws.SetReadDeadline(time.Time{})
			times[i] = time.Since(t0)
			l.peers[i] = &peer{ws: ws, id: hello.Peer, sio: o.SocketIO(), joins: make(chan []string, 1)}
		}()
	}
	wg.Wait()
	for _, p := range l.peers {
		if p != nil {
			l.readers.Add(1)
			go l.read(p)
		}
	}
	if err, _ := firstErr.Load().(error); err != nil {
		return Phase{}, fmt.Errorf("connect: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return Phase{}, fmt.Errorf("connect: %w", err)
	}
	return Phase{Elapsed: time.Since(start), Each: times}, nil
}

// Rooms is the number of rooms the peers make.
func (l *Load) Rooms() int { return (l.o.Conns + l.o.Room - 1) / l.o.Room }

// Join puts the peers in rooms of Room, one join at a time, each waiting
// for its joined.
func (l *Load) Join(ctx context.Context) (Phase, error) {
	times := make([]time.Duration, 0, l.o.Conns)
	start := time.Now()
	for i, p := range l.peers {
		t0 := time.Now()
		var join any = map[string]any{"type": "join", "room": fmt.Sprintf("bench-%d", i/l.o.Room)}
		if p.sio {
			join = []string{"join", fmt.Sprintf("bench-%d", i/l.o.Room)}
		}
		if err := p.send(join); err != nil {
			return Phase{}, fmt.Errorf("join: %w", err)
		}
		select {
		case <-p.joins:
		case <-ctx.Done():
			return Phase{}, fmt.Errorf("join: %w", ctx.Err())
		case <-time.After(10 * time.Second):
			return Phase{}, errors.New("join: no answer in 10s")
		}
		times = append(times, time.Since(t0))
	}
	return Phase{Elapsed: time.Since(start), Each: times}, nil
}

// Result is what the message phase measured.
type Result struct {
	Sent, Delivered, Errors int64
	// ErrCodes counts the error replies by code.
	ErrCodes map[string]int64
	// Elapsed runs from the first send until every message arrived (or 5 s
	// after the last send).
	Elapsed time.Duration
	// Latencies are each delivered message's, sender to receiver, sorted.
	Latencies []time.Duration
}

// PerSecond is the delivered messages per second.
func (r Result) PerSecond() float64 { return float64(r.Delivered) / r.Elapsed.Seconds() }

// Send has every peer send to the next peer in its room at Rate for
// Duration, the peers' ticks spread over the interval, and waits up to 5 s
// for the last messages to arrive.
func (l *Load) Send(ctx context.Context) Result {
	o := l.o
	var sent atomic.Int64
	ctx, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	interval := time.Duration(float64(time.Second) / o.Rate)
	start := time.Now()
	var wg sync.WaitGroup
	for i, p := range l.peers {
		first := i / o.Room * o.Room
		size := min(o.Room, o.Conns-first)
		if size < 2 {
			continue // a lone peer in the last room
		}
		to := l.peers[first+(i-first+1)%size].id
		room := fmt.Sprintf("bench-%d", i/o.Room)
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Spread the peers' ticks over the interval.
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Duration(i) * interval / time.Duration(o.Conns)):
			}
			t := time.NewTicker(interval)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					var m any = map[string]any{"type": "message", "to": to, "data": map[string]int64{"t": time.Now().UnixNano()}}
					if p.sio {
						m = []any{"message", room, map[string]int64{"t": time.Now().UnixNano()}}
					}
					if p.send(m) != nil {
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
	for l.received.Load()+l.errors.Load() < sent.Load() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	r := Result{Sent: sent.Load(), Delivered: l.received.Load(), Errors: l.errors.Load(),
		ErrCodes: map[string]int64{}, Elapsed: time.Since(start)}
	l.errCodes.Range(func(k, v any) bool {
		r.ErrCodes[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	l.mu.Lock()
	r.Latencies = slices.Clone(l.latencies)
	l.mu.Unlock()
	slices.Sort(r.Latencies)
	return r
}

// Quantile returns the q quantile (0 ≤ q ≤ 1) of sorted durations, 0 for
// none.
func Quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(int(q*float64(len(sorted))), len(sorted)-1)]
}

// Summary gives p50, p90, p99 and max of d (sorting it).
func Summary(d []time.Duration) string {
	if len(d) == 0 {
		return "no samples"
	}
	slices.Sort(d)
	r := func(x time.Duration) string { return x.Round(time.Microsecond).String() }
	return fmt.Sprintf("p50 %s, p90 %s, p99 %s, max %s (n=%d)",
		r(Quantile(d, 0.5)), r(Quantile(d, 0.9)), r(Quantile(d, 0.99)), r(d[len(d)-1]), len(d))
}

// CPUTime is this process's user+system CPU time.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
