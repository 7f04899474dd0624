package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// browser is a headless Chromium driven over the DevTools protocol: a
// WebSocket carrying {"id","method","params","sessionId"} calls. Only what
// the test needs: tabs, evaluating a promise, console output, screenshots.
type browser struct {
	t   *testing.T
	cmd *exec.Cmd
	ws  *websocket.Conn

	mu      sync.Mutex
	nextID  int
	waiters map[int]chan cdpReply
	wmu     sync.Mutex // one writer
	done    chan struct{}
}

type cdpReply struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Message string `json:"message"`
	} `json:"error"`
}

type cdpMessage struct {
	ID        int             `json:"id"`
	Method    string          `json:"method"`
	Params    json.RawMessage `json:"params"`
	SessionID string          `json:"sessionId"`
	cdpReply
}

// chromiumFlags are the flags docs and shared notes name for WebRTC on
// loopback in a namespace; never --virtual-time-budget (it breaks WebRTC).
func chromiumFlags(profile string) []string {
	return []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + profile,
		"--disable-features=WebRtcHideLocalIpsWithMdns", "--allow-loopback-in-peer-connection",
		// Tabs in the background must not be throttled while they call each other.
		"--disable-background-timer-throttling", "--disable-renderer-backgrounding",
		"--disable-backgrounding-occluded-windows",
		"--remote-debugging-port=0", "--window-size=1280,900", "about:blank",
	}
}

// startBrowser starts Chromium and connects to its DevTools endpoint.
func startBrowser(t *testing.T, bin string) *browser {
	t.Helper()
	profile := t.TempDir()
	cmd := exec.Command(bin, chromiumFlags(profile)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its helpers die with it
	logf, err := os.Create(filepath.Join(profile, "..", "chromium.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	b := &browser{t: t, cmd: cmd, waiters: map[int]chan cdpReply{}, done: make(chan struct{})}
	t.Cleanup(func() {
		if b.ws != nil {
			b.ws.Close()
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		logf.Close()
	})
	// Chromium writes its port and browser path to DevToolsActivePort.
	var port, path string
	deadline := time.Now().Add(20 * time.Second)
	for {
		raw, err := os.ReadFile(filepath.Join(profile, "DevToolsActivePort"))
		if lines := strings.Split(strings.TrimSpace(string(raw)), "\n"); err == nil && len(lines) == 2 {
			port, path = lines[0], lines[1]
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("chromium did not start its DevTools endpoint in 20s:\n%s", log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	ws, _, err := websocket.DefaultDialer.Dial("ws://127.0.0.1:"+port+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	ws.SetReadLimit(64 << 20) // screenshots
	b.ws = ws
	go b.read()
	return b
}

func (b *browser) read() {
	defer close(b.done)
	for {
		_, data, err := b.ws.ReadMessage()
		if err != nil {
			b.mu.Lock()
			for id, w := range b.waiters {
				close(w)
				delete(b.waiters, id)
			}
			b.mu.Unlock()
			return
		}
		var m cdpMessage
		if json.Unmarshal(data, &m) != nil {
			continue
		}
		if m.ID != 0 {
			b.mu.Lock()
			w := b.waiters[m.ID]
			delete(b.waiters, m.ID)
			b.mu.Unlock()
			if w != nil {
				w <- m.cdpReply
			}
			continue
		}
		switch m.Method {
		case "Runtime.consoleAPICalled":
			var p struct {
				Type string `json:"type"`
				Args []struct {
					Value       any    `json:"value"`
					Description string `json:"description"`
				} `json:"args"`
			}
			_ = json.Unmarshal(m.Params, &p)
			var parts []string
			for _, a := range p.Args {
				if a.Value != nil {
					parts = append(parts, fmt.Sprint(a.Value))
				} else {
					parts = append(parts, a.Description)
				}
			}
			b.t.Logf("console.%s [%s]: %s", p.Type, short(m.SessionID), strings.Join(parts, " "))
		case "Runtime.exceptionThrown":
			b.t.Logf("page exception [%s]: %s", short(m.SessionID), m.Params)
		}
	}
}

func short(s string) string {
	if len(s) > 6 {
		return s[:6]
	}
	return s
}

// call sends one command and waits for its reply.
func (b *browser) call(ctx context.Context, session, method string, params any, out any) error {
	b.mu.Lock()
	b.nextID++
	id := b.nextID
	w := make(chan cdpReply, 1)
	b.waiters[id] = w
	b.mu.Unlock()
	msg := map[string]any{"id": id, "method": method, "params": params}
	if session != "" {
		msg["sessionId"] = session
	}
	b.wmu.Lock()
	err := b.ws.WriteJSON(msg)
	b.wmu.Unlock()
	if err != nil {
		return err
	}
	select {
	case r, ok := <-w:
		if !ok {
			return fmt.Errorf("%s: browser connection closed", method)
		}
		if r.Error != nil {
			return fmt.Errorf("%s: %s", method, r.Error.Message)
		}
		if out != nil {
			return json.Unmarshal(r.Result, out)
		}
		return nil
	case <-ctx.Done():
		b.mu.Lock()
		delete(b.waiters, id)
		b.mu.Unlock()
		return fmt.Errorf("%s: %w", method, ctx.Err())
	}
}

// tab is one page.
type tab struct {
	b       *browser
	session string
	name    string
}

// open makes a new window, attaches to it and navigates to the test page
// at url.
func (b *browser) open(ctx context.Context, name, url string) *tab {
	b.t.Helper()
	return b.openWhen(ctx, name, url, "!!window.icegate")
}

// openWhen makes a new window, attaches to it, navigates to url and waits
// until the page has loaded and the expression ready is true.
func (b *browser) openWhen(ctx context.Context, name, url, ready string) *tab {
	b.t.Helper()
	var target struct {
		TargetID string `json:"targetId"`
	}
	if err := b.call(ctx, "", "Target.createTarget", map[string]any{"url": "about:blank", "newWindow": true}, &target); err != nil {
		b.t.Fatal(err)
	}
	var att struct {
		SessionID string `json:"sessionId"`
	}
	if err := b.call(ctx, "", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &att); err != nil {
		b.t.Fatal(err)
	}
	tb := &tab{b: b, session: att.SessionID, name: name}
	b.t.Logf("tab %s is session %s: %s", name, short(att.SessionID), url)
	for _, m := range []string{"Runtime.enable", "Page.enable"} {
		if err := b.call(ctx, tb.session, m, map[string]any{}, nil); err != nil {
			b.t.Fatal(err)
		}
	}
	if err := b.call(ctx, tb.session, "Emulation.setDeviceMetricsOverride",
		map[string]any{"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": false}, nil); err != nil {
		b.t.Fatal(err)
	}
	if err := b.call(ctx, tb.session, "Page.navigate", map[string]any{"url": url}, nil); err != nil {
		b.t.Fatal(err)
	}
	// Page.navigate returns before the page loads; evaluating meanwhile
	// would run in about:blank, or in a context the navigation destroys.
	deadline := time.Now().Add(20 * time.Second)
	for {
		var loaded bool
		err := tb.eval(ctx, "location.href !== 'about:blank' && document.readyState === 'complete' && ("+ready+")", &loaded)
		if err == nil && loaded {
			return tb
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("%s did not load in 20s (%v)", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// eval evaluates expr, awaiting it if it is a promise, and decodes its
// JSON value into out.
func (tb *tab) eval(ctx context.Context, expr string, out any) error {
	var r struct {
		Result struct {
			Type  string          `json:"type"`
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	err := tb.b.call(ctx, tb.session, "Runtime.evaluate", map[string]any{
		"expression": expr, "awaitPromise": true, "returnByValue": true,
	}, &r)
	if err != nil {
		return err
	}
	if e := r.ExceptionDetails; e != nil {
		return fmt.Errorf("%s: %s %s", tb.name, e.Text, e.Exception.Description)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(r.Result.Value, out)
}

// screenshot returns a PNG of the whole page.
func (tb *tab) screenshot(ctx context.Context) ([]byte, error) {
	var height int
	if err := tb.eval(ctx, "document.documentElement.scrollHeight", &height); err != nil {
		return nil, err
	}
	if err := tb.b.call(ctx, tb.session, "Emulation.setDeviceMetricsOverride",
		map[string]any{"width": 1280, "height": min(max(height, 600), 4000), "deviceScaleFactor": 1, "mobile": false}, nil); err != nil {
		return nil, err
	}
	var shot struct {
		Data string `json:"data"`
	}
	if err := tb.b.call(ctx, tb.session, "Page.captureScreenshot", map[string]any{"format": "png"}, &shot); err != nil {
		return nil, err
	}
	return base64.StdEncoding.DecodeString(shot.Data)
}
