package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"icegate/internal/benchproc"
	"icegate/internal/sigload"
)

// freshMin is the least time fresh clients keep joining during a storm.
const freshMin = 3 * time.Second

// stormResult is what the reconnect storm measured.
type stormResult struct {
	dropped, resumed, refused, failed int
	slowest                           time.Duration // the worker that took longest to resume all its clients
	probes                            int
	acked, delivered                  int64
	missing, duplicated               int64
	sendErrors                        map[string]int64
	fresh                             []time.Duration // join → joined on an established connection, sorted
	freshConnect                      []time.Duration // dial → hello of the attempt that got in, sorted
	freshDoor                         []time.Duration // first dial → hello, 503 waits included, sorted
	freshFailed                       map[string]int  // by cause
	freshRefused                      atomic.Int64    // 503s at the door, retried after Retry-After
	// freshSlow are the slowest fresh joins with when they were sent,
	// from the storm's start: whether the tail is the drop's first burst
	// or spread over the storm.
	freshSlow []freshAt
	// cpu is what each part of the benchmark spent from the storm's start
	// to the last worker's report (its wall time): whether the storm is
	// the node's work or the generator's, on a machine they share.
	cpu stormCPU
}

// stormCPU is CPU time over the storm, in clock ticks (USER_HZ), and the
// machine's busy and total ticks over all its cores (/proc/stat).
type stormCPU struct {
	wall                              time.Duration
	nodes, workers, bench, redis      int64
	machineBusy, machineAll, numCores int64
}

// stormTicks reads the ticks stormCPU holds, at one moment.
func stormTicks(g *group, workers []*workerProc) (c stormCPU) {
	for _, n := range g.nodes {
		t, _ := benchproc.CPUTicks(n.p.Pid())
		c.nodes += t
	}
	for _, w := range workers {
		t, _ := benchproc.CPUTicks(w.p.Pid())
		c.workers += t
	}
	c.bench, _ = benchproc.CPUTicks(os.Getpid())
	if g.redis != nil {
		c.redis, _ = benchproc.CPUTicks(g.redis.Pid())
	}
	c.machineBusy, c.machineAll, c.numCores = machineTicks()
	return c
}

// machineTicks reads /proc/stat's first line: busy ticks (all but idle
// and iowait), all ticks, summed over the cores, and the number of cores.
func machineTicks() (busy, all, cores int64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, 0
	}
	for i, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if i > 0 {
			if strings.HasPrefix(f[0], "cpu") {
				cores++
			}
			continue
		}
		for k, v := range f[1:] {
			n, _ := strconv.ParseInt(v, 10, 64)
			all += n
			if k != 3 && k != 4 { // idle, iowait
				busy += n
			}
		}
	}
	return busy, all, cores
}

// sub is the ticks spent between a (earlier) and c.
func (c stormCPU) sub(a stormCPU) stormCPU {
	return stormCPU{nodes: c.nodes - a.nodes, workers: c.workers - a.workers, bench: c.bench - a.bench,
		redis: c.redis - a.redis, machineBusy: c.machineBusy - a.machineBusy, machineAll: c.machineAll - a.machineAll,
		numCores: c.numCores}
}

// line reports c: core-seconds per part, and the machine's.
func (c stormCPU) line() string {
	sec := func(t int64) string { return fmt.Sprintf("%.1f s", float64(t)/benchproc.TicksPerSecond) }
	capacity := c.wall.Seconds() * float64(c.numCores)
	others := c.machineBusy - c.nodes - c.workers - c.bench - c.redis
	return fmt.Sprintf("storm CPU over %v (%d cores: %.1f core-seconds): node(s) %s, storm workers %s, idlebench (probes, fresh clients) %s, redis %s; the machine busy %s (%.0f%%), of it outside the benchmark %s",
		c.wall.Round(10*time.Millisecond), c.numCores, capacity, sec(c.nodes), sec(c.workers), sec(c.bench), sec(c.redis),
		sec(c.machineBusy), 100*float64(c.machineBusy)/float64(max(c.machineAll, 1)), sec(others))
}

// freshAt is one fresh join: its time and when it was sent (from the
// storm's start).
type freshAt struct{ join, at time.Duration }

