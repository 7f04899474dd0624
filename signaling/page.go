package signaling

import (
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"io/fs"
	"net/http"
	"strings"
)

// web holds the test page (index.html, its ES modules, style.css and the
// icon), served at /, and the signaling client icegate.js, served at
// /icegate.js. Named by pattern so that the page's Node tests
// (web/test/) and web/package.json are not embedded.
//
//go:embed web/*.html web/*.js web/*.css web/*.svg
var web embed.FS

// pageFiles is the embedded tree with the web/ prefix removed.
var pageFiles = func() fs.FS {
	sub, err := fs.Sub(web, "web")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return sub
}()

// pageETags holds a strong validator per embedded file, a digest of its
// content. Embedded files have no modification time, so without it a
// browser would have nothing to revalidate with: with "no-cache" and an
// ETag it asks each time and gets 304 Not Modified until an upgrade
// changes the file (RFC 9111 §5.2.2.4, RFC 9110 §8.8.3).
var pageETags = digestTags(pageFiles)

// digestTags returns a strong ETag per file of fsys, keyed by its path
// with a leading slash: the first 128 bits of its SHA-256, which change
// exactly when the content does.
func digestTags(fsys fs.FS) map[string]string {
	tags := map[string]string{}
	_ = fs.WalkDir(fsys, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, path)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		tags["/"+path] = `"` + base64.RawURLEncoding.EncodeToString(sum[:16]) + `"`
		return nil
	})
	return tags
}

// pageHandler serves the embedded files with their validators; the file
// server answers If-None-Match from the ETag set here.
func pageHandler() http.Handler {
	files := http.FileServerFS(pageFiles)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if strings.HasSuffix(p, "/") {
			p += "index.html"
		}
		if tag, ok := pageETags[p]; ok {
			w.Header().Set("ETag", tag)
			w.Header().Set("Cache-Control", "no-cache")
		}
		files.ServeHTTP(w, r)
	})
}

// clientHandler serves icegate.js, the ES-module client for /ws
// (docs/signaling.md), also when the test page is off: it is for
// applications. Module scripts are fetched in CORS mode, so a page on
// another origin can import it only with Access-Control-Allow-Origin; it
// is a public static file sent without credentials, so any origin may.
func clientHandler(page http.Handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		page.ServeHTTP(w, r)
	}
}
