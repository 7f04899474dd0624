// Package adminpage owns the admin page: the operator's view of one node
// (its load, live allocations and signaling sessions with kick buttons,
// top users by relayed bytes, a relayed bit-rate chart), embedded in the
// binary and served on the metrics listener next to the admin API it
// calls (docs/operations.md, "Admin page").
//
// The page holds no secret of its own: it asks the operator for one of
// api.keys and sends it as "Authorization: Bearer KEY" to the admin API on
// its own origin. Its files are public; everything it shows comes from the
// API, so without a key it shows nothing.
package adminpage

import (
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"io/fs"
	"net/http"
	"strings"
)

// Prefix is where Handler expects to be mounted.
const Prefix = "/admin/"

// web holds the page: index.html, its ES modules and style.css. Named by
// pattern so that the Node tests (web/test/) are not embedded.
//
//go:embed web/*.html web/*.js web/*.css
var web embed.FS

var files = func() fs.FS {
	sub, err := fs.Sub(web, "web")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return sub
}()

// etags holds a strong validator per file, a digest of its content:
// embedded files have no modification time, so with "no-cache" a browser
// revalidates with If-None-Match and gets 304 until an upgrade changes the
// file (RFC 9111 §5.2.2.4, RFC 9110 §8.8.3).
var etags = func() map[string]string {
	tags := map[string]string{}
	_ = fs.WalkDir(files, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(files, path)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		tags["/"+path] = `"` + base64.RawURLEncoding.EncodeToString(sum[:16]) + `"`
		return nil
	})
	return tags
}()

// CSP is the page's Content-Security-Policy: scripts, styles and fetches
// from its own origin only, no inline script (a string that slipped past
// escaping could not run), no framing (clickjacking a kick button), no
// form posting elsewhere, no <base> rewriting the module URLs.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Handler serves the page under Prefix (mount it at Prefix; Prefix without
// its slash redirects there). It answers GET and HEAD only and sets no
// Access-Control-* header: a page on another origin can neither read the
// files nor, since the admin API sets none either, call the API with a
// key (its preflight for the Authorization header fails).
func Handler() http.Handler {
	fileServer := http.StripPrefix(strings.TrimSuffix(Prefix, "/"), http.FileServerFS(files))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "use GET", http.StatusMethodNotAllowed)
			return
		}
		if r.URL.Path == strings.TrimSuffix(Prefix, "/") {
			http.Redirect(w, r, Prefix, http.StatusMovedPermanently)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", CSP)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		p := strings.TrimPrefix(r.URL.Path, strings.TrimSuffix(Prefix, "/"))
		if strings.HasSuffix(p, "/") {
			p += "index.html"
		}
		if tag, ok := etags[p]; ok {
			h.Set("ETag", tag)
			h.Set("Cache-Control", "no-cache")
		}
		fileServer.ServeHTTP(w, r)
	})
}