// probeConn is one probe connection of the storm, in this process: it
// keeps its last seq and resume token so it can resume as the workers'
// clients do.
type probeConn struct {
	ws      *websocket.Conn
	wmu     sync.Mutex
	peer    string
	token   string
	last    atomic.Uint64
	dropped atomic.Bool
	ended   chan struct{}
}

type probeMsg struct {
	Type  string          `json:"type"`
	Seq   uint64          `json:"seq"`
	ID    json.RawMessage `json:"id"`
	Code  string          `json:"code"`
	Peer  string          `json:"peer"`
	Token string          `json:"resume_token"`
	Res   bool            `json:"resumed"`
	Data  struct {
		N int64 `json:"n"`
	} `json:"data"`
}

// dialProbe opens a /ws connection to u (resuming token from last when
// token is set) and reads its hello.
func dialProbe(ctx context.Context, u, token string, last uint64) (*probeConn, error) {
	if token != "" {
		u += "?resume=" + url.QueryEscape(token) + "&last=" + strconv.FormatUint(last, 10)
	}
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, ReadBufferSize: 1024, WriteBufferSize: 1024}
	ws, resp, err := d.DialContext(ctx, u, nil)
	if err != nil {
		return nil, refusal(resp, err)
	}
	_ = ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	var h probeMsg
	if err := ws.ReadJSON(&h); err != nil || h.Type != "hello" || (token != "" && !h.Res) {
		ws.Close()
		return nil, fmt.Errorf("%w: %v %q resumed=%v", errHello, err, h.Type, h.Res)
	}
	_ = ws.SetReadDeadline(time.Time{})
	p := &probeConn{ws: ws, peer: h.Peer, token: h.Token, ended: make(chan struct{})}
	p.last.Store(last)
	return p, nil
}

func (p *probeConn) send(v any) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	_ = p.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return p.ws.WriteJSON(v)
}

// errHello is a connection that did not say hello (or, resuming, did not
// say resumed).
var errHello = errors.New("hello")

// join joins room and waits for joined, before any reader runs.
func (p *probeConn) join(room string) error {
	if err := p.send(map[string]any{"type": "join", "room": room, "id": "j"}); err != nil {
		return err
	}
	_ = p.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer p.ws.SetReadDeadline(time.Time{})
	for {
		var m probeMsg
		if err := p.ws.ReadJSON(&m); err != nil {
			return err
		}
		if m.Seq > 0 {
			p.last.Store(m.Seq)
		}
		switch m.Type {
		case "joined":
			return nil
		case "error":
			return fmt.Errorf("join %s: %s", room, m.Code)
		}
	}
}

// read runs fn on every message until the connection ends.
func (p *probeConn) read(fn func(*probeMsg)) {
	defer close(p.ended)
	for {
		var m probeMsg
		if err := p.ws.ReadJSON(&m); err != nil {
			return
		}
		if m.Seq > 0 {
			p.last.Store(m.Seq)
		}
		fn(&m)
	}
}

// probePair is a sender and a receiver in a room of two; the receiver is
// on a node whose clients the storm drops.
type probePair struct {
	sender, recv *probeConn // recv is replaced by its resume, under mu
	to           string     // the receiver's peer id, the same after a resume
	mu           sync.Mutex
	acked        map[int64]bool
	got          map[int64]int
	errs         map[string]int64
}

