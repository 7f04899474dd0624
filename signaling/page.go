package signaling

import (
	"embed"
	"io/fs"
	"net/http"
)

// web holds the test page: index.html, app.js and style.css, served at /.
//
//go:embed web
var web embed.FS

func pageHandler() http.Handler {
	sub, err := fs.Sub(web, "web")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return http.FileServerFS(sub)
}
