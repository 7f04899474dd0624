package signaling

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"icegate/internal/nodetest"
)

// TestSIOClientFiles: GET /socket.io/socket.io.js and its siblings come
// with socket.io's Content-Types, a validator that gives 304, CORS for
// the module build, and also with the test page off; the msgpack build
// (a parser icegate does not speak) is not served as a script.
func TestSIOClientFiles(t *testing.T) {
	get := func(base, path string, h http.Header) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		for k, v := range h {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, b
	}
	for _, off := range []bool{false, true} {
		_, hs := httpServer(t, func(c *Config) { c.NoTestPage = off })
		for _, tc := range []struct{ name, ctype, contains string }{
			{"socket.io.js", "application/javascript; charset=utf-8", "Socket.IO v" + SocketIOClientVersion},
			{"socket.io.min.js", "application/javascript; charset=utf-8", "sourceMappingURL=socket.io.min.js.map"},
			{"socket.io.esm.min.js", "application/javascript; charset=utf-8", "export{"},
			{"socket.io.js.map", "application/json; charset=utf-8", `"mappings"`},
			{"socket.io.min.js.map", "application/json; charset=utf-8", `"mappings"`},
			{"socket.io.esm.min.js.map", "application/json; charset=utf-8", `"mappings"`},
		} {
			path := "/socket.io/" + tc.name
			resp, body := get(hs.URL, path, nil)
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != tc.ctype || !bytes.Contains(body, []byte(tc.contains)) {
				t.Errorf("%s (test page off %v): %d %q, want 200 %s containing %q", path, off, resp.StatusCode, resp.Header.Get("Content-Type"), tc.ctype, tc.contains)
				continue
			}
			if want, _ := sioClientFS.ReadFile("sioclient/" + tc.name); !bytes.Equal(body, want) {
				t.Errorf("%s: body differs from the embedded file", path)
			}
			tag := resp.Header.Get("ETag")
			if tag == "" || resp.Header.Get("Cache-Control") != "no-cache" || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
				t.Errorf("%s: ETag %q, Cache-Control %q, Access-Control-Allow-Origin %q: want a validator, no-cache, *", path, tag, resp.Header.Get("Cache-Control"), resp.Header.Get("Access-Control-Allow-Origin"))
				continue
			}
			again, rest := get(hs.URL, path, http.Header{"If-None-Match": {tag}})
			if again.StatusCode != http.StatusNotModified || len(rest) != 0 {
				t.Errorf("%s with If-None-Match %s: %d with %d bytes, want 304 and none", path, tag, again.StatusCode, len(rest))
			}
		}
		// The query string a page may add to bust caches is ignored, as
		// socket.io's server ignores it.
		if resp, _ := get(hs.URL, "/socket.io/socket.io.js?v=1", nil); resp.StatusCode != 200 {
			t.Errorf("/socket.io/socket.io.js?v=1: %d, want 200", resp.StatusCode)
		}
		for _, path := range []string{"/socket.io/socket.io.msgpack.min.js", "/socket.io/package.json", "/socket.io/LICENSE"} {
			if resp, _ := get(hs.URL, path, nil); resp.StatusCode == 200 {
				t.Errorf("%s: 200 (%s), want it not served", path, resp.Header.Get("Content-Type"))
			}
		}
	}
}

// TestSIOClientVersion: the embedded client is the one the lock file pins
// (the one the socket.io tests run), and, where `make deps` installed it,
// byte for byte the file npm installed (npm ci checks the tarball's
// sha512 against the lock file). A bump of the lock file without `go
// generate ./signaling/` fails here.
func TestSIOClientVersion(t *testing.T) {
	lockPath := filepath.Join("..", "tools", "sioconformance", "package-lock.json")
	b, err := os.ReadFile(lockPath)
	if err != nil {
		t.Fatal(err)
	}
	var lock struct {
		Packages map[string]struct {
			Version string `json:"version"`
		} `json:"packages"`
	}
	if err := json.Unmarshal(b, &lock); err != nil {
		t.Fatal(err)
	}
	want := lock.Packages["node_modules/socket.io-client"].Version
	if want == "" || SocketIOClientVersion != want {
		t.Fatalf("embedded socket.io-client %q, %s pins %q: run go generate ./signaling/", SocketIOClientVersion, lockPath, want)
	}
	installed := filepath.Join("..", "tools", "sioconformance", "node_modules", "socket.io-client", "dist")
	if _, err := os.Stat(installed); err != nil {
		t.Logf("npm packages not installed (%v): compared the version only", err)
		return
	}
	for name, f := range sioClientFiles {
		disk, err := os.ReadFile(filepath.Join(installed, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(disk, f.body) {
			t.Errorf("embedded %s differs from %s: run go generate ./signaling/", name, filepath.Join(installed, name))
		}
	}
}

// TestSIOClientScript: a page that loads /socket.io/socket.io.js gets io,
// and that io talks to the server: testdata/sioscript.mjs fetches the
// script over HTTP, runs it as a classic script in a fresh global, and
// joins a room with it over WebSocket.
func TestSIOClientScript(t *testing.T) {
	dir, node := nodetest.Dir(t)
	s := newTestServer(t, nil)
	hs := httptest.NewServer(s.Handler())
	defer hs.Close()
	tmp := t.TempDir()
	nodetest.LinkModules(t, dir, tmp)
	src, err := os.ReadFile(filepath.Join("testdata", "sioscript.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(tmp, "sioscript.mjs")
	if err := os.WriteFile(script, src, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(node, script, hs.URL).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("node sioscript.mjs: %v\n%s", err, out)
	}
	eventually(t, "the page's socket.io session gone", func() bool {
		st := s.Stats()
		return st.Connections == 0 && st.Rooms == 0 && s.eio.Sessions() == 0
	})
}