// runStorm drops every client of the first o.stormNodes nodes at once
// (the workers' and the probe receivers'), and has them resume, on the
// next node with -cluster. Meanwhile probe senders on another node keep
// sending to the receivers, with an id so that each message is acked, and
// fresh clients join rooms on the first node. It reports whether every
// acked message reached its receiver exactly once, how long the resumes
// took, and how fast the fresh joins were answered.
func runStorm(ctx context.Context, g *group, workers []*workerProc, o options) (*stormResult, error) {
	n := len(g.nodes)
	move := n > 1
	recvNode := 0
	sendNode := o.stormNodes % n // a node the storm does not touch, when there is one
	pairs := make([]*probePair, max(o.probePairs, 1))
	for i := range pairs {
		recv, err := dialProbe(ctx, g.nodes[recvNode].url, "", 0)
		if err != nil {
			return nil, fmt.Errorf("probe receiver: %w", err)
		}
		room := fmt.Sprintf("storm-probe-%d", i)
		if err := recv.join(room); err != nil {
			return nil, err
		}
		sender, err := dialProbe(ctx, g.nodes[sendNode].url, "", 0)
		if err != nil {
			return nil, fmt.Errorf("probe sender: %w", err)
		}
		if err := sender.join(room); err != nil {
			return nil, err
		}
		pr := &probePair{sender: sender, recv: recv, to: recv.peer, acked: map[int64]bool{}, got: map[int64]int{}, errs: map[string]int64{}}
		pairs[i] = pr
		go recv.read(pr.onRecv)
		go sender.read(pr.onSender)
	}
	defer func() {
		for _, pr := range pairs {
			pr.sender.ws.Close()
			pr.recv.ws.Close()
		}
	}()

	// Senders: one goroutine each, at o.probeRate, until stopSend.
	sendCtx, stopSend := context.WithCancel(ctx)
	defer stopSend()
	var senders sync.WaitGroup
	interval := time.Duration(float64(time.Second) / o.probeRate)
	for i, pr := range pairs {
		senders.Go(func() {
			select { // spread the ticks
			case <-sendCtx.Done():
				return
			case <-time.After(time.Duration(i) * interval / time.Duration(len(pairs))):
			}
			t := time.NewTicker(interval)
			defer t.Stop()
			for k := int64(1); ; k++ {
				select {
				case <-sendCtx.Done():
					return
				case <-t.C:
				}
				if pr.sender.send(map[string]any{"type": "message", "to": pr.to, "id": k, "data": map[string]int64{"n": k}}) != nil {
					return
				}
			}
		})
	}
	if err := sleepCtx(ctx, time.Second); err != nil {
		return nil, err
	}

	// The storm: workers drop theirs, this process its receivers, at once.
	st := &stormResult{probes: len(pairs), sendErrors: map[string]int64{}, freshFailed: map[string]int{}}
	profiled := make(chan error, 2)
	for _, pr := range []struct{ path, file string }{{"profile", o.stormProfile}, {"trace", o.stormTrace}} {
		if pr.file == "" {
			profiled <- nil
			continue
		}
		go func() {
			profiled <- fetchProfile(ctx, "http://"+g.nodes[0].metrics+"/debug/pprof/"+pr.path+"?seconds=5", pr.file)
		}()
	}
	// -timeout bounds the storm too: the workers' answers are read
	// without a context, so stopping them is what ends those reads.
	stopWorkers := context.AfterFunc(ctx, func() {
		for _, w := range workers {
			w.p.Stop()
		}
	})
	defer stopWorkers()
	cpu0 := stormTicks(g, workers)
	stormStart := time.Now()
	cmd := fmt.Sprintf("storm %d %d\n", o.stormNodes, map[bool]int{false: 0, true: 1}[move])
	for _, w := range workers {
		if _, err := w.stdin.Write([]byte(cmd)); err != nil {
			return nil, err
		}
	}
	var probeResume sync.WaitGroup
	var probeFailed atomic.Int64
	for _, pr := range pairs {
		probeResume.Go(func() {
			pr.mu.Lock()
			old := pr.recv
			pr.mu.Unlock()
			old.ws.UnderlyingConn().Close()
			<-old.ended
			to := recvNode
			if move {
				to = (recvNode + 1) % n
			}
			for deadline, try := time.Now().Add(30*time.Second), 0; ; try++ {
				nc, err := dialProbe(ctx, g.nodes[to].url, old.token, old.last.Load())
				if err == nil {
					pr.mu.Lock()
					pr.recv = nc
					pr.mu.Unlock()
					go nc.read(pr.onRecv)
					return
				}
				if time.Now().After(deadline) || ctx.Err() != nil {
					probeFailed.Add(1)
					return
				}
				time.Sleep(retryDelay(err, try))
			}
		})
	}
	// Fresh clients join on the first node until the workers are done, and
	// for freshMin at least, for a sample worth a p99.
	freshCtx, stopFresh := context.WithCancel(ctx)
	var fresh sync.WaitGroup
	var freshMu sync.Mutex
	fresh.Go(func() {
		t := time.NewTicker(time.Duration(float64(time.Second) / o.stormFresh))
		defer t.Stop()
		for i := 0; ; i++ {
			select {
			case <-freshCtx.Done():
				return
			case <-t.C:
			}
			fresh.Go(func() {
				f, err := freshJoin(ctx, g.nodes[0].url, fmt.Sprintf("storm-fresh-%d", i), &st.freshRefused)
				freshMu.Lock()
				defer freshMu.Unlock()
				if err != nil {
					st.freshFailed[freshCause(err)]++
					return
				}
				st.fresh = append(st.fresh, f.join)
				st.freshSlow = append(st.freshSlow, freshAt{f.join, f.joinAt.Sub(stormStart)})
				st.freshConnect = append(st.freshConnect, f.connect)
				st.freshDoor = append(st.freshDoor, f.door)
			})
		}
	})
	for _, w := range workers {
		line, err := w.read()
		if err != nil {
			stopFresh()
			return nil, err
		}
		f := strings.Fields(line)
		if len(f) != 6 || f[0] != "stormed" {
			stopFresh()
			return nil, fmt.Errorf("%s: %s", w.p.Name, line)
		}
		v := make([]int, 5)
		for i := range v {
			v[i], _ = strconv.Atoi(f[i+1])
		}
		st.dropped += v[0]
		st.resumed += v[1]
		st.refused += v[2]
		st.failed += v[3]
		st.slowest = max(st.slowest, time.Duration(v[4])*time.Millisecond)
	}
	st.cpu = stormTicks(g, workers).sub(cpu0)
	st.cpu.wall = time.Since(stormStart)
	probeResume.Wait()
	st.failed += int(probeFailed.Load())
	if err := errors.Join(<-profiled, <-profiled); err != nil {
		stopFresh()
		return nil, fmt.Errorf("profile: %w", err)
	}
	_ = sleepCtx(ctx, time.Until(stormStart.Add(freshMin)))
	stopFresh()
	fresh.Wait()
	slices.Sort(st.fresh)
	slices.SortFunc(st.freshSlow, func(a, b freshAt) int { return cmp.Compare(b.join, a.join) })
	st.freshSlow = st.freshSlow[:min(len(st.freshSlow), 5)]
	slices.Sort(st.freshConnect)
	slices.Sort(st.freshDoor)

	// Keep sending a little past the storm, then let the last arrive.
	if err := sleepCtx(ctx, 2*time.Second); err != nil {
		return nil, err
	}
	stopSend()
	senders.Wait()
	_ = sleepCtx(ctx, 3*time.Second)
	for _, pr := range pairs {
		pr.mu.Lock()
		for k := range pr.acked {
			st.acked++
			switch c := pr.got[k]; {
			case c == 0:
				st.missing++
			case c > 1:
				st.duplicated++
			}
		}
		for k, c := range pr.got {
			st.delivered += int64(c)
			if c > 1 && !pr.acked[k] {
				st.duplicated++
			}
		}
		for code, c := range pr.errs {
			st.sendErrors[code] += c
		}
		pr.mu.Unlock()
	}
	return st, nil
}

