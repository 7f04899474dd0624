// Command idlebench measures what a signaling server pays for connections
// that do nothing: people waiting for a call. It starts a server, opens N
// WebSocket connections to it from worker processes (each says hello,
// joins a room of two and then only answers the server's pings), and
// reports the server's resident memory per connection, its goroutines and
// its CPU while they idle; then it closes them all and reports what is
// left. The same client, in the same run, does the same against
// Centrifugo when a centrifugo binary is found (the field's reference:
// `go install github.com/centrifugal/centrifugo/v6@v6.9.1`), so the
// figures come as a ratio (issue #15).
//
// Descriptors: one process here may hold 20,000 (the hard limit, which
// cannot be raised), so the clients are spread over worker processes of
// at most -per-worker connections, and over loopback source addresses
// (127.0.1.x, about 28,000 ephemeral ports each).
//
//	go run ./tools/idlebench -conns 19000            # plain and TLS, and Centrifugo if found
//	make bench-signaling-idle IDLEBENCH="-conns 5000 -modes plain"
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"icegate/internal/benchproc"
	"icegate/internal/icegatebin"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "worker" {
		if err := worker(os.Args[2:]); err != nil {
			fmt.Println("fail", strings.ReplaceAll(err.Error(), "\n", " "))
			os.Exit(1)
		}
		return
	}
	if _, err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "idlebench:", err)
		os.Exit(1)
	}
}

type options struct {
	conns      int
	perWorker  int
	modes      []string
	icegate    string
	centrifugo string
	settle     time.Duration
	idle       time.Duration
	keep       bool
	timeout    time.Duration
}

// run runs the benchmark as the flags in args say, writes its report to
// out and returns its rows.
func run(args []string, out io.Writer) ([]result, error) {
	fs := flag.NewFlagSet("idlebench", flag.ContinueOnError)
	var o options
	var modes string
	fs.IntVar(&o.conns, "conns", 19000, "idle connections to each server")
	fs.IntVar(&o.perWorker, "per-worker", 9500, "connections per client process (each under the 20,000-descriptor limit)")
	fs.StringVar(&modes, "modes", "plain,tls", "which WebSocket transports to measure: plain (ws://), tls (wss://, Go's crypto/tls)")
	fs.StringVar(&o.icegate, "icegate", "", "icegate binary (default: build ./cmd/icegate of the working tree)")
	fs.StringVar(&o.centrifugo, "centrifugo", "", `centrifugo binary (default: "centrifugo" on PATH or in $(go env GOPATH)/bin; "none" skips it)`)
	fs.DurationVar(&o.settle, "settle", 15*time.Second, "wait after the last connection before memory is read")
	fs.DurationVar(&o.idle, "idle", 30*time.Second, "how long idle CPU is measured (covers a ping round: 25 s)")
	fs.BoolVar(&o.keep, "keep", false, "keep the scratch directory (configs and logs)")
	fs.DurationVar(&o.timeout, "timeout", 20*time.Minute, "bound on the whole run")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	o.modes = strings.Split(modes, ",")
	for _, m := range o.modes {
		if m != "plain" && m != "tls" {
			return nil, fmt.Errorf("-modes: %q is neither plain nor tls", m)
		}
	}
	if o.conns < 1 || o.perWorker < 1 {
		return nil, errors.New("-conns and -per-worker must be positive")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	var procs benchproc.Set
	defer procs.StopAll()

	dir, err := os.MkdirTemp("", "icegate-idlebench-")
	if err != nil {
		return nil, err
	}
	failed := true
	defer func() {
		if o.keep || failed {
			fmt.Fprintf(os.Stderr, "configs and logs kept in %s\n", dir)
			return
		}
		os.RemoveAll(dir)
	}()
	if o.icegate == "" {
		o.icegate = filepath.Join(dir, "icegate")
		fmt.Fprintln(os.Stderr, "building ./cmd/icegate ...")
		if err := icegatebin.Build(ctx, o.icegate, "idlebench"); err != nil {
			return nil, err
		}
	}
	o.centrifugo = findCentrifugo(o.centrifugo)
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cert, key, err := writeCert(dir)
	if err != nil {
		return nil, err
	}

	fmt.Fprintf(out, "machine: %d CPUs, Linux %s, load average %s at the start; %d idle connections per server, rooms of 2, clients in processes of %d\n",
		runtime.NumCPU(), benchproc.KernelRelease(), benchproc.LoadAvg(), o.conns, o.perWorker)
	var rows []result
	for _, mode := range o.modes {
		servers := []string{"icegate"}
		if o.centrifugo != "" {
			servers = append(servers, "centrifugo")
		}
		for _, name := range servers {
			s, err := startServer(ctx, &procs, name, mode, o, dir, cert, key)
			if err != nil {
				return nil, err
			}
			r, err := measure(ctx, &procs, s, self, o, dir)
			s.p.Stop()
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", name, mode, err)
			}
			rows = append(rows, r)
			fmt.Fprintln(out, r.line())
		}
	}
	report(out, rows, o)
	failed = false
	return rows, nil
}

