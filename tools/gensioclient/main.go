// Command gensioclient copies the socket.io client library out of the npm
// package socket.io-client into signaling/sioclient/, which the signaling
// package embeds and serves at /socket.io/socket.io.js as a socket.io
// server does. It runs from `go generate ./signaling/`:
//
//	go run ../tools/gensioclient -lock ../tools/sioconformance/package-lock.json -out sioclient
//
// The version is the one the lock file pins (the client the socket.io tests
// run against), so what icegate serves is what it is tested with. The
// tarball comes from `npm pack socket.io-client@VERSION` and is checked
// against the lock file's sha512 integrity before anything is taken from
// it; the files are written unchanged, with the package's package.json
// (its version, for the test that pins it) and LICENSE (MIT: the notice
// travels with the copy). The generated files are committed, so building
// icegate needs no npm.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// pkg is the npm package taken.
const pkg = "socket.io-client"

// files are what a socket.io 4.8 server serves under /socket.io/ (its
// clientPathRegex: socket.io[.msgpack|.esm][.min].js[.map]), less the
// msgpack build: that one speaks socket.io-msgpack-parser, which icegate
// does not, so a page using it could never connect. package.json and
// LICENSE are not served.
var files = []string{
	"dist/socket.io.js",
	"dist/socket.io.js.map",
	"dist/socket.io.min.js",
	"dist/socket.io.min.js.map",
	"dist/socket.io.esm.min.js",
	"dist/socket.io.esm.min.js.map",
	"package.json",
	"LICENSE",
}

func main() {
	lock := flag.String("lock", "../tools/sioconformance/package-lock.json", "npm lock file that pins "+pkg)
	out := flag.String("out", "sioclient", "directory to write the files to")
	flag.Parse()
	if err := run(*lock, *out); err != nil {
		fmt.Fprintln(os.Stderr, "gensioclient:", err)
		os.Exit(1)
	}
}

func run(lockPath, out string) error {
	version, integrity, err := pinned(lockPath)
	if err != nil {
		return err
	}
	tgz, err := pack(version)
	if err != nil {
		return err
	}
	if err := checkIntegrity(tgz, integrity); err != nil {
		return fmt.Errorf("%s@%s: %w", pkg, version, err)
	}
	got, err := extract(tgz)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	for _, name := range files {
		b, ok := got[name]
		if !ok {
			return fmt.Errorf("%s@%s has no %s", pkg, version, name)
		}
		if err := os.WriteFile(filepath.Join(out, filepath.Base(name)), b, 0o644); err != nil {
			return err
		}
	}
	fmt.Printf("gensioclient: %s@%s into %s (%d files)\n", pkg, version, out, len(files))
	return nil
}

// pinned reads the version and integrity of socket.io-client from an npm
// lock file (lockfileVersion 2 or 3: the "packages" map).
func pinned(path string) (version, integrity string, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", "", err
	}
	var lock struct {
		Packages map[string]struct {
			Version   string `json:"version"`
			Integrity string `json:"integrity"`
		} `json:"packages"`
	}
	if err := json.Unmarshal(b, &lock); err != nil {
		return "", "", fmt.Errorf("%s: %w", path, err)
	}
	p, ok := lock.Packages["node_modules/"+pkg]
	if !ok || p.Version == "" || p.Integrity == "" {
		return "", "", fmt.Errorf("%s: no version and integrity for %s", path, pkg)
	}
	return p.Version, p.Integrity, nil
}

// pack fetches the package's tarball with npm's own client.
func pack(version string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "gensioclient")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	cmd := exec.Command("npm", "pack", "--silent", "--pack-destination", dir, pkg+"@"+version)
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	outb, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("npm pack %s@%s: %w", pkg, version, err)
	}
	name := strings.TrimSpace(string(outb))
	if i := strings.LastIndexByte(name, '\n'); i >= 0 {
		name = name[i+1:]
	}
	return os.ReadFile(filepath.Join(dir, filepath.Base(name)))
}

// checkIntegrity compares the tarball with the lock file's Subresource
// Integrity string ("sha512-<base64>"), the hash npm ci checks too.
func checkIntegrity(tgz []byte, integrity string) error {
	want, ok := strings.CutPrefix(integrity, "sha512-")
	if !ok {
		return fmt.Errorf("integrity %q is not sha512", integrity)
	}
	sum := sha512.Sum512(tgz)
	if got := base64.StdEncoding.EncodeToString(sum[:]); got != want {
		return fmt.Errorf("tarball sha512 %s, lock file pins %s", got, want)
	}
	return nil
}

// extract returns the regular files of an npm tarball by their path
// inside the package (the tarball's "package/" prefix removed).
func extract(tgz []byte) (map[string][]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(tgz))
	if err != nil {
		return nil, err
	}
	tr := tar.NewReader(zr)
	got := map[string][]byte{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return got, nil
		}
		if err != nil {
			return nil, err
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		_, name, ok := strings.Cut(h.Name, "/")
		if !ok {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			return nil, err
		}
		got[name] = b
	}
}
