// Package cluster runs icegate's signaling as a cluster the way a user
// would: several `icegate serve` processes on one real redis-server,
// clients on different nodes, and nodes or Redis killed under them.
//
// Without redis-server the tests skip, unless ICEGATE_REQUIRE_REDIS=1 (as
// `make test` sets), when they fail.
package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"icegate/internal/icegatebin"
	"icegate/internal/redistest"
	"icegate/internal/testutil"
)

// bin is the icegate binary, built once by TestMain.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "icegate-cluster-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "icegate")
	if err := icegatebin.Build(context.Background(), bin, "cluster-test"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Timings short enough for tests: a dead node is noticed after
// nodeTimeout, and its peers are held for resumeGrace after that.
const (
	nodeTimeout = 2 * time.Second
	resumeGrace = 3 * time.Second
)

// node is one `icegate serve` process.
type node struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	http   string // host:port of its HTTP listener
	turn   int    // its TURN port (listen.port, UDP and TCP)
	stderr *testutil.SyncBuffer
	done   chan struct{}
}

// conf is what a test adds to a node's config: attributes inside its
// signaling block, and blocks at the top level.
type conf struct {
	signaling, extra string
	// cluster are attributes added inside the cluster block.
	cluster string
	// nodeTimeout replaces the package's nodeTimeout when set.
	nodeTimeout time.Duration
}

