// Command signaling-bench loads icegate's signaling server over loopback:
// it opens many WebSockets, pairs them up in rooms, and has every peer send
// directed messages to the others in its room at a fixed rate, measuring
// connection setup, joins and message latency through the room (sender →
// server → receiver, one clock). By default it runs its own in-process
// server on 127.0.0.1; -url points it at a running icegate on this machine.
// The load itself is internal/sigload, which tools/cluster-bench shares.
//
// -protocols runs the same load once per protocol, one after the other
// against the same server: socket.io clients on /socket.io/ (Engine.IO
// over WebSocket, the rooms vocabulary) and /ws clients, then a table of
// the two side by side. socket.io goes first: its sessions end when their
// connections close, while /ws peers are held for a resume and would
// still be in the server's heap.
//
//	go run ./tools/signaling-bench -conns 1000 -room 2 -rate 10 -duration 5s
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"icegate/internal/sigload"
	"icegate/signaling"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "signaling-bench:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("signaling-bench", flag.ContinueOnError)
	var o sigload.Options
	var target string
	fs.IntVar(&o.Conns, "conns", 1000, "WebSocket connections (peers)")
	fs.IntVar(&o.Room, "room", 2, "peers per room")
	fs.Float64Var(&o.Rate, "rate", 10, "messages per second each peer sends (to the next peer in its room)")
	fs.DurationVar(&o.Duration, "duration", 5*time.Second, "how long peers send")
	fs.IntVar(&o.Parallel, "parallel", 64, "connections opened at once")
	fs.StringVar(&target, "url", "", "ws://127.0.0.1:PORT/ws of a running icegate (default: an in-process server)")
	protocols := fs.String("protocols", "socketio,ws", "the protocols to load in turn: socketio (/socket.io/), ws (/ws)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	where := "a running icegate at " + target
	o.Targets = []string{target}
	if target == "" {
		// Checked before a server starts for it.
		o.Targets = []string{"ws://127.0.0.1:1/ws"}
	}
	if err := o.Check(); err != nil {
		return err
	}
	var protos []string
	for _, p := range strings.Split(*protocols, ",") {
		if p != "ws" && p != "socketio" {
			return fmt.Errorf("-protocols: %q is not ws or socketio", p)
		}
		protos = append(protos, p)
	}
	if target == "" {
		u, stop, err := inProcess(o)
		if err != nil {
			return err
		}
		defer stop()
		o.Targets = []string{u}
		where = "an in-process server on " + strings.TrimSuffix(strings.TrimPrefix(u, "ws://"), "/ws")
	}
	fmt.Fprintf(out, "signaling bench: %d connections in rooms of %d, %.0f msg/s per peer for %s, against %s (GOMAXPROCS %d)\n",
		o.Conns, o.Room, o.Rate, o.Duration, where, runtime.GOMAXPROCS(0))
	var rows []row
	for _, p := range protos {
		po := o
		po.Protocol = p
		if p == "socketio" {
			for i, t := range o.Targets {
				po.Targets = append([]string(nil), o.Targets...)
				po.Targets[i] = strings.TrimSuffix(t, "/ws") + "/socket.io/?EIO=4&transport=websocket"
			}
		}
		fmt.Fprintf(out, "\n%s (%s):\n", p, po.Targets[0])
		r, err := bench(po, out)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		rows = append(rows, r)
	}
	if len(rows) > 1 {
		fmt.Fprintf(out, "\n%-9s %12s %12s %12s %12s %12s %14s\n", "protocol", "connect/s", "connect p50", "msg p50", "msg p99", "µs/msg", "heap KiB/conn")
		for _, r := range rows {
			fmt.Fprintf(out, "%-9s %12.0f %12s %12s %12s %12.1f %14.1f\n", r.proto, r.connPerSec, r.connP50, r.p50, r.p99, r.cpuPerMsg, r.heapKiB)
		}
	}
	return nil
}

// row is one protocol's run, for the table at the end.
type row struct {
	proto              string
	connPerSec         float64
	connP50, p50, p99  time.Duration
	cpuPerMsg, heapKiB float64
}

// inProcess starts a signaling server with limits that let the load through.
func inProcess(o sigload.Options) (string, func(), error) {
	// The relay it names is not run: the load never uses TURN, but hello
	// carries the URLs a served relay's would (icegate's default ports).
	cfg := signaling.Config{
		MaxConnections:    o.Conns + 10,
		MessagesPerSecond: 1000,
		MessagesBurst:     2000,
		PeersPerRoom:      max(o.Room, 2),
		SocketIORoomSize:  max(o.Room, 2),
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

func bench(o sigload.Options, out io.Writer) (row, error) {
	ctx := context.Background()
	l, err := sigload.New(o)
	if err != nil {
		return row{}, err
	}
	defer l.Close()
	res := row{proto: o.Protocol}

	var ms0 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	cpu0 := sigload.CPUTime()
	c, err := l.Connect(ctx)
	if err != nil {
		return res, err
	}
	res.connPerSec = float64(o.Conns) / c.Elapsed.Seconds()
	res.connP50 = sigload.Quantile(sorted(c.Each), 0.5)
	fmt.Fprintf(out, "connect: %d WebSockets with hello in %.2fs (%.0f/s); per connection %s\n",
		o.Conns, c.Elapsed.Seconds(), float64(o.Conns)/c.Elapsed.Seconds(), sigload.Summary(c.Each))
	j, err := l.Join(ctx)
	if err != nil {
		return res, err
	}
	fmt.Fprintf(out, "join: %d rooms in %.2fs; per join %s\n", l.Rooms(), j.Elapsed.Seconds(), sigload.Summary(j.Each))

	var ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms1)
	res.heapKiB = float64(int64(ms1.HeapAlloc)-int64(ms0.HeapAlloc)) / 1024 / float64(o.Conns)
	fmt.Fprintf(out, "memory: %.1f KiB heap per connection (client and server sides together, in-process)\n", res.heapKiB)

	cpuSend := sigload.CPUTime()
	r := l.Send(ctx)
	cpu := sigload.CPUTime() - cpuSend
	fmt.Fprintf(out, "messages: %d sent, %d delivered, %d errors", r.Sent, r.Delivered, r.Errors)
	for _, k := range slices.Sorted(maps.Keys(r.ErrCodes)) {
		fmt.Fprintf(out, " [%s: %d]", k, r.ErrCodes[k])
	}
	fmt.Fprintf(out, "; %.0f delivered/s\n", r.PerSecond())
	fmt.Fprintf(out, "latency through the room (send → server → receiver): %s\n", sigload.Summary(r.Latencies))
	res.p50, res.p99 = sigload.Quantile(r.Latencies, 0.5), sigload.Quantile(r.Latencies, 0.99)
	res.cpuPerMsg = float64(cpu.Microseconds()) / float64(max(r.Delivered, 1))
	fmt.Fprintf(out, "cpu: %.2f s for the message phase (%.1f µs per delivered message, load generator and server together); %.2f s in all\n",
		cpu.Seconds(), res.cpuPerMsg, (sigload.CPUTime() - cpu0).Seconds())
	if r.Delivered < r.Sent*99/100 {
		return res, fmt.Errorf("only %d of %d messages delivered", r.Delivered, r.Sent)
	}
	return res, nil
}

func sorted(d []time.Duration) []time.Duration {
	d = slices.Clone(d)
	slices.Sort(d)
	return d
}
