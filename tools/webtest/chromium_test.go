package webtest

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"icegate/internal/hellosplit"
	"icegate/signaling"
)

// requireBrowserEnv makes a missing Chromium a failure, not a skip.
const requireBrowserEnv = "ICEGATE_REQUIRE_BROWSER"

// chromiumPage opens wss:// to the page's own host, sends a signaling ping
// and times its answer, stays idle across several of the server's
// keepalive pings (each answered by the browser's pong: the path where the
// server's idle reader consumes pongs below gorilla), pings again, sends a
// burst that arrives in few TLS records and segments, and closes. It
// reports to /done: "ok", or what went wrong. Every answer must come far
// sooner than the next keepalive (2 s): a message left buffered above the
// socket would wait for one.
const chromiumPage = `<!doctype html><meta charset="utf-8"><title>icegate TLS</title>
<script>
const report = (r) => fetch("/done?r=" + encodeURIComponent(r));
const ws = new WebSocket("wss://" + location.host + "/ws");
let sent = {}, worst = 0, burst = 0;
const ping = (id) => { sent[id] = performance.now(); ws.send(JSON.stringify({type: "ping", id: String(id)})); };
ws.onmessage = (e) => {
  const m = JSON.parse(e.data);
  if (m.type === "hello") { ping(1); return; }
  if (m.type !== "pong") return;
  const id = Number(m.id);
  worst = Math.max(worst, performance.now() - sent[id]);
  if (id === 1) { setTimeout(() => ping(2), 5000); return; }
  if (id === 2) { for (let i = 3; i <= 40; i++) ping(i); return; }
  if (++burst === 38) {
    if (worst > 700) { report("slow: worst round trip " + Math.round(worst) + " ms"); return; }
    ws.close();
    report("ok");
  }
};
ws.onclose = (e) => { if (burst < 38) report("closed early: " + e.code); };
ws.onerror = () => report("error");
</script>`

// lockedBuffer collects a process's stdout and stderr.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// chromium returns the path of a Chromium, or skips (fails under
// ICEGATE_REQUIRE_BROWSER=1).
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv(requireBrowserEnv) == "1" {
		t.Fatalf("no chromium installed (%s=1 makes this a failure)", requireBrowserEnv)
	}
	t.Skipf("no chromium installed; set %s=1 to make this a failure", requireBrowserEnv)
	return ""
}

// firstRecordConn records the length of the first TLS record a client
// sends (its ClientHello), read below hellosplit.
type firstRecordConn struct {
	net.Conn
	size *atomic.Int64
	hdr  []byte
}

func (c *firstRecordConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if len(c.hdr) < 5 {
		c.hdr = append(c.hdr, p[:min(n, 5-len(c.hdr))]...)
		if len(c.hdr) == 5 && c.hdr[0] == 22 {
			c.size.CompareAndSwap(0, int64(binary.BigEndian.Uint16(c.hdr[3:])))
		}
	}
	return n, err
}

type firstRecordListener struct {
	net.Listener
	size *atomic.Int64
}

func (l firstRecordListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &firstRecordConn{Conn: c, size: l.size}, nil
}

// TestChromiumTLS drives the signaling server with headless Chromium over
// wss://, served as cmd/icegate serves HTTPS: crypto/tls over
// internal/hellosplit (a self-signed certificate, which
// --ignore-certificate-errors accepts). Chromium's ClientHello carries an
// X25519MLKEM768 key share, so it is larger than hellosplit.Size and is
// re-framed; the handshake must still agree on that group, and the idle
// reader (which waits on the socket under TLS) must answer every message
// at once, across keepalive rounds.
func TestChromiumTLS(t *testing.T) {
	browser := chromium(t)
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: logLevel()}))
	hub, err := signaling.New(signaling.Config{
		MessagesPerSecond: 2000,
		// Keepalives while the page idles for 5 s: two or three rounds.
		PingInterval: 2 * time.Second,
	}, signaling.Options{Logger: log, Version: "webtest"})
	if err != nil {
		t.Fatal(err)
	}
	result := make(chan string, 4)
	var curve atomic.Uint32
	var version atomic.Uint32
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(chromiumPage))
	})
	mux.HandleFunc("/favicon.ico", http.NotFound)
	mux.HandleFunc("/done", func(w http.ResponseWriter, r *http.Request) {
		select {
		case result <- r.URL.Query().Get("r"):
		default:
		}
	})
	ws := hub.Handler()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			curve.Store(uint32(r.TLS.CurveID))
			version.Store(uint32(r.TLS.Version))
		}
		ws.ServeHTTP(w, r)
	})
	var helloSize atomic.Int64
	srv := httptest.NewUnstartedServer(mux)
	srv.Listener = hellosplit.Listen(firstRecordListener{Listener: srv.Listener, size: &helloSize})
	srv.StartTLS()
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := hub.Close(ctx); err != nil {
			t.Error(err)
		}
		srv.Close()
	}()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, browser, "--headless=new", "--no-sandbox", "--disable-gpu",
		"--ignore-certificate-errors", "--no-first-run", "--disable-extensions",
		"--disable-background-networking", "--disable-dev-shm-usage",
		"--user-data-dir="+t.TempDir(), srv.URL+"/")
	// Chromium is ended by its PID when the test is done.
	cmd.WaitDelay = 5 * time.Second
	// Chromium's own log (D-Bus complaints and the like) is shown only
	// when the test fails.
	var out lockedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("chromium's output:\n%s", out.String())
		}
	}()
	select {
	case r := <-result:
		if r != "ok" {
			t.Fatalf("page: %s", r)
		}
	case <-ctx.Done():
		t.Fatal("no result from the page within a minute")
	}
	if v := version.Load(); v != tls.VersionTLS13 {
		t.Errorf("TLS version %#x, want TLS 1.3", v)
	}
	if c := tls.CurveID(curve.Load()); c != tls.X25519MLKEM768 {
		t.Errorf("key exchange %v, want X25519MLKEM768 (Chromium's post-quantum key share)", c)
	}
	if n := helloSize.Load(); n <= hellosplit.Size {
		t.Errorf("Chromium's first handshake record is %d bytes, not above hellosplit.Size (%d): nothing was re-framed", n, hellosplit.Size)
	}
	t.Logf("ClientHello record %d bytes; %v", helloSize.Load(), tls.CurveID(curve.Load()))
}
