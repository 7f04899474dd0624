package signaling

import (
	"bytes"
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
	"strings"
	"time"
)

//go:generate go run ../tools/gensioclient -lock ../tools/sioconformance/package-lock.json -out sioclient

// sioClientFS is the socket.io client library, copied unchanged out of
// the npm package socket.io-client at the version
// tools/sioconformance/package-lock.json pins (the client the socket.io
// tests run) by `go generate` (tools/gensioclient). The files are
// committed, so the build needs no npm; package.json says which version
// they are and LICENSE carries the package's MIT notice.
//
//go:embed sioclient/socket.io*.js sioclient/socket.io*.js.map sioclient/package.json
var sioClientFS embed.FS

// sioClientFile is what GET /socket.io/<name> answers for one served file.
type sioClientFile struct {
	body  []byte
	ctype string
	etag  string
}

// sioClientFiles maps each served name (socket.io.js, socket.io.min.js,
// socket.io.esm.min.js and their source maps) to its content.
var sioClientFiles = func() map[string]sioClientFile {
	sub, err := fs.Sub(sioClientFS, "sioclient")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	tags := digestTags(sub)
	files := map[string]sioClientFile{}
	names, _ := fs.Glob(sub, "socket.io*")
	for _, name := range names {
		b, err := fs.ReadFile(sub, name)
		if err != nil {
			panic(err)
		}
		// The types socket.io's server sends for them.
		ctype := "application/javascript; charset=utf-8"
		if strings.HasSuffix(name, ".map") {
			ctype = "application/json; charset=utf-8"
		}
		files[name] = sioClientFile{body: b, ctype: ctype, etag: tags["/"+name]}
	}
	return files
}()

// SocketIOClientVersion is the version of the socket.io-client package
// whose browser build icegate serves at /socket.io/socket.io.js.
var SocketIOClientVersion = func() string {
	b, err := sioClientFS.ReadFile("sioclient/package.json")
	if err != nil {
		panic(err)
	}
	var p struct {
		Version string `json:"version"`
	}
	if err := json.Unmarshal(b, &p); err != nil {
		panic(err) // generated from npm's tarball, fixed at build time
	}
	return p.Version
}()

// handleSIOClient registers GET (and HEAD) /socket.io/<name> for each
// served file on mux, before the Engine.IO endpoint sees the path: a page
// written for a socket.io server loads <script src="/socket.io/socket.io.js">
// from the server it talks to. Served also with the test page off, as a
// socket.io server serves it by default (serveClient). Like the page's
// files it carries a digest ETag and "no-cache", so a browser revalidates
// and gets 304 until an upgrade changes the file (RFC 9111 §5.2.2.4); the
// ES-module build can be imported from another origin (CORS, as
// icegate.js).
func handleSIOClient(mux *http.ServeMux) {
	for name, f := range sioClientFiles {
		mux.HandleFunc("GET /socket.io/"+name, func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h.Set("Content-Type", f.ctype)
			h.Set("ETag", f.etag)
			h.Set("Cache-Control", "no-cache")
			h.Set("Access-Control-Allow-Origin", "*")
			h.Set("X-Content-Type-Options", "nosniff")
			// ServeContent answers If-None-Match (304), HEAD and
			// ranges; the zero time sends no Last-Modified, which an
			// embedded file does not have.
			http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(f.body))
		})
	}
}
