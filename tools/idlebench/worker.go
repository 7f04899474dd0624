package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// worker is one client process: it opens -n connections, connection i to
// the i-th of the comma-separated -url list in turn (so that with several
// nodes the two peers of a room sit on different nodes), each from one of
// the -src addresses in turn, says hello and joins a room of two in the
// server's dialect, then only answers pings. It prints "up N ERRORS" once
// all are open, then obeys its stdin line by line:
//
//	storm K MOVE   drop (without a close frame) every connection to the first
//	               K URLs and reconnect each with resume (icegate), to one of
//	               the other URLs in turn when MOVE is 1; prints "stormed DROPPED RESUMED
//	               REFUSED FAILED MILLISECONDS"
//	send R MS      every connection sends R messages a second to the other
//	               of its room for MS milliseconds (icegate), then waits for
//	               the last to arrive; prints "sent SENT DELIVERED ERRORS
//	               LATE HISTOGRAM" (see sendPhase)
//
// At the end of stdin it prints "lost N" (connections the server ended
// meanwhile), closes them and exits. The same code is the client of every
// server measured.
func worker(args []string) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	urlList := fs.String("url", "", "WebSocket URLs, comma-separated")
	dialect := fs.String("dialect", "icegate", "icegate (/ws), sio (icegate's socket.io over an Engine.IO WebSocket) or centrifugo")
	n := fs.Int("n", 0, "connections")
	src := fs.String("src", "127.0.0.1", "comma-separated source addresses")
	prefix := fs.String("room-prefix", "r-", "room name prefix")
	parallel := fs.Int("parallel", 32, "connections opened at once")
	if err := fs.Parse(args); err != nil {
		return err
	}
	urls := strings.Split(*urlList, ",")
	srcs := strings.Split(*src, ",")
	var lost atomic.Int64
	lostWhy.start = time.Now()
	conns := make([]*client, *n)
	var (
		mu      sync.Mutex
		errs    int
		lastErr error
	)
	sem := make(chan struct{}, *parallel)
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	for i := range *n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			var c *client
			var err error
			for try := range 3 { // a refused connect is retried: the count is what it is about
				c, err = open(ctx, urls[i%len(urls)], *dialect, srcs[i%len(srcs)], fmt.Sprintf("%s%d", *prefix, i/2), "", 0)
				if err == nil {
					break
				}
				time.Sleep(time.Duration(try+1) * 200 * time.Millisecond)
			}
			if err != nil {
				mu.Lock()
				errs++
				lastErr = err
				mu.Unlock()
				return
			}
			c.node, c.src = i%len(urls), srcs[i%len(srcs)]
			conns[i] = c
			go c.idle(*dialect, &lost)
		}()
	}
	wg.Wait()
	if errs > *n/100 {
		return fmt.Errorf("%d of %d connections failed, the last: %v", errs, *n, lastErr)
	}
	fmt.Printf("up %d %d\n", *n-errs, errs)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) == 3 && f[0] == "storm" {
			k, _ := strconv.Atoi(f[1])
			fmt.Println(storm(ctx, conns, urls, k, f[2] == "1", &lost))
		}
		if len(f) == 3 && f[0] == "send" {
			rate, _ := strconv.ParseFloat(f[1], 64)
			ms, _ := strconv.Atoi(f[2])
			fmt.Println(sendPhase(ctx, conns, rate, time.Duration(ms)*time.Millisecond))
		}
	}
	fmt.Printf("lost %d%s\n", lost.Load(), lostWhy.String())
	for _, c := range conns {
		if c != nil {
			c.stop.Store(true)
			_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			c.ws.Close()
		}
	}
	return nil
}

// client is one of a worker's connections.
type client struct {
	ws        *websocket.Conn
	peer      string // its peer id, from the hello (icegate)
	node      int    // index of the URL it is connected to
	src       string // its source address
	token     string // the resume token of its last hello (icegate)
	lastSeq   atomic.Uint64
	stop      atomic.Bool // set before the worker closes it on purpose
	idleEnded chan struct{}
}

