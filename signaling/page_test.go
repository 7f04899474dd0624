package signaling

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestPageFiles checks what the page and the client are served with: the
// module script's Content-Type (browsers refuse a module served as
// anything but JavaScript), the validator that lets a browser revalidate,
// the icon, and icegate.js also with the test page off.
func TestPageFiles(t *testing.T) {
	_, hs := httpServer(t, nil)
	get := func(base, path string, h http.Header) (*http.Response, string) {
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
		return resp, string(b)
	}
	for _, tc := range []struct{ path, ctype, contains string }{
		{"/", "text/html", `<script type="module" src="app.js">`},
		{"/app.js", "text/javascript", "import "},
		{"/icegate.js", "text/javascript", "export function connect("},
		{"/nat.js", "text/javascript", "export function natVerdict("},
		{"/verdict.js", "text/javascript", "export function explain("},
		{"/favicon.svg", "image/svg+xml", "<svg"},
		{"/style.css", "text/css", "--calm"},
	} {
		resp, body := get(hs.URL, tc.path, nil)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), tc.ctype) || !strings.Contains(body, tc.contains) {
			t.Errorf("%s: %d %q, want 200 %s containing %q", tc.path, resp.StatusCode, resp.Header.Get("Content-Type"), tc.ctype, tc.contains)
			continue
		}
		tag := resp.Header.Get("ETag")
		if tag == "" || resp.Header.Get("Cache-Control") != "no-cache" {
			t.Errorf("%s: ETag %q, Cache-Control %q: want a validator and no-cache", tc.path, tag, resp.Header.Get("Cache-Control"))
			continue
		}
		again, _ := get(hs.URL, tc.path, http.Header{"If-None-Match": {tag}})
		if again.StatusCode != http.StatusNotModified {
			t.Errorf("%s with If-None-Match %s: %d, want 304", tc.path, tag, again.StatusCode)
		}
	}
	if resp, _ := get(hs.URL, "/icegate.js", nil); resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("/icegate.js: Access-Control-Allow-Origin %q, want * (module scripts load in CORS mode)", resp.Header.Get("Access-Control-Allow-Origin"))
	}
	// The page's Node tests and package.json are not part of the binary.
	for _, path := range []string{"/package.json", "/test/nat.test.js"} {
		if resp, _ := get(hs.URL, path, nil); resp.StatusCode != 404 {
			t.Errorf("%s: %d, want 404 (not embedded)", path, resp.StatusCode)
		}
	}

	_, off := httpServer(t, func(c *Config) { c.NoTestPage = true })
	if resp, body := get(off.URL, "/icegate.js", nil); resp.StatusCode != 200 || !strings.Contains(body, "export function connect(") {
		t.Errorf("/icegate.js with test_page = false: %d, want 200: it is for applications", resp.StatusCode)
	}
	if resp, _ := get(off.URL, "/app.js", nil); resp.StatusCode != 404 {
		t.Errorf("/app.js with test_page = false: %d, want 404", resp.StatusCode)
	}
}