func (pr *probePair) onRecv(m *probeMsg) {
	if m.Type != "message" {
		return
	}
	pr.mu.Lock()
	pr.got[m.Data.N]++
	pr.mu.Unlock()
}

func (pr *probePair) onSender(m *probeMsg) {
	switch m.Type {
	case "ack":
		if k, err := strconv.ParseInt(string(m.ID), 10, 64); err == nil {
			pr.mu.Lock()
			pr.acked[k] = true
			pr.mu.Unlock()
		}
	case "error":
		pr.mu.Lock()
		pr.errs[m.Code]++
		pr.mu.Unlock()
	}
}

// freshTimes are one fresh client's: connect is dial → hello of the
// attempt that got in, door the same from its first attempt (waits after
// 503s included), join is join → joined on the established connection.
type freshTimes struct {
	connect, door, join time.Duration
	joinAt              time.Time // when the join was sent
}

// Failure causes of fresh clients, counted apart.
var (
	errFreshRefused = errors.New("still 503 after 30 s of retries")
	errFreshConnect = errors.New("connect")
	errFreshJoin    = errors.New("join")
)

// freshJoin is a new client during the storm, as a browser's would be: it
// connects (a 503, max_opening's busy or another configured limit, is
// retried after its Retry-After, jittered, and counted apart), reads
// hello, then joins room on the established connection; it returns its
// times and closes.
func freshJoin(ctx context.Context, u, room string, refused *atomic.Int64) (freshTimes, error) {
	var f freshTimes
	var p *probeConn
	var err error
	first := time.Now()
	for deadline, try := first.Add(30*time.Second), 0; ; try++ {
		t0 := time.Now()
		p, err = dialProbe(ctx, u, "", 0)
		if err == nil {
			f.connect, f.door = time.Since(t0), time.Since(first)
			break
		}
		if !errors.Is(err, errRefusedByLimit) {
			if !errors.Is(err, errHello) {
				err = fmt.Errorf("%w: %w", errFreshConnect, err)
			}
			return f, err
		}
		refused.Add(1)
		if time.Now().After(deadline) {
			return f, fmt.Errorf("%w: %w", errFreshRefused, err)
		}
		if sleepCtx(ctx, retryDelay(err, try)) != nil {
			return f, ctx.Err()
		}
	}
	defer func() {
		_ = p.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		p.ws.Close()
	}()
	start := time.Now()
	f.joinAt = start
	if err := p.join(room); err != nil {
		return f, fmt.Errorf("%w: %w", errFreshJoin, err)
	}
	f.join = time.Since(start)
	return f, nil
}

