package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// worker is one client process: it opens -n connections to -url, each
// from one of the -src addresses in turn, says hello and joins a room of
// two in the server's dialect, then only answers pings. It prints
// "up N ERRORS" once all are open, waits for its stdin to close, prints
// "lost N" (connections the server ended meanwhile), closes them and
// exits. The same code is the client of every server measured.
func worker(args []string) error {
	fs := flag.NewFlagSet("worker", flag.ContinueOnError)
	url := fs.String("url", "", "WebSocket URL")
	dialect := fs.String("dialect", "icegate", "icegate or centrifugo")
	n := fs.Int("n", 0, "connections")
	src := fs.String("src", "127.0.0.1", "comma-separated source addresses")
	prefix := fs.String("room-prefix", "r-", "room name prefix")
	parallel := fs.Int("parallel", 32, "connections opened at once")
	if err := fs.Parse(args); err != nil {
		return err
	}
	srcs := strings.Split(*src, ",")
	var lost atomic.Int64
	conns := make([]*websocket.Conn, *n)
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
			var c *websocket.Conn
			var err error
			for try := range 3 { // a refused connect is retried: the count is what it is about
				c, err = open(ctx, *url, *dialect, srcs[i%len(srcs)], fmt.Sprintf("%s%d", *prefix, i/2))
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
			conns[i] = c
			go idle(c, *dialect, &lost)
		}()
	}
	wg.Wait()
	if errs > *n/100 {
		return fmt.Errorf("%d of %d connections failed, the last: %v", errs, *n, lastErr)
	}
	fmt.Printf("up %d %d\n", *n-errs, errs)
	// Hold until told to finish.
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	fmt.Printf("lost %d\n", lost.Load())
	for _, c := range conns {
		if c != nil {
			_ = c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			c.Close()
		}
	}
	return nil
}

// open dials url from the source address and goes through the dialect's
// handshake: icegate's hello and join (answered by joined), Centrifugo's
// connect and subscribe commands (answered by replies with their ids).
func open(ctx context.Context, url, dialect, src, room string) (*websocket.Conn, error) {
	d := websocket.Dialer{
		NetDialContext:   (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}).DialContext,
		TLSClientConfig:  &tls.Config{InsecureSkipVerify: true},
		HandshakeTimeout: 10 * time.Second,
		ReadBufferSize:   1024, WriteBufferSize: 1024,
	}
	c, _, err := d.DialContext(ctx, url, nil)
	if err != nil {
		return nil, err
	}
	_ = c.SetReadDeadline(time.Now().Add(15 * time.Second))
	fail := func(err error) (*websocket.Conn, error) { c.Close(); return nil, err }
	switch dialect {
	case "icegate":
		var hello struct{ Type string }
		if err := c.ReadJSON(&hello); err != nil || hello.Type != "hello" {
			return fail(fmt.Errorf("hello: %v %q", err, hello.Type))
		}
		if err := c.WriteJSON(map[string]string{"type": "join", "room": room}); err != nil {
			return fail(err)
		}
		for {
			var m struct{ Type, Code string }
			if err := c.ReadJSON(&m); err != nil {
				return fail(fmt.Errorf("join: %w", err))
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
	default:
		return fail(errors.New("unknown dialect " + dialect))
	}
	_ = c.SetReadDeadline(time.Time{})
	return c, nil
}

// idle reads until the connection ends, answering pings: gorilla answers
// WebSocket pings (icegate) by itself; Centrifugo's protocol pings are an
// empty JSON object, answered with one.
func idle(c *websocket.Conn, dialect string, lost *atomic.Int64) {
	for {
		_, b, err := c.ReadMessage()
		if err != nil {
			lost.Add(1)
			return
		}
		if dialect == "centrifugo" && strings.TrimSpace(string(b)) == "{}" {
			if err := c.WriteMessage(websocket.TextMessage, []byte("{}")); err != nil {
				lost.Add(1)
				return
			}
		}
	}
}
