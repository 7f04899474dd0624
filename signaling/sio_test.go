package signaling

import (
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"icegate/internal/nodetest"
)

// runSIOClient runs scenario of testdata/sioclient.mjs, the real npm
// socket.io-client, against url.
func runSIOClient(t *testing.T, url, scenario, transports, token string) {
	t.Helper()
	dir, node := nodetest.Dir(t)
	tmp := t.TempDir()
	nodetest.LinkModules(t, dir, tmp)
	src, err := filepath.Abs("testdata/sioclient.mjs")
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(tmp, "sioclient.mjs")
	if err := exec.Command("cp", src, script).Run(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node, script, url, scenario, transports, token)
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("%s over %s: %v\n%s", scenario, transports, err, out)
	}
}

// TestSocketIOClient runs both vocabularies with socket.io-client 4.8
// over polling only, WebSocket only and the default (polling, then the
// upgrade), and checks the server is left with nothing.
func TestSocketIOClient(t *testing.T) {
	s := newTestServer(t, nil)
	hs := httptest.NewServer(s.Handler())
	defer hs.Close()
	for _, scenario := range []string{"rooms", "codelab"} {
		for _, transports := range []string{"polling", "websocket", "upgrade"} {
			t.Run(scenario+"/"+transports, func(t *testing.T) {
				runSIOClient(t, hs.URL, scenario, transports, "")
			})
		}
	}
	t.Run("mixed", func(t *testing.T) { runSIOClient(t, hs.URL, "mixed", "", "") })
	t.Run("upgraded", func(t *testing.T) { runSIOClient(t, hs.URL, "upgraded", "upgrade", "") })
	eventually(t, "every socket.io session gone", func() bool {
		st := s.Stats()
		return st.Connections == 0 && st.Peers == 0 && st.Rooms == 0 && s.eio.Sessions() == 0
	})
}

// TestSocketIOTokens: a token in the CONNECT packet's auth or in the
// query; none gets a CONNECT_ERROR with code bad-token.
func TestSocketIOTokens(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.TokenSecrets = []string{"token-secret-0123456789abcdef"} })
	hs := httptest.NewServer(s.Handler())
	defer hs.Close()
	tok, err := MintToken("token-secret-0123456789abcdef", Claims{Subject: "alice", Expiry: time.Now().Add(time.Hour).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	runSIOClient(t, hs.URL, "tokens", "polling", tok)
	runSIOClient(t, hs.URL, "tokens", "websocket", tok)
}
