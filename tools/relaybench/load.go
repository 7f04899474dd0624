package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pion/stun/v4"

	turnutils "icegate/internal/coturn"
)

// The Go load generators for what uclient cannot do: STUN Binding rate,
// allocation churn, and many allocations held open. Every socket is its own
// 5-tuple on 127.0.0.1; every wait has a deadline; nothing retransmits (a
// lost request is counted as a timeout and the loop moves on).

const (
	benchUser  = "u"
	benchPass  = "p"
	benchRealm = "bench"

	bindingTimeout = 500 * time.Millisecond
	magicCookie    = 0x2112A442 // RFC 8489 §5
	turnTimeout    = 2 * time.Second
)

// bindingRequest is a bare 20-byte Binding request with a random
// transaction id (RFC 8489 §5).
func bindingRequest() []byte {
	b := make([]byte, 20)
	putBindingHeader(b)
	_, _ = rand.Read(b[8:20])
	return b
}

// putBindingHeader writes the first 8 bytes of a Binding request without
// attributes into b: the type, length 0 and the magic cookie (RFC 8489 §5).
// The transaction id, bytes 8 to 19, is the caller's.
func putBindingHeader(b []byte) {
	binary.BigEndian.PutUint16(b[0:], 0x0001)
	binary.BigEndian.PutUint16(b[2:], 0)
	binary.BigEndian.PutUint32(b[4:], magicCookie)
}

// isBindingSuccess reports whether resp is a Binding success response to req.
func isBindingSuccess(resp, req []byte) bool {
	return len(resp) >= 20 && resp[0] == 0x01 && resp[1] == 0x01 &&
		string(resp[8:20]) == string(req[8:20])
}

// bindingResult is one closed-loop Binding run.
type bindingResult struct {
	responses, timeouts int64
	elapsed             time.Duration
}

// turnClient is one TURN client on its own UDP socket: one allocation.
type turnClient struct {
	conn         *net.UDPConn
	buf          []byte
	realm, nonce string
	integrity    stun.MessageIntegrity
}

// newTurnClient opens a client socket to the server at addr.
func newTurnClient(addr netip.AddrPort) (*turnClient, error) {
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, err
	}
	return &turnClient{conn: c, buf: make([]byte, 1500)}, nil
}

func (c *turnClient) close() { _ = c.conn.Close() }

// onLoopback is 127.0.0.1:port, where the loads that only run on loopback
// (Binding, churn, allocations held) find the server.
func onLoopback(port int) netip.AddrPort { return netip.AddrPortFrom(turnutils.Loopback, uint16(port)) }

// stunError is an error response, by code (RFC 8489 §14.8).
type stunError struct {
	code   int
	reason string
}

func (e *stunError) Error() string { return fmt.Sprintf("%d %s", e.code, e.reason) }

var errTimeout = errors.New("timeout")

// failureKey names a failed cycle for the failure counts: the error code,
// "timeout", or the error text.
func failureKey(err error) string {
	var se *stunError
	switch {
	case errors.As(err, &se):
		return strconv.Itoa(se.code)
	case errors.Is(err, errTimeout):
		return "timeout"
	}
	return err.Error()
}

// do sends one request built from setters (with credentials once the
// server has sent its realm and nonce) and returns the success response. It
// reports retry when the answer was a challenge that gave the client
// credentials to send the request again with: a 401 to a request without
// them (RFC 8489 §9.2.4) or a 438 stale nonce (§9.2.5).
func (c *turnClient) do(method stun.Method, setters ...stun.Setter) (resp *stun.Message, retry bool, err error) {
	all := []stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}
	all = append(all, setters...)
	if c.nonce != "" {
		all = append(all, stun.NewUsername(benchUser), stun.NewRealm(c.realm), stun.NewNonce(c.nonce), c.integrity)
	}
	req, err := stun.Build(all...)
	if err != nil {
		return nil, false, err
	}
	if _, err := c.conn.Write(req.Raw); err != nil {
		return nil, false, err
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(turnTimeout))
	for {
		n, err := c.conn.Read(c.buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return nil, false, errTimeout
			}
			return nil, false, err
		}
		resp := &stun.Message{Raw: append([]byte(nil), c.buf[:n]...)}
		if resp.Decode() != nil || resp.TransactionID != req.TransactionID {
			continue // not the answer to this request
		}
		if resp.Type.Class == stun.ClassSuccessResponse {
			return resp, false, nil
		}
		var ec stun.ErrorCodeAttribute
		if err := ec.GetFrom(resp); err != nil {
			return nil, false, fmt.Errorf("%s: error response without ERROR-CODE", method)
		}
		se := &stunError{code: int(ec.Code), reason: string(ec.Reason)}
		challenge := ec.Code == stun.CodeStaleNonce || (ec.Code == stun.CodeUnauthorized && c.nonce == "")
		var realm stun.Realm
		var nonce stun.Nonce
		if challenge && realm.GetFrom(resp) == nil && nonce.GetFrom(resp) == nil {
			c.realm, c.nonce = realm.String(), nonce.String()
			c.integrity = stun.NewLongTermIntegrity(benchUser, c.realm, benchPass)
			return nil, true, se
		}
		return nil, false, se
	}
}

