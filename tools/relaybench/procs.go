package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Ports. Everything binds 127.0.0.1. Servers' listening ports, relay ranges
// and the echo peer's ports are drawn at random below the kernel's ephemeral
// range, so that client sockets (which get ephemeral ports) never collide
// with them; each candidate is checked free just before use. Fixed ports
// would collide with other people's servers on a shared machine, and coturn
// binds with SO_REUSEPORT, so it would not even fail: it would share.
type portPicker struct {
	lo, hi int // candidates are in [lo, hi)
}

func newPortPicker() (*portPicker, error) {
	lo := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil {
				lo = v
			}
		}
	}
	pp := &portPicker{lo: 10000, hi: lo}
	if pp.hi-pp.lo < 5000 {
		return nil, fmt.Errorf("the ephemeral port range starts at %d: no room below it for relay ranges (net.ipv4.ip_local_port_range)", lo)
	}
	return pp, nil
}

// block returns the first port of n consecutive ports all free on UDP (and
// on TCP too when tcp is set) on 127.0.0.1 just now.
func (pp *portPicker) block(n int, tcp bool) (int, error) {
	for range 50 {
		base := pp.lo + rand.IntN(pp.hi-pp.lo-n)
		if portsFree(base, n, tcp) {
			return base, nil
		}
	}
	return 0, fmt.Errorf("no %d consecutive free ports found in %d-%d on 127.0.0.1", n, pp.lo, pp.hi-1)
}

func portsFree(base, n int, tcp bool) bool {
	for p := base; p < base+n; p++ {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		pc, err := net.ListenPacket("udp4", addr)
		if err != nil {
			return false
		}
		_ = pc.Close()
		if tcp {
			ln, err := net.Listen("tcp4", addr)
			if err != nil {
				return false
			}
			_ = ln.Close()
		}
	}
	return true
}

// sleepCtx waits d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
