package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one program relaybench started: a server, the echo peer or a
// uclient. It runs in a process group of its own, so stopping it signals
// exactly what relaybench started (by its id) and nothing else, and a Ctrl-C
// in the terminal reaches relaybench, which then stops it in order.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when Wait returns
	err     error         // Wait's error, valid after done
}

// procs is every proc still running, so that a failure or Ctrl-C anywhere
// still stops them all (env.close).
type procs struct {
	mu   sync.Mutex
	live map[*proc]struct{}
}

// start runs bin with its output in logPath (or to stdout when stdout is
// not nil, for uclient whose lines are read as they come).
func (ps *procs) start(name, logPath string, stdout io.Writer, bin string, args ...string) (*proc, error) {
	cmd := exec.Command(bin, args...)
	// Pdeathsig: should relaybench itself be killed outright, the kernel
	// ends its children instead of leaving servers bound to ports.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var logFile *os.File
	if stdout != nil {
		cmd.Stdout, cmd.Stderr = stdout, stdout
	} else {
		f, err := os.Create(logPath)
		if err != nil {
			return nil, err
		}
		logFile = f
		cmd.Stdout, cmd.Stderr = f, f
	}
	err := cmd.Start()
	if logFile != nil {
		// The child has its own copy of the descriptor.
		_ = logFile.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	ps.mu.Lock()
	if ps.live == nil {
		ps.live = map[*proc]struct{}{}
	}
	ps.live[p] = struct{}{}
	ps.mu.Unlock()
	go func() {
		p.err = cmd.Wait()
		close(p.done)
		ps.mu.Lock()
		delete(ps.live, p)
		ps.mu.Unlock()
	}()
	return p, nil
}

// stopAll stops every proc still running.
func (ps *procs) stopAll() {
	ps.mu.Lock()
	var all []*proc
	for p := range ps.live {
		all = append(all, p)
	}
	ps.mu.Unlock()
	for _, p := range all {
		p.stop()
	}
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the proc's process group, and SIGKILL when it has
// not exited within 5 s. It returns once the process has been waited for,
// or after a further 5 s (never blocks for ever).
func (p *proc) stop() {
	if p.exited() {
		return
	}
	pgid := p.pid() // Setpgid: the group id is the child's pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(5 * time.Second):
	}
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
}

// logTail returns the last n lines of the proc's log, for error messages.
func (p *proc) logTail(n int) string {
	if p.logPath == "" {
		return ""
	}
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// logLines returns the lines of the proc's log that contain any of marks.
func (p *proc) logLines(marks ...string) []string {
	f, err := os.Open(p.logPath)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		for _, m := range marks {
			if strings.Contains(sc.Text(), m) {
				out = append(out, sc.Text())
				break
			}
		}
	}
	return out
}

// cpuTicks returns utime+stime of a process from /proc/PID/stat, in clock
// ticks (USER_HZ, 100 a second on Linux); all threads are included.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return parseStatTicks(b)
}

// parseStatTicks reads fields 14 (utime) and 15 (stime) of /proc/PID/stat.
// The command name (field 2) is in parentheses and may hold spaces, so the
// fields are counted from the last ')'.
func parseStatTicks(b []byte) (int64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("/proc/PID/stat: no ')'")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), so field n is f[n-3].
	if len(f) < 13 {
		return 0, errors.New("/proc/PID/stat: too few fields")
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/PID/stat: utime %q stime %q", f[11], f[12])
	}
	return u + s, nil
}

// socketDrops sums the drop counters of the UDP sockets pid holds: the
// datagrams the kernel discarded because the socket's receive buffer was
// full (the drops column of /proc/net/udp). It tells where round-trip loss
// happened: at the server, at uclient, or at the echo peer.
func socketDrops(pid int) (uint64, error) {
	dir := "/proc/" + strconv.Itoa(pid)
	fds, err := os.ReadDir(dir + "/fd")
	if err != nil {
		return 0, err
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		target, err := os.Readlink(dir + "/fd/" + fd.Name())
		if err != nil {
			continue // closed meanwhile
		}
		if ino, ok := strings.CutPrefix(target, "socket:["); ok {
			inodes[strings.TrimSuffix(ino, "]")] = true
		}
	}
	var total uint64
	for _, table := range []string{"/net/udp", "/net/udp6"} {
		b, err := os.ReadFile(dir + table)
		if err != nil {
			continue
		}
		total += parseUDPDrops(string(b), inodes)
	}
	return total, nil
}

// parseUDPDrops sums the drops column of the /proc/net/udp lines whose
// inode is in inodes.
func parseUDPDrops(table string, inodes map[string]bool) uint64 {
	var total uint64
	for _, line := range strings.Split(table, "\n") {
		f := strings.Fields(line)
		// sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
		if len(f) < 13 || !inodes[f[9]] {
			continue
		}
		if d, err := strconv.ParseUint(f[12], 10, 64); err == nil {
			total += d
		}
	}
	return total
}

// ticksPerSecond is USER_HZ, fixed at 100 in Linux's ABI on every
// architecture Go supports.
const ticksPerSecond = 100

// rssKB returns VmRSS from /proc/PID/status, in KiB.
func rssKB(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	return parseVmRSS(string(b))
}

func parseVmRSS(status string) (int64, error) {
	for _, line := range strings.Split(status, "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, errors.New("/proc/PID/status: no VmRSS line")
}

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
