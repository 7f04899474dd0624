package turn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	pionstun "github.com/pion/stun/v4"
)

// nonceRefresh is how old a nonce Nonce hands out may be. pion's nonces
// are valid for an hour (internal/server/short_nonce.go: 60 minutes from
// the minute of issue), so one handed out is valid for at least half an
// hour more.
const nonceRefresh = 30 * time.Minute

// Nonce returns a NONCE this server accepts now, for another server's 300
// Try Alternate that sends a client here (RFC 8489 §10). libwebrtc takes a
// 300's REALM and NONCE and allocates at the alternate with them at once,
// and fails the Allocate on a 438 (Stale Nonce): a 300 without a nonce the
// alternate accepts leaves a browser without a relay. pion makes its
// nonces with a key of its own, so the only way to one is to ask: Nonce
// sends an unauthenticated Allocate to one of this server's own UDP or TCP
// listeners over the host's loopback path and takes the NONCE of the 401,
// at most every half hour (counted like any challenge).
func (s *Server) Nonce(ctx context.Context) (string, error) {
	s.nonceMu.Lock()
	defer s.nonceMu.Unlock()
	if s.nonce != "" && time.Since(s.nonceAt) < nonceRefresh {
		return s.nonce, nil
	}
	var errs []error
	for _, l := range s.listeners {
		if l.Transport != "udp" && l.Transport != "tcp" {
			continue
		}
		n, err := probeNonce(ctx, l)
		if err == nil {
			s.nonce, s.nonceAt = n, time.Now()
			return n, nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return "", errors.New("turn: no UDP or TCP listener to take a nonce from")
	}
	return "", errors.Join(errs...)
}

// probeNonce asks the listener l for a 401 and returns its NONCE.
func probeNonce(ctx context.Context, l ListenAddr) (string, error) {
	var ap netip.AddrPort
	switch a := l.Addr.(type) {
	case *net.UDPAddr:
		ap = a.AddrPort()
	case *net.TCPAddr:
		ap = a.AddrPort()
	}
	ip := ap.Addr().Unmap()
	if ip.IsUnspecified() {
		// A wildcard listener answers on loopback too.
		ip = netip.IPv6Loopback()
		if ip4 := ap.Addr().Unmap(); ip4.Is4() {
			ip = netip.AddrFrom4([4]byte{127, 0, 0, 1})
		}
	}
	target := netip.AddrPortFrom(ip, ap.Port())
	req, err := pionstun.Build(pionstun.TransactionID, pionstun.NewType(pionstun.MethodAllocate, pionstun.ClassRequest),
		pionstun.RawAttribute{Type: pionstun.AttrRequestedTransport, Value: []byte{protoUDP, 0, 0, 0}}, pionstun.Fingerprint)
	if err != nil {
		return "", err
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, l.Transport, target.String())
	if err != nil {
		return "", err
	}
	defer conn.Close()
	deadline := time.Now().Add(2 * time.Second)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = conn.SetDeadline(deadline)
	if _, err := conn.Write(req.Raw); err != nil {
		return "", err
	}
	buf := make([]byte, 1500)
	var n int
	if l.Transport == "udp" {
		n, err = conn.Read(buf)
	} else {
		// STUN over TCP: the header, then the length it gives.
		if _, err = io.ReadFull(conn, buf[:20]); err == nil {
			size := 20 + (int(buf[2])<<8 | int(buf[3]))
			if size > len(buf) {
				return "", fmt.Errorf("turn: nonce probe of %s: a %d-byte answer", target, size)
			}
			_, err = io.ReadFull(conn, buf[20:size])
			n = size
		}
	}
	if err != nil {
		return "", fmt.Errorf("turn: nonce probe of %s %s: %w", l.Transport, target, err)
	}
	resp := &pionstun.Message{Raw: buf[:n]}
	if err := resp.Decode(); err != nil || resp.TransactionID != req.TransactionID {
		return "", fmt.Errorf("turn: nonce probe of %s %s: not the answer (%v)", l.Transport, target, err)
	}
	var nonce pionstun.Nonce
	if err := nonce.GetFrom(resp); err != nil {
		return "", fmt.Errorf("turn: nonce probe of %s %s: no NONCE in the answer: %w", l.Transport, target, err)
	}
	return nonce.String(), nil
}