// storm drops every connection to the first k URLs at once, by closing
// its socket without a close frame (a network failure, as far as the
// server can tell: the session is held for its resume grace), and
// reconnects each with its resume token and last seq, spread over the
// other URLs when move is set. A reconnect refused with 503 (max_opening's
// busy, max_connections or the descriptor reserve: the configured limits)
// is retried after its Retry-After, jittered, and any other failure after
// a jittered exponential backoff, as a browser's reconnect logic does
// (retryDelay); REFUSED counts the 503 answers, FAILED the connections not
// back at the end.
func storm(ctx context.Context, conns []*client, urls []string, k int, move bool, lost *atomic.Int64) string {
	var victims []*client
	for _, c := range conns {
		if c != nil && c.node < k {
			victims = append(victims, c)
		}
	}
	start := time.Now()
	for _, c := range victims {
		c.stop.Store(true)
		c.ws.UnderlyingConn().Close()
	}
	var resumed, refused, failed atomic.Int64
	sem := make(chan struct{}, 256)
	var wg sync.WaitGroup
	for v, c := range victims {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			<-c.idleEnded // its reader has seen the close: lastSeq is final
			node := c.node
			if move && len(urls) > 1 {
				// Spread over the other nodes: with every node's clients
				// dropped, each node loses and gains about as many.
				node = (node + 1 + v%(len(urls)-1)) % len(urls)
			}
			deadline := time.Now().Add(30 * time.Second)
			for try := 0; ; {
				nc, err := open(ctx, urls[node], "icegate", c.src, "", c.token, c.lastSeq.Load())
				if err == nil {
					c.ws, c.node, c.token = nc.ws, node, nc.token
					c.stop.Store(false)
					c.idleEnded = nc.idleEnded
					resumed.Add(1)
					go c.idle("icegate", lost)
					return
				}
				if errors.Is(err, errRefusedByLimit) {
					refused.Add(1)
				}
				if time.Now().After(deadline) || ctx.Err() != nil {
					failed.Add(1)
					return
				}
				time.Sleep(retryDelay(err, try))
				try++
			}
		}()
	}
	wg.Wait()
	return fmt.Sprintf("stormed %d %d %d %d %d", len(victims), resumed.Load(), refused.Load(), failed.Load(), time.Since(start).Milliseconds())
}

// errRefusedByLimit is a 503 before the upgrade: a configured limit.
var errRefusedByLimit = errors.New("refused with 503")

// refusedError is a 503 before the upgrade, with the wait its Retry-After
// asked for (0 when it named none).
type refusedError struct {
	retryAfter time.Duration
	err        error
}

func (e *refusedError) Error() string        { return fmt.Sprintf("%v: %v", errRefusedByLimit, e.err) }
func (e *refusedError) Is(target error) bool { return target == errRefusedByLimit }

// refusal makes the error of a failed dial: a *refusedError for a 503.
func refusal(resp *http.Response, err error) error {
	if resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		return err
	}
	e := &refusedError{err: err}
	// RFC 9110 §10.2.3: delay-seconds (an HTTP-date is not what a
	// server says for a second's wait; it is taken as none).
	if n, perr := strconv.Atoi(resp.Header.Get("Retry-After")); perr == nil && n >= 0 {
		e.retryAfter = time.Duration(n) * time.Second
	}
	return e
}

// retryDelay is how long a client waits before its attempt try+1 after
// err, as a browser's reconnect logic would: a 503's Retry-After (1 s when
// it named none) spread over half to one and a half of it, so that a crowd
// refused together does not come back together; any other failure 100 ms
// doubled per attempt up to 2 s, jittered the same way.
func retryDelay(err error, try int) time.Duration {
	var d time.Duration
	if re, ok := errors.AsType[*refusedError](err); ok {
		d = re.retryAfter
		if d <= 0 {
			d = time.Second
		}
	} else {
		d = min(100*time.Millisecond<<min(try, 5), 2*time.Second)
	}
	return d/2 + rand.N(d)
}