// request is do, sent again once after a challenge.
func (c *turnClient) request(method stun.Method, setters ...stun.Setter) (*stun.Message, error) {
	resp, retry, err := c.do(method, setters...)
	if retry {
		resp, _, err = c.do(method, setters...)
	}
	return resp, err
}

// requestedTransportUDP is REQUESTED-TRANSPORT with protocol 17 (RFC 8656 §18.11).
var requestedTransportUDP = stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}}

func lifetime(seconds uint32) stun.RawAttribute {
	v := make([]byte, 4)
	binary.BigEndian.PutUint32(v, seconds)
	return stun.RawAttribute{Type: stun.AttrLifetime, Value: v}
}

type peerAddress stun.XORMappedAddress

func (a peerAddress) AddTo(m *stun.Message) error {
	return stun.XORMappedAddress(a).AddToAs(m, stun.AttrXORPeerAddress)
}

// allocate asks for a UDP relay: an unauthenticated Allocate, the 401
// challenge, then the same request with long-term MESSAGE-INTEGRITY.
func (c *turnClient) allocate() error {
	resp, err := c.request(stun.MethodAllocate, requestedTransportUDP)
	if err != nil {
		return err
	}
	var relayed stun.XORMappedAddress
	if err := relayed.GetFromAs(resp, stun.AttrXORRelayedAddress); err != nil {
		return errors.New("allocate: no XOR-RELAYED-ADDRESS")
	}
	return nil
}

// cycle is one churn cycle: allocate, permit a peer, release (Refresh with
// LIFETIME 0, RFC 8656 §7.2).
func (c *turnClient) cycle() error {
	if err := c.allocate(); err != nil {
		return err
	}
	peer := peerAddress{IP: net.IPv4(127, 0, 0, 1), Port: 9}
	if _, err := c.request(stun.MethodCreatePermission, peer); err != nil {
		return err
	}
	_, err := c.request(stun.MethodRefresh, lifetime(0))
	return err
}

// warmUp runs n churn cycles one after another on one client at a time.
func warmUp(ctx context.Context, port, n int) error {
	for range n {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		c, err := newTurnClient(onLoopback(port))
		if err != nil {
			return err
		}
		err = c.cycle()
		c.close()
		if err != nil {
			return err
		}
	}
	return nil
}

// churnResult is one allocation churn run.
type churnResult struct {
	cycles   int64
	failures map[string]int64
	elapsed  time.Duration
}

// churnLoad runs workers goroutines, each repeating a cycle on a fresh
// socket for d, and counts completed cycles and failures by cause.
func churnLoad(ctx context.Context, port, workers int, d time.Duration) (churnResult, error) {
	var cycles atomic.Int64
	var mu sync.Mutex
	failures := map[string]int64{}
	var fatal error
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && time.Now().Before(deadline) {
				c, err := newTurnClient(onLoopback(port))
				if err != nil {
					mu.Lock()
					fatal = err
					mu.Unlock()
					return
				}
				err = c.cycle()
				c.close()
				if err == nil {
					cycles.Add(1)
					continue
				}
				mu.Lock()
				failures[failureKey(err)]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if fatal == nil {
		fatal = ctx.Err()
	}
	return churnResult{cycles: cycles.Load(), failures: failures, elapsed: time.Since(start)}, fatal
}

// holdAllocations opens n allocations with workers goroutines and keeps
// them: the returned clients must be closed by the caller. Failures are
// counted, not fatal.
func holdAllocations(ctx context.Context, port, n, workers int) ([]*turnClient, map[string]int64, error) {
	var mu sync.Mutex
	var held []*turnClient
	failures := map[string]int64{}
	var fatal error
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && next.Add(1) <= int64(n) {
				c, err := newTurnClient(onLoopback(port))
				if err != nil {
					mu.Lock()
					fatal = err
					mu.Unlock()
					return
				}
				err = c.allocate()
				mu.Lock()
				if err != nil {
					failures[failureKey(err)]++
					c.close()
				} else {
					held = append(held, c)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if fatal == nil {
		fatal = ctx.Err()
	}
	return held, failures, fatal
}

// fileLimit lifts the soft descriptor limit to the hard one and returns it:
// holding allocations takes a socket each. (Go raises it at start since
// 1.19; this makes it explicit so the check below can be.)
func fileLimit() uint64 {
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) != nil {
		return 0
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
	return rl.Cur
}

// formatFailures renders failure counts as "508×12, timeout×1", by count.
func formatFailures(f map[string]int64) string {
	if len(f) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if f[keys[i]] != f[keys[j]] {
			return f[keys[i]] > f[keys[j]]
		}
		return keys[i] < keys[j]
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s×%d", k, f[k])
	}
	return strings.Join(parts, ", ")
}
