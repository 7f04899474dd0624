package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"icegate/internal/benchproc"
)

// machineCPU is the whole machine's CPU time from the first line of
// /proc/stat, in ticks (USER_HZ), split where it shows where relaying costs:
// busy is every column but idle and iowait (user, nice, system, irq,
// softirq, steal; guest and guest_nice are already inside user and nice, so
// they are not added again), softirq is the softirq column alone. The
// kernel fast path relays in softirq context (TC ingress on the receiving
// veth), so it is in busy but in no server process.
type machineCPU struct {
	busy, softirq, system int64
}

// readMachineCPU reads /proc/stat.
func readMachineCPU() (machineCPU, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineCPU{}, err
	}
	return parseMachineCPU(b)
}

// parseMachineCPU parses the "cpu " line of /proc/stat.
func parseMachineCPU(b []byte) (machineCPU, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "cpu" {
			continue
		}
		// user nice system idle iowait irq softirq steal [guest guest_nice]
		if len(f) < 9 {
			return machineCPU{}, fmt.Errorf("/proc/stat: cpu line has %d columns, want at least 8", len(f)-1)
		}
		var v [8]int64
		for i := range v {
			n, err := strconv.ParseInt(f[i+1], 10, 64)
			if err != nil {
				return machineCPU{}, fmt.Errorf("/proc/stat: cpu column %d: %w", i+1, err)
			}
			v[i] = n
		}
		user, nice, system, irq, softirq, steal := v[0], v[1], v[2], v[5], v[6], v[7]
		return machineCPU{busy: user + nice + system + irq + softirq + steal, softirq: softirq, system: system}, nil
	}
	return machineCPU{}, fmt.Errorf("/proc/stat: no cpu line")
}

func (m machineCPU) sub(o machineCPU) machineCPU {
	return machineCPU{busy: m.busy - o.busy, softirq: m.softirq - o.softirq, system: m.system - o.system}
}

// childrenTicks is the CPU time (user + system, ticks) of every child of
// this process that has ended and been waited for: sampled around a
// uclient run, the difference is uclient's own CPU, all of its life.
func childrenTicks() (int64, error) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_CHILDREN, &ru); err != nil {
		return 0, err
	}
	ns := ru.Utime.Nano() + ru.Stime.Nano()
	return ns * benchproc.TicksPerSecond / 1e9, nil
}