// open dials url from the source address and goes through the dialect's
// handshake: icegate's hello and join (answered by joined), socket.io's
// (openSIO), Centrifugo's connect and subscribe commands (answered by
// replies with their ids).
//
// With resume set (icegate) it reconnects the session of that token
// instead, sending last as the last seq received, and joins nothing: the
// hello must say resumed.
func open(ctx context.Context, url, dialect, src, room, resume string, last uint64) (*client, error) {
	d := websocket.Dialer{
		NetDialContext:   (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}).DialContext,
		TLSClientConfig:  &tls.Config{InsecureSkipVerify: true},
		HandshakeTimeout: 10 * time.Second,
		ReadBufferSize:   1024, WriteBufferSize: 1024,
	}
	if resume != "" {
		url += "?resume=" + neturl.QueryEscape(resume) + "&last=" + strconv.FormatUint(last, 10)
	}
	c, resp, err := d.DialContext(ctx, url, nil)
	if err != nil {
		return nil, refusal(resp, err)
	}
	cl := &client{ws: c, idleEnded: make(chan struct{})}
	_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
	fail := func(err error) (*client, error) { c.Close(); return nil, err }
	switch dialect {
	case "icegate":
		var hello struct {
			Type, Peer  string
			ResumeToken string `json:"resume_token"`
			Resumed     bool
		}
		if err := c.ReadJSON(&hello); err != nil || hello.Type != "hello" {
			return fail(fmt.Errorf("hello: %v %q", err, hello.Type))
		}
		cl.token, cl.peer = hello.ResumeToken, hello.Peer
		if resume != "" {
			if !hello.Resumed {
				return fail(errors.New("hello: not resumed"))
			}
			cl.lastSeq.Store(last)
			break
		}
		if err := c.WriteJSON(map[string]string{"type": "join", "room": room}); err != nil {
			return fail(err)
		}
		for {
			var m struct {
				Type, Code string
				Seq        uint64
			}
			if err := c.ReadJSON(&m); err != nil {
				return fail(fmt.Errorf("join: %w", err))
			}
			if m.Seq > 0 {
				cl.lastSeq.Store(m.Seq)
			}
			if m.Type == "joined" {
				break
			}
			if m.Type == "error" {
				return fail(fmt.Errorf("join: error %s", m.Code))
			}
		}
	case "centrifugo":
		if err := c.WriteMessage(websocket.TextMessage, []byte(`{"id":1,"connect":{}}`+"\n"+`{"id":2,"subscribe":{"channel":"`+room+`"}}`)); err != nil {
			return fail(err)
		}
		got := map[int]bool{}
		for !got[1] || !got[2] {
			_, b, err := c.ReadMessage()
			if err != nil {
				return fail(fmt.Errorf("connect/subscribe: %w", err))
			}
			for line := range strings.Lines(string(b)) {
				var m struct {
					ID    int             `json:"id"`
					Error json.RawMessage `json:"error"`
				}
				if json.Unmarshal([]byte(line), &m) != nil {
					continue
				}
				if m.Error != nil {
					return fail(fmt.Errorf("centrifugo: %s", m.Error))
				}
				got[m.ID] = true
			}
		}
	case "sio":
		if err := openSIO(c, room); err != nil {
			return fail(err)
		}
	default:
		return fail(errors.New("unknown dialect " + dialect))
	}
	_ = c.SetReadDeadline(time.Time{})
	return cl, nil
}

// openSIO goes through socket.io's opening on an Engine.IO v4 WebSocket,
// as socket.io-client 4 does over its websocket-only transport: the
// Engine.IO open packet ("0{…}"), socket.io's CONNECT to the main
// namespace ("40", answered "40{"sid":…}"), then the rooms vocabulary's
// join ('42["join",room]', answered with the joined event). The events
// the server sends meanwhile (ice-servers) are passed over; full and error
// fail the connection.
func openSIO(c *websocket.Conn, room string) error {
	_, b, err := c.ReadMessage()
	if err != nil {
		return fmt.Errorf("engine.io open: %w", err)
	}
	if len(b) == 0 || b[0] != '0' {
		return fmt.Errorf("engine.io open packet %q", b)
	}
	if err := c.WriteMessage(websocket.TextMessage, []byte("40")); err != nil {
		return err
	}
	connected := false
	for {
		_, b, err := c.ReadMessage()
		if err != nil {
			return fmt.Errorf("socket.io connect/join: %w", err)
		}
		switch {
		case len(b) >= 2 && string(b[:2]) == "40":
			if connected {
				continue
			}
			connected = true
			ev, _ := json.Marshal([]string{"join", room})
			if err := c.WriteMessage(websocket.TextMessage, append([]byte("42"), ev...)); err != nil {
				return err
			}
		case len(b) >= 2 && string(b[:2]) == "44":
			return fmt.Errorf("socket.io CONNECT refused: %s", b[2:])
		case len(b) >= 1 && b[0] == '2': // a ping before the join was answered
			if err := c.WriteMessage(websocket.TextMessage, []byte("3")); err != nil {
				return err
			}
		case len(b) >= 2 && string(b[:2]) == "42":
			var ev []json.RawMessage
			var name string
			if json.Unmarshal(b[2:], &ev) != nil || len(ev) == 0 || json.Unmarshal(ev[0], &name) != nil {
				return fmt.Errorf("socket.io event %q", b)
			}
			switch name {
			case "joined":
				return nil
			case "full", "error":
				return fmt.Errorf("join: %s", b[2:])
			}
		case len(b) >= 1 && b[0] == '1':
			return errors.New("engine.io close before the join")
		}
	}
}