// findCentrifugo resolves -centrifugo: a path, "none", or a search.
func findCentrifugo(flagValue string) string {
	switch flagValue {
	case "none":
		return ""
	case "":
	default:
		return flagValue
	}
	if p, err := exec.LookPath("centrifugo"); err == nil {
		return p
	}
	if b, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		p := filepath.Join(strings.TrimSpace(string(b)), "bin", "centrifugo")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	fmt.Fprintln(os.Stderr, "centrifugo not found: measuring icegate alone (go install github.com/centrifugal/centrifugo/v6@v6.9.1 for the comparison)")
	return ""
}

// server is one running server under measurement.
type server struct {
	name, mode string
	p          *benchproc.Proc
	url        string // the WebSocket URL clients dial
	dialect    string // what the clients speak: icegate or centrifugo
	goroutines func() (int, error)
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func startServer(ctx context.Context, procs *benchproc.Set, name, mode string, o options, dir, cert, key string) (*server, error) {
	httpPort, err := freePort()
	if err != nil {
		return nil, err
	}
	metricsPort, err := freePort()
	if err != nil {
		return nil, err
	}
	scheme, tlsFiles := "ws", [2]string{}
	if mode == "tls" {
		scheme, tlsFiles = "wss", [2]string{cert, key}
	}
	s := &server{name: name, mode: mode, dialect: name}
	tag := name + "-" + mode
	switch name {
	case "icegate":
		cfg := filepath.Join(dir, tag+".hcl")
		// TURN on UDP only (one socket; something must listen): only
		// signaling is measured. max_connections above the load; the
		// server's own descriptor guard still applies.
		turnPort, err := freePort()
		if err != nil {
			return nil, err
		}
		src := fmt.Sprintf(`log { level = "warn" }
listen {
  addresses = ["127.0.0.1"]
  port = %d
  tcp = false
  tls = false
  dtls = false
}
relay {
  ipv4_bind  = "127.0.0.1"
  ipv6_bind  = ""
  private_ok = true
}
http {
  listen    = "127.0.0.1:%d"
  cert_file = %q
  key_file  = %q
  test_page = false
}
signaling { max_connections = %d }
metrics { listen = "127.0.0.1:%d" }
`, turnPort, httpPort, tlsFiles[0], tlsFiles[1], o.conns+1000, metricsPort)
		if err := os.WriteFile(cfg, []byte(src), 0o600); err != nil {
			return nil, err
		}
		p, err := procs.Start(tag, filepath.Join(dir, tag+".log"), nil, o.icegate, "serve", "-config", cfg)
		if err != nil {
			return nil, err
		}
		s.p = p
		s.url = fmt.Sprintf("%s://127.0.0.1:%d/ws", scheme, httpPort)
		s.goroutines = func() (int, error) {
			return promGauge(fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort), "go_goroutines")
		}
	case "centrifugo":
		cfg := filepath.Join(dir, tag+".json")
		// Insecure client mode: connections without a token, any channel
		// (the icegate side has no tokens configured either).
		src := fmt.Sprintf(`{
  "client": {"insecure": true},
  "http_server": {"address": "127.0.0.1", "port": %d, "tls": {"enabled": %v, "cert_pem": %q, "key_pem": %q}},
  "prometheus": {"enabled": true},
  "log": {"level": "warn"}
}`, httpPort, mode == "tls", cert, key)
		if err := os.WriteFile(cfg, []byte(src), 0o600); err != nil {
			return nil, err
		}
		p, err := procs.Start(tag, filepath.Join(dir, tag+".log"), nil, o.centrifugo, "-c", cfg)
		if err != nil {
			return nil, err
		}
		s.p = p
		s.url = fmt.Sprintf("%s://127.0.0.1:%d/connection/websocket", scheme, httpPort)
		hs := "http"
		if mode == "tls" {
			hs = "https"
		}
		s.goroutines = func() (int, error) {
			return promGauge(fmt.Sprintf("%s://127.0.0.1:%d/metrics", hs, httpPort), "go_goroutines")
		}
	}
	// Ready when the WebSocket port accepts.
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", httpPort), time.Second)
		if err == nil {
			c.Close()
			break
		}
		if s.p.Exited() || time.Now().After(deadline) || ctx.Err() != nil {
			s.p.Stop()
			return nil, fmt.Errorf("%s did not start listening:\n%s", tag, s.p.LogTail(20))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s, nil
}

// promGauge reads one unlabelled gauge from a Prometheus text page.
func promGauge(url, name string) (int, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int(f), err
		}
	}
	return 0, fmt.Errorf("%s: no %s", url, name)
}

