package turn

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	pionstun "github.com/pion/stun/v4"
	pionturn "github.com/pion/turn/v5"

	"icegate/config"
)

// TestCountOpenFiles: the getdents count of /proc/self/fd follows opened
// and closed descriptors exactly.
func TestCountOpenFiles(t *testing.T) {
	var buf []byte
	base, err := countOpenFiles(&buf)
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	var files []*os.File
	for range 50 {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	if n, _ := countOpenFiles(&buf); n != base+50 {
		t.Fatalf("count %d after opening 50, want %d", n, base+50)
	}
	for _, f := range files {
		_ = f.Close()
	}
	if n, _ := countOpenFiles(&buf); n != base {
		t.Fatalf("count %d after closing them, want %d", n, base)
	}
}

// Descriptor pressure runs the server in a child process (this test binary
// again) whose soft RLIMIT_NOFILE is lowered to fdChildLimit: this process's
// own limit is never touched. The child speaks a line protocol on its stdin
// and stdout (see TestFDPressureChild).
const (
	fdChildEnv   = "ICEGATE_TEST_FD_CHILD"
	fdChildLimit = 256
)

// TestDescriptorPressure: with the server near its descriptor limit, new TCP
// connections are refused at once (not left to time out), counted, while a
// UDP client still allocates and relays; with the limit reached by other
// descriptors, the accept loop backs off rather than spinning and serves the
// waiting clients once descriptors are free again; and TCP works again once
// connections close.
func TestDescriptorPressure(t *testing.T) {
	if _, err := countOpenFiles(new([]byte)); err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestFDPressureChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), fdChildEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := false
	defer func() {
		_ = stdin.Close()
		if err := cmd.Wait(); err != nil && !done {
			t.Errorf("child: %v\nstderr:\n%s", err, stderr.String())
		}
	}()
	lines := bufio.NewScanner(stdout)
	read := func(prefix string) string {
		t.Helper()
		for lines.Scan() {
			if l := lines.Text(); strings.HasPrefix(l, prefix) {
				return strings.TrimPrefix(l, prefix)
			}
		}
		t.Fatalf("child ended before %q: %v\nstderr:\n%s", prefix, lines.Err(), stderr.String())
		return ""
	}
	ask := func(cmd, prefix string) string {
		t.Helper()
		if _, err := fmt.Fprintln(stdin, cmd); err != nil {
			t.Fatal(err)
		}
		return read(prefix)
	}
	fields := strings.Fields(read("ready "))
	udpAddr, err := net.ResolveUDPAddr("udp", fields[0])
	if err != nil {
		t.Fatal(err)
	}
	tcpAddr := fields[1]
	binding := func() []byte {
		req, _ := pionstun.Build(pionstun.TransactionID, pionstun.BindingRequest)
		return req.Raw
	}

	// Open TCP connections, each answering a Binding, until one is refused.
	var conns []net.Conn
	closeAll := func() {
		for _, c := range conns {
			_ = c.Close()
		}
		conns = nil
	}
	defer closeAll()
	refusedAt := -1
	for i := range fdChildLimit {
		c, err := net.Dial("tcp", tcpAddr)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if _, err := streamDo(c, binding(), 3*time.Second); err != nil {
			_ = c.Close()
			if time.Since(start) > 2*time.Second {
				t.Fatalf("connection %d hung instead of being refused: %v", i, err)
			}
			refusedAt = i
			break
		}
		conns = append(conns, c)
	}
	if refusedAt < 100 {
		t.Fatalf("TCP refused after %d connections, want the limit (%d) less the reserve, less the server's own sockets", refusedAt, fdChildLimit)
	}
	t.Logf("TCP refused after %d connections", refusedAt)

	// UDP still allocates and relays.
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	client := newClient(t, pc, udpAddr, testUser, testPass, pionturn.RequestedAddressFamilyIPv4)
	relay, err := client.Allocate()
	if err != nil {
		t.Fatalf("UDP Allocate under descriptor pressure: %v", err)
	}
	echoThrough(t, relay, udpEcho(t, "127.0.0.1"))
	_ = relay.Close()
	if s := ask("stats", "stats "); statField(t, s, "reserve") == 0 {
		t.Fatalf("descriptor_reserve refusals not counted: %s", s)
	}

	// Other descriptors take the rest: accept fails with EMFILE. The client
	// waits in the backlog; the loop backs off (at most about ten tries in
	// 1.5 s) and serves it once descriptors are free.
	closeAll()
	for deadline := time.Now().Add(5 * time.Second); statField(t, ask("stats", "stats "), "open") > 0; {
		if time.Now().After(deadline) {
			t.Fatal("the server did not close its side of the connections")
		}
		time.Sleep(50 * time.Millisecond)
	}
	filled := ask("fill", "filled ")
	before := statField(t, ask("stats", "stats "), "accept")
	waiting, err := net.Dial("tcp", tcpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer waiting.Close()
	_ = waiting.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := waiting.Write(binding()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	tries := statField(t, ask("stats", "stats "), "accept") - before
	t.Logf("%d failed accepts in 1.5 s with %s descriptors filled", tries, filled)
	if tries < 1 || tries > 12 {
		t.Fatalf("%d failed accepts in 1.5 s with %s descriptors filled, want a few (backing off, not spinning)", tries, filled)
	}
	ask("free", "freed")
	if _, err := streamDo(waiting, nil, 5*time.Second); err != nil {
		t.Fatalf("the client waiting in the backlog was not served once descriptors were free: %v", err)
	}

	// TCP works again.
	c, err := net.Dial("tcp", tcpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := streamDo(c, binding(), 3*time.Second); err != nil {
		t.Fatalf("TCP after the pressure: %v", err)
	}
	done = true
}

func statField(t *testing.T, stats, name string) int {
	t.Helper()
	for _, f := range strings.Fields(stats) {
		if v, ok := strings.CutPrefix(f, name+"="); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s in %q", name, stats)
	return 0
}

// TestFDPressureChild is the server side of TestDescriptorPressure, run only
// in the child process. Commands on stdin: "stats" (refusal counters),
// "fill" (open /dev/null until the limit), "free" (close those); stdin's
// end stops the server.
func TestFDPressureChild(t *testing.T) {
	if os.Getenv(fdChildEnv) != "1" {
		t.Skip("runs only as TestDescriptorPressure's child")
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	rl.Cur = fdChildLimit
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, func(c *config.Config) {
		c.Listen.Addrs = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
		c.Limits.ConnectionsPerSource = 0 // only the descriptor reserve
		off := false
		c.Listen.DTLS = &off
	})
	fmt.Printf("ready %s %s\n", srv.addr(t, "udp", "4"), srv.addr(t, "tcp", "4"))
	refused := srv.metrics.ConnectionsRefused
	var filler []*os.File
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch in.Text() {
		case "stats":
			fmt.Printf("stats reserve=%d accept=%d open=%d\n",
				int(counterValue(t, refused.WithLabelValues("descriptor_reserve"))),
				int(counterValue(t, refused.WithLabelValues("accept_error"))),
				srv.streams.total.Load())
		case "fill":
			for {
				f, err := os.Open(os.DevNull)
				if err != nil {
					break
				}
				filler = append(filler, f)
			}
			fmt.Printf("filled %d\n", len(filler))
		case "free":
			for _, f := range filler {
				_ = f.Close()
			}
			filler = nil
			fmt.Println("freed")
		}
	}
}
