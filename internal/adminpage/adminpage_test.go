package adminpage

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestHandler: the page and its modules are served under Prefix with the
// security headers, validators work, nothing but GET and HEAD is
// answered, no CORS header is sent, and the Node tests are not embedded.
func TestHandler(t *testing.T) {
	mux := http.NewServeMux()
	mux.Handle(Prefix, Handler())
	mux.Handle("/admin", Handler())
	srv := httptest.NewServer(mux)
	defer srv.Close()
	client := srv.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	get := func(method, path string, hdr map[string]string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}

	tests := []struct {
		path, ctype, contains string
	}{
		{"/admin/", "text/html", `<script type="module" src="admin.js">`},
		{"/admin/admin.js", "text/javascript", "textContent"},
		{"/admin/model.js", "text/javascript", "export function parseMetrics"},
		{"/admin/style.css", "text/css", "svg#chart"},
	}
	for _, tc := range tests {
		resp, body := get("GET", tc.path, map[string]string{"Origin": "http://evil.example"})
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), tc.ctype) || !strings.Contains(body, tc.contains) {
			t.Errorf("GET %s: %d %q, body has %q: %v", tc.path, resp.StatusCode, resp.Header.Get("Content-Type"), tc.contains, strings.Contains(body, tc.contains))
		}
		h := resp.Header
		if h.Get("Content-Security-Policy") != CSP || h.Get("X-Frame-Options") != "DENY" || h.Get("X-Content-Type-Options") != "nosniff" || h.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("GET %s: security headers %v", tc.path, h)
		}
		for k := range h {
			if strings.HasPrefix(k, "Access-Control-") {
				t.Errorf("GET %s: CORS header %s sent", tc.path, k)
			}
		}
		etag := h.Get("ETag")
		if etag == "" || h.Get("Cache-Control") != "no-cache" {
			t.Errorf("GET %s: no validator (ETag %q, Cache-Control %q)", tc.path, etag, h.Get("Cache-Control"))
			continue
		}
		if resp, _ := get("GET", tc.path, map[string]string{"If-None-Match": etag}); resp.StatusCode != http.StatusNotModified {
			t.Errorf("GET %s with its ETag: %d, want 304", tc.path, resp.StatusCode)
		}
	}
	if !strings.Contains(CSP, "script-src 'self'") || strings.Contains(CSP, "unsafe") || !strings.Contains(CSP, "frame-ancestors 'none'") {
		t.Errorf("CSP %q: want own scripts only, nothing unsafe, no framing", CSP)
	}

	if resp, _ := get("GET", "/admin", nil); resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/admin/" {
		t.Errorf("GET /admin: %d to %q, want a redirect to /admin/", resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, path := range []string{"/admin/test/model.test.js", "/admin/package.json", "/admin/nope.js"} {
		if resp, _ := get("GET", path, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404 (not embedded)", path, resp.StatusCode)
		}
	}
	for _, m := range []string{"POST", "DELETE", "OPTIONS"} {
		resp, _ := get(m, "/admin/", map[string]string{"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"})
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("%s /admin/: %d, want 405 without CORS", m, resp.StatusCode)
		}
	}
}