// result is one server in one mode.
type result struct {
	name, mode            string
	conns                 int
	rssStartKB, rssIdleKB int64
	rssAfterKB            int64
	goroutinesStart       int
	goroutinesIdle        int
	goroutinesAfter       int
	connectTime           time.Duration
	idleCPU               time.Duration
	idleWindow            time.Duration
	errors                int
}

// perConnKiB is the resident memory each idle connection added.
func (r result) perConnKiB() float64 {
	return float64(r.rssIdleKB-r.rssStartKB) / float64(r.conns)
}

func (r result) line() string {
	return fmt.Sprintf("%s %s: %d connections in %v; RSS %d → %d KiB (%.1f KiB each), %d → %d goroutines; idle CPU %.1f%% of a core over %v; after closing: RSS %d KiB, %d goroutines",
		r.name, r.mode, r.conns, r.connectTime.Round(time.Millisecond), r.rssStartKB, r.rssIdleKB, r.perConnKiB(),
		r.goroutinesStart, r.goroutinesIdle, 100*r.idleCPU.Seconds()/r.idleWindow.Seconds(), r.idleWindow, r.rssAfterKB, r.goroutinesAfter)
}

// measure opens o.conns idle connections to s from worker processes,
// reads the server's memory, goroutines and CPU, then closes them.
func measure(ctx context.Context, procs *benchproc.Set, s *server, self string, o options, dir string) (result, error) {
	r := result{name: s.name, mode: s.mode, conns: o.conns}
	time.Sleep(2 * time.Second) // let the server settle before the baseline
	var err error
	if r.rssStartKB, err = benchproc.RSSKB(s.p.Pid()); err != nil {
		return r, err
	}
	r.goroutinesStart, _ = s.goroutines()

	type w struct {
		p     *benchproc.Proc
		stdin io.WriteCloser
		lines *bufio.Scanner
	}
	var workers []w
	defer func() {
		for _, x := range workers {
			x.stdin.Close()
			x.p.Stop()
		}
	}()
	start := time.Now()
	left := o.conns
	for i := 0; left > 0; i++ {
		n := min(left, o.perWorker)
		left -= n
		// Each worker its own source addresses: 127.0.(i+1).1-4, about
		// 28,000 ephemeral ports each, far more than a worker opens.
		var srcs []string
		for a := 1; a <= 4; a++ {
			srcs = append(srcs, fmt.Sprintf("127.0.%d.%d", i+1, a))
		}
		cmd := []string{"worker", "-url", s.url, "-dialect", s.dialect, "-n", strconv.Itoa(n),
			"-src", strings.Join(srcs, ","), "-room-prefix", fmt.Sprintf("w%d-", i)}
		p, stdin, stdout, err := procs.StartPiped(fmt.Sprintf("worker-%d", i), self, cmd...)
		if err != nil {
			return r, err
		}
		workers = append(workers, w{p: p, stdin: stdin, lines: bufio.NewScanner(stdout)})
	}
	for _, x := range workers {
		if !x.lines.Scan() {
			return r, fmt.Errorf("%s ended without a word", x.p.Name)
		}
		line := x.lines.Text()
		if !strings.HasPrefix(line, "up ") {
			return r, fmt.Errorf("%s: %s", x.p.Name, line)
		}
		e, _ := strconv.Atoi(strings.Fields(line)[2])
		r.errors += e
	}
	r.connectTime = time.Since(start)
	if err := sleepCtx(ctx, o.settle); err != nil {
		return r, err
	}
	if s.p.Exited() {
		return r, fmt.Errorf("the server exited:\n%s", s.p.LogTail(20))
	}
	if r.rssIdleKB, err = benchproc.RSSKB(s.p.Pid()); err != nil {
		return r, err
	}
	r.goroutinesIdle, _ = s.goroutines()
	t0, _ := benchproc.CPUTicks(s.p.Pid())
	w0 := time.Now()
	if err := sleepCtx(ctx, o.idle); err != nil {
		return r, err
	}
	t1, _ := benchproc.CPUTicks(s.p.Pid())
	r.idleWindow = time.Since(w0).Round(time.Second)
	r.idleCPU = time.Duration(t1-t0) * time.Second / benchproc.TicksPerSecond
	// Every connection must still be up: a worker reports any that ended.
	for _, x := range workers {
		x.stdin.Close()
	}
	for _, x := range workers {
		if x.lines.Scan() {
			f := strings.Fields(x.lines.Text())
			if len(f) >= 2 && f[0] == "lost" {
				if n, _ := strconv.Atoi(f[1]); n > 0 {
					return r, fmt.Errorf("%s: %d connections ended while idle", x.p.Name, n)
				}
			}
		}
	}
	for _, x := range workers {
		select {
		case <-x.p.Done():
		case <-time.After(30 * time.Second):
			x.p.Stop()
		}
	}
	_ = sleepCtx(ctx, 5*time.Second)
	r.rssAfterKB, _ = benchproc.RSSKB(s.p.Pid())
	r.goroutinesAfter, _ = s.goroutines()
	return r, nil
}

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