// startNode starts a node on redisURL with c added to its config, and
// waits until it is ready.
func startNode(t *testing.T, redisURL, name string, c conf) *node {
	t.Helper()
	ports := freePorts(t, 3)
	httpPort, turnPort, tlsPort := ports[0], ports[1], ports[2]
	timeout := nodeTimeout
	if c.nodeTimeout != 0 {
		timeout = c.nodeTimeout
	}
	cfg := filepath.Join(t.TempDir(), name+".hcl")
	// Ports free now, not fixed ones: other checkouts run these tests too.
	src := fmt.Sprintf(`listen {
  addresses = ["127.0.0.1"]
  port = %d
  tls_port = %d
}
relay {
  ipv4_bind = "127.0.0.1"
  ipv6_bind = ""
  private_ok = true
}
metrics { listen = "" }
http { listen = "127.0.0.1:%d" }
signaling {
  resume_grace = "%s"
%s
}
cluster {
  redis_url = %q
  node_id = %q
  node_timeout = "%s"
%s
}
shutdown_grace = "1s"
%s
`, turnPort, tlsPort, httpPort, resumeGrace, c.signaling, redisURL, name, timeout, c.cluster, c.extra)
	if err := os.WriteFile(cfg, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, name: name, http: net.JoinHostPort("127.0.0.1", strconv.Itoa(httpPort)), turn: turnPort,
		stderr: &testutil.SyncBuffer{}, done: make(chan struct{})}
	n.cmd = exec.Command(bin, "serve", "-config", cfg)
	n.cmd.Stdout, n.cmd.Stderr = n.stderr, n.stderr
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = n.cmd.Wait(); close(n.done) }()
	t.Cleanup(func() {
		n.kill(syscall.SIGKILL)
		if t.Failed() {
			t.Logf("%s's log:\n%s", name, n.stderr.String())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(n.stderr.String(), "icegate ready") {
		select {
		case <-n.done:
			t.Fatalf("%s exited:\n%s", name, n.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready:\n%s", name, n.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return n
}

// kill signals the node (SIGKILL: it dies as a crash would) and waits
// for it to exit.
func (n *node) kill(sig syscall.Signal) {
	select {
	case <-n.done:
		return
	default:
	}
	_ = n.cmd.Process.Signal(sig)
	select {
	case <-n.done:
	case <-time.After(10 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.done
	}
}

// freePorts returns n distinct ports, each free on 127.0.0.1 for TCP and
// UDP right now. The sockets that found them stay open until all are
// found: a port closed at once may be handed out again by the next
// search (a node once got the same port for HTTP and TURN over TCP).
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var held []io.Closer
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for range 50 * n {
		if len(ports) == n {
			return ports
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, l)
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			held = append(held, u)
			ports = append(ports, port)
		}
	}
	if len(ports) == n {
		return ports
	}
	t.Fatal("no free port")
	return nil
}

// peer is a /ws client of one node.
type peer struct {
	t     *testing.T
	ws    *websocket.Conn
	hello map[string]any
	in    chan map[string]any
	errc  chan error
	mu    sync.Mutex
	last  uint64 // the last seq received
}

// dial connects a peer to n, resuming with token and last when token is set.
func dial(t *testing.T, n *node, token string, last uint64) *peer {
	t.Helper()
	q := url.Values{}
	if token != "" {
		q = url.Values{"resume": {token}, "last": {strconv.FormatUint(last, 10)}}
	}
	p := dialWS(t, n, "/ws", q)
	// The client has had up to last, whatever this connection brings.
	p.mu.Lock()
	p.last = max(p.last, last)
	p.mu.Unlock()
	return p
}

// dialWS connects to path on n with query q; on /ws it reads the hello
// first (/ws/simple has none).
func dialWS(t *testing.T, n *node, path string, q url.Values) *peer {
	t.Helper()
	u := url.URL{Scheme: "ws", Host: n.http, Path: path, RawQuery: q.Encode()}
	ws, resp, err := websocket.DefaultDialer.Dial(u.String(), nil)
	if err != nil {
		t.Fatalf("dial %s: %v (%v)", n.name, err, resp)
	}
	p := &peer{t: t, ws: ws, in: make(chan map[string]any, 1024), errc: make(chan error, 1)}
	if path == "/ws" {
		if err := ws.ReadJSON(&p.hello); err != nil || p.hello["type"] != "hello" {
			t.Fatalf("hello from %s: %v %v", n.name, p.hello, err)
		}
	}
	go p.read()
	t.Cleanup(func() { ws.Close() })
	return p
}

func (p *peer) read() {
	for {
		var m map[string]any
		if err := p.ws.ReadJSON(&m); err != nil {
			p.errc <- err
			close(p.in)
			return
		}
		if s, ok := m["seq"].(float64); ok {
			p.mu.Lock()
			p.last = uint64(s)
			p.mu.Unlock()
		}
		p.in <- m
	}
}

func (p *peer) id() string    { return p.hello["peer"].(string) }
func (p *peer) token() string { return p.hello["resume_token"].(string) }
func (p *peer) lastSeq() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last
}

func (p *peer) send(format string, args ...any) {
	p.t.Helper()
	if err := p.ws.WriteMessage(websocket.TextMessage, []byte(fmt.Sprintf(format, args...))); err != nil {
		p.t.Fatalf("send: %v", err)
	}
}

// next returns the next message, failing after 5 s.
func (p *peer) next() map[string]any {
	p.t.Helper()
	select {
	case m, ok := <-p.in:
		if !ok {
			p.t.Fatalf("connection closed: %v", <-p.errc)
		}
		return m
	case <-time.After(5 * time.Second):
		p.t.Fatal("no message within 5s")
	}
	return nil
}

// expect returns the next message, which must be of type typ.
func (p *peer) expect(typ string) map[string]any {
	p.t.Helper()
	m := p.next()
	if m["type"] != typ {
		p.t.Fatalf("got %v, want a %q message", m, typ)
	}
	return m
}

// closed waits for the connection to close and returns its close code
// (-1 for anything but a close frame), skipping messages before it.
func (p *peer) closed(d time.Duration) int {
	p.t.Helper()
	code, _ := p.closedWith(d)
	return code
}

// closedWith is closed with the close frame's reason too.
func (p *peer) closedWith(d time.Duration) (int, string) {
	p.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case _, ok := <-p.in:
			if !ok {
				var ce *websocket.CloseError
				if err := <-p.errc; errors.As(err, &ce) {
					return ce.Code, ce.Text
				}
				return -1, ""
			}
		case <-deadline:
			p.t.Fatalf("still open after %v", d)
		}
	}
}

// quiet checks that nothing arrives for d and the connection stays open.
func (p *peer) quiet(d time.Duration) {
	p.t.Helper()
	select {
	case m, ok := <-p.in:
		if ok {
			p.t.Fatalf("unexpected %v", m)
		}
		p.t.Fatalf("connection closed: %v", <-p.errc)
	case <-time.After(d):
	}
}

func str(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// cluster starts redis and n nodes, each with c in its config.
func cluster(t *testing.T, n int, c conf) (*redistest.Server, []*node) {
	t.Helper()
	r := redistest.Start(t)
	nodes := make([]*node, n)
	for i := range nodes {
		nodes[i] = startNode(t, r.URL(), "node"+strconv.Itoa(i+1), c)
	}
	return r, nodes
}

// Peers on three nodes share a room: presence, directed messages and
// broadcasts cross nodes, every one acked and delivered once, in order.
func TestRoomAcrossNodes(t *testing.T) {
	_, nodes := cluster(t, 3, conf{})
	a := dial(t, nodes[0], "", 0)
	b := dial(t, nodes[1], "", 0)
	c := dial(t, nodes[2], "", 0)
	a.send(`{"type":"join","room":"call-1","id":1}`)
	if j := a.expect("joined"); str(j["peers"]) != `[]` {
		t.Fatalf("a joined: %v", j)
	}
	b.send(`{"type":"join","room":"call-1","id":1}`)
	if j := b.expect("joined"); str(j["peers"]) != `["`+a.id()+`"]` {
		t.Fatalf("b joined: %v", j)
	}
	if m := a.expect("peer-joined"); m["peer"] != b.id() {
		t.Fatalf("a's peer-joined: %v", m)
	}
	c.send(`{"type":"join","room":"call-1","id":1}`)
	if j := c.expect("joined"); str(j["peers"]) != `["`+a.id()+`","`+b.id()+`"]` {
		t.Fatalf("c joined: %v", j)
	}
	a.expect("peer-joined")
	b.expect("peer-joined")

	// Offer, answer, candidates across nodes, in the order sent.
	a.send(`{"type":"offer","to":%q,"id":"o","data":{"type":"offer","sdp":"v=0"}}`, b.id())
	a.expect("ack")
	if m := b.expect("offer"); m["from"] != a.id() {
		t.Fatalf("offer: %v", m)
	}
	b.send(`{"type":"answer","to":%q,"id":"a","data":{"type":"answer","sdp":"v=0"}}`, a.id())
	b.expect("ack")
	a.expect("answer")
	const n = 200
	for i := range n {
		a.send(`{"type":"candidate","to":%q,"id":%d,"data":{"candidate":"c%d"}}`, b.id(), i, i)
	}
	for i := range n {
		if m := a.expect("ack"); str(m["id"]) != strconv.Itoa(i) {
			t.Fatalf("ack %d: %v", i, m)
		}
		if m := b.expect("candidate"); str(m["data"]) != fmt.Sprintf(`{"candidate":"c%d"}`, i) {
			t.Fatalf("candidate %d: %v", i, m)
		}
	}
	// A broadcast reaches the two others once.
	c.send(`{"type":"broadcast","room":"call-1","id":"b","data":{"muted":true}}`)
	if m := c.expect("ack"); str(m["delivered"]) != "2" {
		t.Fatalf("broadcast ack: %v", m)
	}
	for _, p := range []*peer{a, b} {
		if m := p.expect("broadcast"); m["from"] != c.id() {
			t.Fatalf("broadcast: %v", m)
		}
	}
	// Leaving on one node is seen on the others.
	c.send(`{"type":"leave","room":"call-1","id":2}`)
	c.expect("left")
	for _, p := range []*peer{a, b} {
		if m := p.expect("peer-left"); m["peer"] != c.id() {
			t.Fatalf("peer-left: %v", m)
		}
	}
	a.quiet(200 * time.Millisecond)
	b.quiet(0)
}

// Two nodes race for the last seat of a room: exactly one wins, every
// round.
func TestCapacityRace(t *testing.T) {
	_, nodes := cluster(t, 3, conf{})
	for round := range 20 {
		room := "race-" + strconv.Itoa(round)
		first := dial(t, nodes[0], "", 0)
		first.send(`{"type":"join","room":%q,"max_peers":2}`, room)
		first.expect("joined")
		x, y := dial(t, nodes[1], "", 0), dial(t, nodes[2], "", 0)
		var wg sync.WaitGroup
		for _, p := range []*peer{x, y} {
			wg.Add(1)
			go func() { defer wg.Done(); p.send(`{"type":"join","room":%q,"id":1}`, room) }()
		}
		wg.Wait()
		won := 0
		for _, p := range []*peer{x, y} {
			switch m := p.next(); {
			case m["type"] == "joined":
				won++
			case m["type"] == "error" && m["code"] == "room-full":
			default:
				t.Fatalf("round %d: %v", round, m)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d joined a room with one seat left", round, won)
		}
		for _, p := range []*peer{first, x, y} {
			p.ws.Close()
		}
	}
}

// A node dies (SIGKILL). One of its peers resumes on another node with
// every acked message, those sent while it was held included; the room
// is told the other left within node_timeout + resume_grace.
func TestNodeDeath(t *testing.T) {
	_, nodes := cluster(t, 3, conf{})
	a := dial(t, nodes[0], "", 0)
	b := dial(t, nodes[1], "", 0) // will resume
	c := dial(t, nodes[1], "", 0) // will not
	for _, p := range []*peer{a, b, c} {
		p.send(`{"type":"join","room":"r"}`)
		p.expect("joined")
	}
	a.expect("peer-joined")
	a.expect("peer-joined")
	b.expect("peer-joined")
	a.send(`{"type":"message","to":%q,"id":0,"data":0}`, b.id())
	a.expect("ack")
	b.expect("message")
	last := b.lastSeq()

	nodes[1].kill(syscall.SIGKILL)
	killed := time.Now()
	// Every message acked to a is kept for b, whatever a's ack says
	// (held once the cluster noticed).
	for i := 1; i <= 10; i++ {
		a.send(`{"type":"message","to":%q,"id":%d,"data":%d}`, b.id(), i, i)
		if m := a.expect("ack"); str(m["id"]) != strconv.Itoa(i) {
			t.Fatalf("ack %d: %v", i, m)
		}
		time.Sleep(nodeTimeout / 5)
	}
	b2 := dial(t, nodes[2], b.token(), last)
	if b2.hello["resumed"] != true || b2.id() != b.id() || str(b2.hello["rooms"]) != `["r"]` {
		t.Fatalf("resume on another node: %v", b2.hello)
	}
	for i := 1; i <= 10; i++ {
		if m := b2.expect("message"); str(m["data"]) != strconv.Itoa(i) {
			t.Fatalf("replayed message %d: %v", i, m)
		}
	}
	// c did not come back: peer-left, once, to a and b.
	for _, p := range []*peer{a, b2} {
		m := p.expect("peer-left")
		if m["peer"] != c.id() {
			t.Fatalf("peer-left: %v", m)
		}
	}
	if d := time.Since(killed); d > nodeTimeout+resumeGrace+3*time.Second {
		t.Errorf("peer-left %v after the kill, want within node_timeout + resume_grace (%v)", d, nodeTimeout+resumeGrace)
	}
	a.quiet(time.Second)
	b2.quiet(0)
}

// Redis stops under a running cluster: messages get cluster-unavailable,
// never an ack, connections stay open; after Redis is back, messages flow
// again.
func TestRedisRestart(t *testing.T) {
	r, nodes := cluster(t, 2, conf{})
	a := dial(t, nodes[0], "", 0)
	b := dial(t, nodes[1], "", 0)
	for _, p := range []*peer{a, b} {
		p.send(`{"type":"join","room":"r"}`)
		p.expect("joined")
	}
	a.expect("peer-joined")
	r.Stop()
	for i := range 3 {
		a.send(`{"type":"message","to":%q,"id":%d,"data":%d}`, b.id(), i, i)
		if m := a.next(); m["type"] != "error" || m["code"] != "cluster-unavailable" {
			t.Fatalf("message with Redis down: %v", m)
		}
	}
	b.quiet(500 * time.Millisecond)
	r.Restart()
	// Redis came back empty (no persistence): the sessions are gone, so
	// clients are told to reconnect (1012), and then work as new peers.
	for _, p := range []*peer{a, b} {
		if code := p.closed(15 * time.Second); code != 1012 {
			t.Errorf("a connection whose session Redis lost closed with %d, want 1012", code)
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		a2 := dial(t, nodes[0], "", 0)
		a2.send(`{"type":"join","room":"r2","id":1}`)
		if m := a2.next(); m["type"] == "joined" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no recovery within 15s of Redis coming back")
		}
		time.Sleep(200 * time.Millisecond)
	}
	b2 := dial(t, nodes[1], "", 0)
	a3 := dial(t, nodes[0], "", 0)
	for _, p := range []*peer{a3, b2} {
		p.send(`{"type":"join","room":"r3"}`)
		p.expect("joined")
	}
	a3.expect("peer-joined")
	a3.send(`{"type":"message","to":%q,"id":1,"data":"back"}`, b2.id())
	a3.expect("ack")
	if m := b2.expect("message"); m["data"] != "back" {
		t.Fatalf("after recovery: %v", m)
	}
}