// idle reads until the connection ends, answering pings and keeping the
// last seq (icegate) for a resume: gorilla answers WebSocket pings
// (icegate) by itself; Engine.IO's pings (sio) are answered with its pong;
// Centrifugo's protocol pings are an empty JSON
// object, answered with one. An end the worker did not cause counts as lost.
func (c *client) idle(dialect string, lost *atomic.Int64) {
	ws, ended := c.ws, c.idleEnded
	defer close(ended)
	for {
		_, b, err := ws.ReadMessage()
		if err != nil {
			if !c.stop.Load() {
				lost.Add(1)
				lostWhy.add(err)
			}
			return
		}
		switch dialect {
		case "icegate":
			var m struct {
				Type string
				Seq  uint64
				Data struct{ T int64 }
			}
			if json.Unmarshal(b, &m) != nil {
				continue
			}
			if m.Seq > 0 {
				c.lastSeq.Store(m.Seq)
			}
			switch m.Type {
			case "message":
				if m.Data.T > 0 {
					active.delivered(time.Since(time.Unix(0, m.Data.T)))
				}
			case "error":
				active.errors.Add(1)
			}
		case "sio":
			// Engine.IO's heartbeat: the server's ping "2" is answered
			// with a pong "3", or it ends the session after pingTimeout.
			if len(b) == 1 && b[0] == '2' {
				if err := ws.WriteMessage(websocket.TextMessage, []byte("3")); err != nil {
					if !c.stop.Load() {
						lost.Add(1)
					}
					return
				}
			}
		case "centrifugo":
			if strings.TrimSpace(string(b)) == "{}" {
				if err := ws.WriteMessage(websocket.TextMessage, []byte("{}")); err != nil {
					if !c.stop.Load() {
						lost.Add(1)
					}
					return
				}
			}
		}
	}
}

// lostWhy tells how the connections counted lost ended, for the "lost"
// line: the close code the server sent (1000 when its reader gave up,
// for example on a pong later than its read timeout; 1008 when the
// client did not read fast enough), or how the stream ended without one
// (close1006: the server dropped the socket), and when the first and the
// last ended, in seconds after the worker started.
var lostWhy lostReasons

type lostReasons struct {
	start       time.Time
	mu          sync.Mutex
	n           map[string]int
	first, last time.Duration
}

func (l *lostReasons) add(err error) {
	why := "other"
	var ce *websocket.CloseError
	var ne net.Error
	switch {
	case errors.As(err, &ce):
		why = fmt.Sprintf("close%d", ce.Code)
	case errors.As(err, &ne) && ne.Timeout():
		why = "timeout"
	case errors.Is(err, io.EOF):
		why = "eof"
	case errors.Is(err, syscall.ECONNRESET):
		why = "reset"
	}
	at := time.Since(l.start)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n == nil {
		l.n = map[string]int{}
		l.first = at
	}
	l.n[why]++
	l.last = at
}

// String is " why=count ... first=Ns last=Ns", or "" when none was lost.
func (l *lostReasons) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.n) == 0 {
		return ""
	}
	var b strings.Builder
	for _, why := range slices.Sorted(maps.Keys(l.n)) {
		fmt.Fprintf(&b, " %s=%d", why, l.n[why])
	}
	fmt.Fprintf(&b, " first=%.0fs last=%.0fs", l.first.Seconds(), l.last.Seconds())
	return b.String()
}
