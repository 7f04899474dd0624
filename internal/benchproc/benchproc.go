// Package benchproc runs the programs a benchmark under tools/ measures
// (servers, peers, Redis, load generators) and reads what Linux reports
// about them in /proc: CPU time, resident memory, UDP socket drops. Every
// program runs in a process group of its own, so stopping it signals
// exactly what the benchmark started, by its id, and a Ctrl-C in the
// terminal reaches only the benchmark, which then stops its programs.
package benchproc

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is one program a Set started.
type Proc struct {
	// Name names the program in errors and reports.
	Name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when Wait returns
	err     error         // Wait's error, valid after done
}

// Set is every Proc still running, so that a failure or Ctrl-C anywhere
// still stops them all (StopAll). The zero value is ready to use.
type Set struct {
	mu   sync.Mutex
	live map[*Proc]struct{}
}

// Start runs bin with args, its output in logPath, or in stdout when that
// is not nil (for a program whose lines are read as they come).
func (s *Set) Start(name, logPath string, stdout io.Writer, bin string, args ...string) (*Proc, error) {
	cmd := exec.Command(bin, args...)
	// Pdeathsig: should the benchmark itself be killed outright, the
	// kernel ends its children instead of leaving servers bound to ports.
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
	return s.track(name, logPath, cmd), nil
}

// StartPiped runs bin with args, a pipe on its stdin and one on its
// stdout (its stderr is this process's): a worker the caller talks to
// line by line. Closing stdin is how a worker is usually told to finish.
func (s *Set) StartPiped(name, bin string, args ...string) (_ *Proc, stdin io.WriteCloser, stdout io.ReadCloser, _ error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, nil, nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, nil, nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, os.Stderr
	err = cmd.Start()
	// The child has its own copies of its ends.
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, nil, nil, fmt.Errorf("starting %s: %w", name, err)
	}
	return s.track(name, "", cmd), inW, outR, nil
}

// track waits for a started cmd in the background and holds it in s
// until it has ended.
func (s *Set) track(name, logPath string, cmd *exec.Cmd) *Proc {
	p := &Proc{Name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	s.mu.Lock()
	if s.live == nil {
		s.live = map[*Proc]struct{}{}
	}
	s.live[p] = struct{}{}
	s.mu.Unlock()
	go func() {
		p.err = cmd.Wait()
		close(p.done)
		s.mu.Lock()
		delete(s.live, p)
		s.mu.Unlock()
	}()
	return p
}

// StopAll stops every Proc still running.
func (s *Set) StopAll() {
	s.mu.Lock()
	var all []*Proc
	for p := range s.live {
		all = append(all, p)
	}
	s.mu.Unlock()
	for _, p := range all {
		p.Stop()
	}
}

// Pid is the program's process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Exited reports whether the program has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err is how the program ended (Wait's error); nil while it runs.
func (p *Proc) Err() error {
	if !p.Exited() {
		return nil
	}
	return p.err
}

// Done is closed when the program has ended.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Stop sends SIGTERM to the program's process group, and SIGKILL when it
// has not exited within 5 s. It returns once the process has been waited
// for, or after a further 5 s (it never blocks for ever).
func (p *Proc) Stop() {
	if p.Exited() {
		return
	}
	pgid := p.Pid() // Setpgid: the group id is the child's pid
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

// LogTail returns the last n lines of the program's log, for error
// messages ("" when its output went elsewhere).
func (p *Proc) LogTail(n int) string {
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

// LogLines returns the lines of the program's log that contain any of
// marks.
func (p *Proc) LogLines(marks ...string) []string {
	if p.logPath == "" {
		return nil
	}
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

// WaitLog waits until the program's log has a line containing mark, at
// most d; an exit first is an error with the log's last lines.
func (p *Proc) WaitLog(ctx context.Context, mark string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		if b, _ := os.ReadFile(p.logPath); bytes.Contains(b, []byte(mark)) {
			return nil
		}
		if p.Exited() {
			return fmt.Errorf("%s exited:\n%s", p.Name, p.LogTail(20))
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s not ready (no %q in its log after %v):\n%s", p.Name, mark, d, p.LogTail(20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TicksPerSecond is USER_HZ, the unit of CPUTicks: Linux fixes it at 100
// in its ABI on every architecture Go supports.
const TicksPerSecond = 100

// CPUTicks returns utime+stime of a process from /proc/PID/stat, in clock
// ticks (TicksPerSecond); all threads are included.
func CPUTicks(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return ParseStatTicks(b)
}

// ParseStatTicks reads fields 14 (utime) and 15 (stime) of
// /proc/PID/stat. The command name (field 2) is in parentheses and may
// hold spaces and parentheses, so the fields are counted from the last ')'.
func ParseStatTicks(b []byte) (int64, error) {
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

// RSSKB returns VmRSS from /proc/PID/status, in KiB.
func RSSKB(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	return ParseVmRSS(string(b))
}

// ParseVmRSS reads the VmRSS line of /proc/PID/status, in KiB.
func ParseVmRSS(status string) (int64, error) {
	for line := range strings.Lines(status) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) == 2 && f[1] == "kB" {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, errors.New("/proc/PID/status: no VmRSS line")
}

// SocketDrops sums the drop counters of the UDP sockets pid holds: the
// datagrams the kernel discarded because the socket's receive buffer was
// full (the drops column of /proc/net/udp). It tells where round-trip
// loss happened: at the server, at the client, or at the peer.
func SocketDrops(pid int) (uint64, error) {
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
		total += ParseUDPDrops(string(b), inodes)
	}
	return total, nil
}

// ParseUDPDrops sums the drops column of the /proc/net/udp lines whose
// inode is in inodes.
func ParseUDPDrops(table string, inodes map[string]bool) uint64 {
	var total uint64
	for line := range strings.Lines(table) {
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

// KernelRelease is what `uname -r` prints, for a report's header.
func KernelRelease() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

// LoadAvg is the 1-minute load average, for a report's header: other work
// on the machine shares the cores with what is measured.
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "unknown"
	}
	return f[0]
}

// StartRedis starts redis-server (bin) in s on a free loopback port,
// without persistence, its files in dir and extra arguments after the
// rest, and waits for it to answer PING. It returns the process and
// its address.
func (s *Set) StartRedis(ctx context.Context, bin, dir string, extra ...string) (*Proc, string, error) {
	var lastErr error
	for range 5 { // the port can be taken between the probe and the bind
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, "", err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--daemonize", "no", "--dir", dir}, extra...)
		p, err := s.Start("redis-server", filepath.Join(dir, "redis.log"), nil, bin, args...)
		if err != nil {
			return nil, "", err
		}
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if redisPing(addr) == nil {
				return p, addr, nil
			}
			if p.Exited() || time.Now().After(deadline) || ctx.Err() != nil {
				break
			}
		}
		p.Stop()
		lastErr = fmt.Errorf("redis-server on port %d does not answer PING:\n%s", port, p.LogTail(10))
	}
	return nil, "", lastErr
}

// redisPing sends Redis an inline PING and wants +PONG.
func redisPing(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, "PING\r\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}
