//go:build linux

package netnstest

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
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

// LinkDrops are a device's drop counters (ip -s link): on a veth, TX
// dropped counts the datagrams its other end could not take (the
// receiving CPU's backlog, net.core.netdev_max_backlog, was full: that
// backlog is per CPU and shared by every namespace on the machine, so
// another process's flood on any device can fill it).
type LinkDrops struct{ RX, TX uint64 }

// Links reads the drop counters of every device of namespace ns ("" for
// the calling process's own).
func Links(t testing.TB, ns string) map[string]LinkDrops {
	t.Helper()
	args := []string{"-s", "-j", "link", "show"}
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	out, err := exec.Command("ip", args...).Output()
	if err != nil {
		t.Fatalf("ip %s: %v", strings.Join(args, " "), err)
	}
	var links []struct {
		Name  string `json:"ifname"`
		Stats struct {
			RX struct {
				Dropped uint64 `json:"dropped"`
			} `json:"rx"`
			TX struct {
				Dropped uint64 `json:"dropped"`
			} `json:"tx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal(out, &links); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	m := make(map[string]LinkDrops, len(links))
	for _, l := range links {
		m[l.Name] = LinkDrops{RX: l.Stats.RX.Dropped, TX: l.Stats.TX.Dropped}
	}
	return m
}

// BacklogDrops is the machine's count of packets dropped because a CPU's
// input backlog was full (/proc/net/softnet_stat, second column, summed
// over the CPUs): the same in every namespace.
func BacklogDrops(t testing.TB) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/net/softnet_stat")
	if err != nil {
		t.Fatal(err)
	}
	var sum uint64
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) > 1 {
			n, _ := strconv.ParseUint(f[1], 16, 64)
			sum += n
		}
	}
	return sum
}