// slowJoins formats the slowest fresh joins.
func slowJoins(fs []freshAt) string {
	var b strings.Builder
	for i, f := range fs {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s at +%.2fs", ms(f.join), f.at.Seconds())
	}
	return b.String()
}

// freshCause names why a fresh client failed, for the report: a bounded
// set of words, not the error text.
func freshCause(err error) string {
	var ne net.Error
	timeout := errors.As(err, &ne) && ne.Timeout()
	switch {
	case errors.Is(err, errFreshRefused):
		return "503 for 30 s"
	case errors.Is(err, errHello):
		return "no hello"
	case errors.Is(err, errFreshJoin) && timeout:
		return "join unanswered in 10 s"
	case errors.Is(err, errFreshJoin) && strings.Contains(err.Error(), "join "):
		return "join answered error"
	case errors.Is(err, errFreshJoin):
		return "closed before joined"
	case errors.Is(err, errFreshConnect) && timeout:
		return "connect timed out"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused (TCP)"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, errFreshConnect):
		return "connect failed"
	}
	return "other"
}

// stormLines reports the storm against the targets.
func (st *stormResult) lines(o options, nodes int) []string {
	where := "on the same node"
	if nodes > 1 {
		where = "spread over the other nodes"
	}
	q := func(f float64) string { return ms(sigload.Quantile(st.fresh, f)) }
	qc := func(d []time.Duration, f float64) string { return ms(sigload.Quantile(d, f)) }
	return []string{
		fmt.Sprintf("storm: %d clients of %d node(s) dropped at once (sockets closed, no close frame) and resumed %s: %d resumed, %d answers 503 (configured limits, retried), %d not back; slowest worker %v; %d probe receivers resumed too",
			st.dropped, o.stormNodes, where, st.resumed, st.refused, st.failed, st.slowest.Round(time.Millisecond), st.probes),
		fmt.Sprintf("storm probes: %d messages acked, %d deliveries, %d acked but missing, %d duplicated; send errors %v",
			st.acked, st.delivered, st.missing, st.duplicated, st.sendErrors),
		fmt.Sprintf("storm fresh joins on node 1 (%g a second, through the storm and at least %v): %d answered (join → joined on the established connection: p50 %s, p99 %s, max %s), %d failed %v, %d answers 503 at the door (retried after Retry-After, jittered)",
			o.stormFresh, freshMin, len(st.fresh), q(0.5), q(0.99), q(1), st.freshFailures(), st.freshFailed, st.freshRefused.Load()),
		fmt.Sprintf("storm fresh connects on node 1: dial → hello p50 %s, p99 %s, max %s; from the first dial, 503 waits included: p50 %s, p99 %s, max %s",
			qc(st.freshConnect, 0.5), qc(st.freshConnect, 0.99), qc(st.freshConnect, 1), qc(st.freshDoor, 0.5), qc(st.freshDoor, 0.99), qc(st.freshDoor, 1)),
		"storm fresh joins, the slowest (join → joined, sent at + from the storm's start): " + slowJoins(st.freshSlow),
		st.cpu.line(),
	}
}

// fetchProfile writes what url answers (a pprof profile) to file.
func fetchProfile(ctx context.Context, url, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// freshFailures is how many fresh clients failed, for any cause.
func (st *stormResult) freshFailures() int {
	n := 0
	for _, c := range st.freshFailed {
		n += c
	}
	return n
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }
