package engineio

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"icegate/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m, "icegate/signaling/engineio.") }

func TestPayloadCodec(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []packet
		err  bool
	}{
		{in: "4hello", want: []packet{{typ: '4', data: []byte("hello")}}},
		{in: "4a\x1e4b\x1e3", want: []packet{{typ: '4', data: []byte("a")}, {typ: '4', data: []byte("b")}, {typ: '3', data: []byte{}}}},
		{in: "4hello\x1ebAQIDBA==", want: []packet{{typ: '4', data: []byte("hello")}, {typ: '4', binary: true, data: []byte{1, 2, 3, 4}}}},
		{in: "", err: true},
		{in: "abc", err: true},
		{in: "4a\x1e", err: true},
		{in: "b!!", err: true},
		{in: "7", err: true},
	} {
		var got []packet
		err := decodePayload([]byte(tc.in), func(p packet) error { got = append(got, p); return nil })
		if (err != nil) != tc.err {
			t.Errorf("%q: err %v", tc.in, err)
			continue
		}
		if tc.err {
			continue
		}
		if len(got) != len(tc.want) {
			t.Errorf("%q: %d packets, want %d", tc.in, len(got), len(tc.want))
			continue
		}
		for i := range got {
			if got[i].typ != tc.want[i].typ || got[i].binary != tc.want[i].binary || !bytes.Equal(got[i].data, tc.want[i].data) {
				t.Errorf("%q: packet %d = %+v, want %+v", tc.in, i, got[i], tc.want[i])
			}
		}
		if enc := appendPayload(nil, got); string(enc) != tc.in {
			t.Errorf("%q: re-encoded as %q", tc.in, enc)
		}
	}
}

// FuzzPayload: any polling body decodes or is refused, never panics, and
// what decodes encodes back to a payload that decodes the same.
func FuzzPayload(f *testing.F) {
	for _, s := range []string{"4hello", "4a\x1e4b", "bAQIDBA==", "2probe", "1", "6\x1e5", "abc", "\x1e\x1e"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var ps []packet
		if decodePayload(b, func(p packet) error { ps = append(ps, p); return nil }) != nil {
			return
		}
		enc := appendPayload(nil, ps)
		var again []packet
		if err := decodePayload(enc, func(p packet) error { again = append(again, p); return nil }); err != nil || len(again) != len(ps) {
			t.Fatalf("%q decoded to %d packets, re-encoded %q: %v", b, len(ps), enc, err)
		}
	})
}

func echo(s *Session) {
	var buf []byte
	for {
		b, binary, err := s.ReadMessage(buf)
		if err != nil {
			return
		}
		buf = b
		if binary {
			err = s.WriteBinary(time.Now().Add(time.Second), b)
		} else {
			err = s.WriteText(time.Now().Add(time.Second), []byte("re:"), b)
		}
		if err != nil {
			return
		}
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func post(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func handshake(t *testing.T, base string) string {
	t.Helper()
	code, body := get(t, base+"?EIO=4&transport=polling")
	if code != 200 || body[0] != '0' {
		t.Fatalf("handshake: %d %q", code, body)
	}
	var open struct{ SID string }
	if err := json.Unmarshal([]byte(body[1:]), &open); err != nil {
		t.Fatal(err)
	}
	return open.SID
}

// TestPollingUpgrade runs a session through polling, the upgrade (with a
// message queued during it), WebSocket, and a server close.
func TestPollingUpgrade(t *testing.T) {
	srv := NewServer(Config{PingInterval: time.Hour, PingTimeout: time.Hour}, echo)
	hs := httptest.NewServer(srv)
	defer hs.Close()
	defer srv.Close()
	base := hs.URL + "/engine.io/"
	sid := handshake(t, base)
	q := base + "?EIO=4&transport=polling&sid=" + sid
	if code, body := post(t, q, "4one\x1ebAQI="); code != 200 || body != "ok" {
		t.Fatalf("post: %d %q", code, body)
	}
	if code, body := get(t, q); code != 200 || body != "4re:one\x1ebAQI=" {
		t.Fatalf("poll: %d %q", code, body)
	}
	// Upgrade; a message posted between probe and upgrade comes back on
	// the WebSocket.
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(base, "http")+"?EIO=4&transport=websocket&sid="+sid, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	_ = ws.WriteMessage(websocket.TextMessage, []byte("2probe"))
	if _, b, err := ws.ReadMessage(); err != nil || string(b) != "3probe" {
		t.Fatalf("probe answer %q %v", b, err)
	}
	if code, body := post(t, q, "4two"); code != 200 || body != "ok" {
		t.Fatalf("post during upgrade: %d %q", code, body)
	}
	_ = ws.WriteMessage(websocket.TextMessage, []byte("5"))
	if _, b, err := ws.ReadMessage(); err != nil || string(b) != "4re:two" {
		t.Fatalf("flushed %q %v", b, err)
	}
	_ = ws.WriteMessage(websocket.BinaryMessage, []byte{9})
	if mt, b, err := ws.ReadMessage(); err != nil || mt != websocket.BinaryMessage || !bytes.Equal(b, []byte{9}) {
		t.Fatalf("binary %v %v %v", mt, b, err)
	}
	if code, _ := get(t, q); code != 400 {
		t.Fatalf("poll after upgrade: %d", code)
	}
	if srv.Sessions() != 1 {
		t.Fatalf("%d sessions", srv.Sessions())
	}
}

func TestErrors(t *testing.T) {
	srv := NewServer(Config{MaxPayload: 100}, echo)
	hs := httptest.NewServer(srv)
	defer hs.Close()
	defer srv.Close()
	base := hs.URL + "/engine.io/"
	for _, tc := range []struct {
		method, query string
		code          int
		body          string
	}{
		{"GET", "?transport=polling", 400, `{"code":5,"message":"Unsupported protocol version"}`},
		{"GET", "?EIO=3&transport=polling", 400, `{"code":5,"message":"Unsupported protocol version"}`},
		{"GET", "?EIO=4&transport=carrier-pigeon", 400, `{"code":0,"message":"Transport unknown"}`},
		{"POST", "?EIO=4&transport=polling", 400, `{"code":2,"message":"Bad handshake method"}`},
		{"GET", "?EIO=4&transport=polling&sid=nope", 400, `{"code":1,"message":"Session ID unknown"}`},
		{"GET", "?EIO=4&transport=websocket", 400, `{"code":3,"message":"Bad request"}`},
	} {
		req, _ := http.NewRequest(tc.method, base+tc.query, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || string(b) != tc.body {
			t.Errorf("%s %s: %d %s, want %d %s", tc.method, tc.query, resp.StatusCode, b, tc.code, tc.body)
		}
	}
	// A payload over maxPayload ends the session with 413.
	sid := handshake(t, base)
	q := base + "?EIO=4&transport=polling&sid=" + sid
	if code, _ := post(t, q, "4"+strings.Repeat("x", 200)); code != 413 {
		t.Fatalf("large post: %d", code)
	}
	if code, _ := get(t, q); code != 400 {
		t.Fatalf("poll after 413: %d", code)
	}
	// Garbage over WebSocket closes that session only.
	other := handshake(t, base)
	ws, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(base, "http")+"?EIO=4&transport=websocket", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	_, _, _ = ws.ReadMessage() // open
	_ = ws.WriteMessage(websocket.TextMessage, []byte("\xff\x00garbage"))
	if _, _, err := ws.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseProtocolError) {
		t.Fatalf("after garbage: %v", err)
	}
	q = base + "?EIO=4&transport=polling&sid=" + other
	if code, body := post(t, q, "4still"); code != 200 || body != "ok" {
		t.Fatalf("neighbour: %d %q", code, body)
	}
}

// TestIdleMemory measures what an idle long-polling session costs the
// heap (no goroutine of its own), and fails if it grows past a bound.
func TestIdleMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	srv := NewServer(Config{ManualPing: true}, func(s *Session) { <-s.Done() })
	defer srv.Close()
	const n = 2000
	req := httptest.NewRequest("GET", "/engine.io/?EIO=4&transport=polling", nil)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	g0 := runtime.NumGoroutine()
	for range n {
		srv.ServeHTTP(httptest.NewRecorder(), req)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := (after.HeapAlloc - before.HeapAlloc) / n
	stack := (after.StackInuse - before.StackInuse) / n
	goroutines := runtime.NumGoroutine() - g0
	t.Logf("idle polling session: %d bytes of heap, %d of stack, %d goroutines each (the handler's)", per, stack, goroutines/n)
	if per > 8192 { // ~1.7 KB measured; the bound catches a buffer or goroutine per session
		t.Errorf("an idle session costs %d bytes of heap", per)
	}
}