func report(out io.Writer, rows []result, o options) {
	fmt.Fprintf(out, "\n| server | transport | connections | RSS per idle connection | goroutines | idle CPU (%% of a core) | RSS after closing (KiB, from start) |\n|---|---|---:|---:|---:|---:|---:|\n")
	for _, r := range rows {
		fmt.Fprintf(out, "| %s | %s | %d | %.1f KiB | %d | %.1f | %+d |\n", r.name, r.mode, r.conns, r.perConnKiB(),
			r.goroutinesIdle, 100*r.idleCPU.Seconds()/r.idleWindow.Seconds(), r.rssAfterKB-r.rssStartKB)
	}
	for _, mode := range o.modes {
		var ig, cf *result
		for i := range rows {
			if rows[i].mode != mode {
				continue
			}
			switch rows[i].name {
			case "icegate":
				ig = &rows[i]
			case "centrifugo":
				cf = &rows[i]
			}
		}
		target := 12.0
		if mode == "tls" {
			target = 20.0
		}
		if ig != nil {
			verdict := "met"
			if ig.perConnKiB() > target {
				verdict = "missed"
			}
			fmt.Fprintf(out, "target (issue #15), %s: ≤ %.0f KiB per connection: %s (%.1f KiB)", mode, target, verdict, ig.perConnKiB())
			if cf != nil {
				ratio := ig.perConnKiB() / cf.perConnKiB()
				verdict = "met"
				if ratio > 0.3 {
					verdict = "missed"
				}
				fmt.Fprintf(out, "; ≤ 0.3× Centrifugo's: %s (%.2f×)", verdict, ratio)
			}
			fmt.Fprintln(out)
		}
	}
	fmt.Fprintf(out, "load average %s at the end\n", benchproc.LoadAvg())
}
