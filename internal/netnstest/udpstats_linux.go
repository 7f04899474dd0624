//go:build linux

package netnstest

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// UDPCounters are a namespace's UDP counters for one address family, as
// /proc/net/snmp (Udp:) and /proc/net/snmp6 (Udp6...) give them. A
// datagram the kernel drops on receive is counted only here: InErrors
// counts every one (RcvbufErrors, a full socket receive buffer, and
// InCsumErrors, a bad checksum, among them); NoPorts counts datagrams for
// a port no socket holds.
type UDPCounters struct {
	InDatagrams, NoPorts, InErrors, RcvbufErrors, InCsumErrors uint64
}

// Sub is c minus an earlier reading.
func (c UDPCounters) Sub(before UDPCounters) UDPCounters {
	return UDPCounters{c.InDatagrams - before.InDatagrams, c.NoPorts - before.NoPorts,
		c.InErrors - before.InErrors, c.RcvbufErrors - before.RcvbufErrors, c.InCsumErrors - before.InCsumErrors}
}

// String reads as "in N, errors N (buffer N, checksum N), no port N".
func (c UDPCounters) String() string {
	return fmt.Sprintf("in %d, errors %d (buffer %d, checksum %d), no port %d",
		c.InDatagrams, c.InErrors, c.RcvbufErrors, c.InCsumErrors, c.NoPorts)
}

// UDPStats reads the UDP counters of namespace ns ("" for the calling
// process's own) for IPv4 and IPv6.
func UDPStats(t testing.TB, ns string) (v4, v6 UDPCounters) {
	t.Helper()
	read := func() error {
		b, err := os.ReadFile("/proc/thread-self/net/snmp")
		if err != nil {
			return err
		}
		var names []string
		for line := range strings.Lines(string(b)) {
			f := strings.Fields(line)
			if len(f) == 0 || f[0] != "Udp:" {
				continue
			}
			if names == nil {
				names = f
				continue
			}
			for i := 1; i < len(f) && i < len(names); i++ {
				setUDP(&v4, names[i], f[i])
			}
		}
		b, err = os.ReadFile("/proc/thread-self/net/snmp6")
		if err != nil {
			return err
		}
		for line := range strings.Lines(string(b)) {
			if f := strings.Fields(line); len(f) == 2 && strings.HasPrefix(f[0], "Udp6") {
				setUDP(&v6, strings.TrimPrefix(f[0], "Udp6"), f[1])
			}
		}
		return nil
	}
	var err error
	if ns == "" {
		err = read()
	} else {
		err = Do(ns, read)
	}
	if err != nil {
		t.Fatal(err)
	}
	return v4, v6
}

func setUDP(c *UDPCounters, name, value string) {
	n, _ := strconv.ParseUint(value, 10, 64)
	switch name {
	case "InDatagrams":
		c.InDatagrams = n
	case "NoPorts":
		c.NoPorts = n
	case "InErrors":
		c.InErrors = n
	case "RcvbufErrors":
		c.RcvbufErrors = n
	case "InCsumErrors":
		c.InCsumErrors = n
	}
}
