// Package redistest runs a real redis-server for a test: Debian's
// redis-server binary, on a free loopback TCP port and a unix socket in the
// test's temporary directory, without persistence (--save "" --appendonly
// no), stopped by its PID when the test ends. Stop and Restart let a test
// take Redis away and bring it back on the same addresses (empty: nothing
// is persisted, as after a failover to an empty replica).
//
// Without redis-server in PATH the test is skipped, unless
// ICEGATE_REQUIRE_REDIS=1 (set by `make test`, whose `make deps` installs
// it), when it fails.
package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RequireEnv names the variable that turns a missing redis-server into a
// test failure.
const RequireEnv = "ICEGATE_REQUIRE_REDIS"

// Server is one redis-server process (or, after Stop, its addresses).
type Server struct {
	t      testing.TB
	bin    string
	dir    string
	port   int
	socket string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Binary returns the path of redis-server, skipping t when it is missing
// (or failing it when ICEGATE_REQUIRE_REDIS=1).
func Binary(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("redis-server")
	if err != nil {
		msg := "redis-server not found in PATH (Debian/Ubuntu: apt-get install redis-server, or make deps)"
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("%s, and %s=1 requires the Redis tests", msg, RequireEnv)
		}
		t.Skipf("%s; skipping (set %s=1 to make this a failure)", msg, RequireEnv)
	}
	return p
}

// Start starts a redis-server for t and stops it when t ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{t: t, bin: Binary(t), dir: t.TempDir()}
	s.socket = filepath.Join(s.dir, "redis.sock")
	t.Cleanup(s.Stop)
	// A free port can be taken between the probe and redis-server's bind;
	// try a few.
	var err error
	for range 5 {
		s.port, err = freePort()
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		if err = s.start(); err == nil {
			return s
		}
	}
	t.Fatalf("redistest: %v", err)
	return nil
}

// Addr is the TCP address, 127.0.0.1:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// Socket is the unix socket's path.
func (s *Server) Socket() string { return s.socket }

// URL is redis://127.0.0.1:port/0.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// SocketURL is unix:///…/redis.sock?db=0.
func (s *Server) SocketURL() string { return "unix://" + s.socket + "?db=0" }

// Stop kills the server (SIGKILL: Redis going away without a goodbye) and
// waits for it to exit. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Restart starts a stopped server again on the same port and socket. The
// data is gone (nothing is persisted).
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	var err error
	// The old listener's port is free once the process has exited; a
	// lingering bind failure is retried briefly.
	for range 20 {
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("redistest: restart: %v", err)
}

// Pause stops the server process (SIGSTOP) without closing its sockets:
// Redis hanging, as in a network partition, rather than refusing. Continue
// undoes it; Stop also works on a paused server.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Continue resumes a paused server (SIGCONT).
func (s *Server) Continue() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		_ = s.cmd.Process.Signal(sig)
	}
}

// Running reports whether the server process is up.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

func (s *Server) start() error {
	log := filepath.Join(s.dir, "redis.log")
	cmd := exec.Command(s.bin,
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--unixsocket", s.socket, "--unixsocketperm", "700",
		"--save", "", "--appendonly", "no", "--daemonize", "no",
		"--dir", s.dir, "--logfile", log)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if ping(s.Addr()) == nil && ping(s.socket) == nil {
			break
		}
		select {
		case <-done:
			b, _ := os.ReadFile(log)
			return fmt.Errorf("redis-server on port %d exited: %s", s.port, tail(string(b)))
		default:
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("redis-server on port %d does not answer PING", s.port)
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	return nil
}

// ping sends PING in RESP and wants +PONG; addr is host:port or a socket
// path.
func ping(addr string) error {
	network := "tcp"
	if strings.HasPrefix(addr, "/") {
		network = "unix"
	}
	c, err := net.DialTimeout(network, addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(s string) string {
	if len(s) > 500 {
		s = s[len(s)-500:]
	}
	return strings.TrimSpace(s)
}

// Sentinel is a redis-server in Sentinel mode watching one Server as the
// master of a set, for tests of the Sentinel form of a Redis URL.
type Sentinel struct {
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

// StartSentinel starts a Sentinel on a free loopback port that monitors
// master as set name, and stops it when t ends.
func StartSentinel(t testing.TB, master *Server, name string) *Sentinel {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()
	var lastErr error
	for range 5 {
		port, err := freePort()
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		// Sentinel rewrites its config file, so it gets one of its own.
		conf := filepath.Join(dir, "sentinel.conf")
		src := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor %s 127.0.0.1 %d 1\nsentinel down-after-milliseconds %s 5000\n",
			port, dir, name, master.port, name)
		if err := os.WriteFile(conf, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, conf, "--sentinel", "--logfile", filepath.Join(dir, "sentinel.log"))
		if err := cmd.Start(); err != nil {
			t.Fatalf("redistest: start sentinel: %v", err)
		}
		s := &Sentinel{port: port, cmd: cmd, done: make(chan struct{})}
		go func() { _ = cmd.Wait(); close(s.done) }()
		t.Cleanup(func() { _ = cmd.Process.Kill(); <-s.done })
		deadline := time.Now().Add(10 * time.Second)
		for lastErr = ping(s.Addr()); lastErr != nil && time.Now().Before(deadline); lastErr = ping(s.Addr()) {
			select {
			case <-s.done:
				deadline = time.Now()
			default:
				time.Sleep(10 * time.Millisecond)
			}
		}
		if lastErr == nil {
			return s
		}
		_ = cmd.Process.Kill()
	}
	b, _ := os.ReadFile(filepath.Join(dir, "sentinel.log"))
	t.Fatalf("redistest: sentinel does not answer PING: %v\n%s", lastErr, tail(string(b)))
	return nil
}

// Addr is the Sentinel's TCP address, 127.0.0.1:port.
func (s *Sentinel) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }
