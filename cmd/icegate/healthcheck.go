package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	pionstun "github.com/pion/stun/v4"
)

const healthcheckSynopsis = "healthcheck [-addr 127.0.0.1:3478] [-timeout 2s]"

// healthcheckCmd sends one STUN Binding request (RFC 8489 §3) over UDP
// and succeeds when a Binding success response with this transaction's
// ID comes back: the check a container's HEALTHCHECK runs, since the
// image has no shell or curl, and a Binding answered proves the relay's
// listener and its serving loop are alive. It sends nothing else.
func healthcheckCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("healthcheck", healthcheckSynopsis)
	addr := fs.String("addr", "127.0.0.1:3478", "host:port of the STUN/TURN UDP listener")
	timeout := fs.Duration("timeout", 2*time.Second, "how long to wait for the answer, over up to 3 tries")
	pos, err := parseFlags(fs, args, stderr)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return fmt.Errorf("%w: healthcheck takes no arguments", errUsage)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", *addr)
	if err != nil {
		return fmt.Errorf("healthcheck %s: %w", *addr, err)
	}
	defer c.Close()
	req, err := pionstun.Build(pionstun.TransactionID, pionstun.BindingRequest, pionstun.Fingerprint)
	if err != nil {
		return err
	}
	deadline, _ := ctx.Deadline()
	buf := make([]byte, 1500)
	var lastErr error
	// UDP may lose one datagram: send again every third of the timeout.
	for try := range 3 {
		if _, err := c.Write(req.Raw); err != nil {
			return fmt.Errorf("healthcheck %s: %w", *addr, err)
		}
		wait := time.Until(deadline) / time.Duration(3-try)
		_ = c.SetReadDeadline(time.Now().Add(wait))
		for {
			n, err := c.Read(buf)
			if err != nil {
				lastErr = err
				break // timed out (or refused): try again
			}
			res := &pionstun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if res.Decode() != nil || res.TransactionID != req.TransactionID {
				continue
			}
			if res.Type != pionstun.BindingSuccess {
				return fmt.Errorf("healthcheck %s: answered %v", *addr, res.Type)
			}
			var mapped pionstun.XORMappedAddress
			if err := mapped.GetFrom(res); err != nil {
				return fmt.Errorf("healthcheck %s: Binding success without XOR-MAPPED-ADDRESS: %w", *addr, err)
			}
			fmt.Fprintf(stdout, "ok: %s answered a STUN Binding (mapped %s)\n", *addr, mapped.String())
			return nil
		}
	}
	if errors.Is(lastErr, syscall.ECONNREFUSED) {
		// An ICMP port unreachable: nothing listens there (UDP off, or
		// listen.addresses without loopback: give -addr).
		return fmt.Errorf("healthcheck %s: connection refused: nothing listens on that UDP address (set -addr to a listen address with UDP on)", *addr)
	}
	return fmt.Errorf("healthcheck %s: no STUN Binding answer within %v", *addr, *timeout)
}
