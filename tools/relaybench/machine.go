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
//
// idle is the idle and iowait columns. On a kernel with NO_HZ (idle ticks
// stopped) the kernel takes them from its idle-entry and idle-exit clock,
// not from ticks, so wall-clock time × CPUs − idle is the machine's busy
// time measured, not sampled. The busy columns are tick samples (without
// CONFIG_VIRT_CPU_ACCOUNTING): a tick lands every 4 ms (HZ=250) and charges
// the whole tick to what it interrupted, so work in bursts shorter than a
// tick that sleep in between (one packet per wake-up at media rate) can be
// under-counted by them.
type machineCPU struct {
	busy, softirq, system, idle int64
	cpus                        int
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
		user, nice, system, idle, iowait, irq, softirq, steal := v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]
		m := machineCPU{busy: user + nice + system + irq + softirq + steal, softirq: softirq, system: system, idle: idle + iowait}
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "cpu") {
				m.cpus++
			}
		}
		if m.cpus == 0 {
			return machineCPU{}, fmt.Errorf("/proc/stat: no per-CPU lines")
		}
		return m, nil
	}
	return machineCPU{}, fmt.Errorf("/proc/stat: no cpu line")
}

func (m machineCPU) sub(o machineCPU) machineCPU {
	return machineCPU{busy: m.busy - o.busy, softirq: m.softirq - o.softirq, system: m.system - o.system,
		idle: m.idle - o.idle, cpus: m.cpus}
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
