package signaling

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	pionturn "github.com/pion/turn/v5"

	"icegate/config"
	"icegate/turn"
)

// TestCredentialsWorkOnTheRelay allocates on a real relay (loopback) with the
// credentials hello hands out, and checks that the relay's decisions about
// those requests reach the peer, and only that peer.
func TestCredentialsWorkOnTheRelay(t *testing.T) {
	// The relay is built from a config file's schema (test code may use it);
	// the signaling server from its own Config, naming what the relay serves,
	// as cmd/icegate does.
	cfg, err := config.Default()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen.Addresses = []string{"127.0.0.1"}
	cfg.Listen.Port = freeUDPPort(t)
	cfg.Listen.TLS, cfg.Listen.DTLS, cfg.Listen.TCP = new(bool), new(bool), new(bool)
	cfg.Relay.IPv4Bind, cfg.Relay.IPv4Public, cfg.Relay.IPv6Bind = "127.0.0.1", "127.0.0.1", ""
	cfg.Relay.MinPort, cfg.Relay.MaxPort = 52000, 52999
	cfg.Relay.PrivateOK = ptrTrue()
	cfg.Auth.Secrets = []string{testSecret}
	if diags := cfg.Validate(); diags.HasErrors() {
		t.Fatalf("config: %s", config.FormatDiagnostics(diags))
	}
	s, err := New(Config{Relay: Relay{Port: cfg.Listen.Port, UDP: true}}, Options{Secret: func() string { return testSecret }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	relay, err := turn.New(cfg, turn.Options{Events: func(e turn.Event) { s.RelayEvent(RelayEvent(e)) }})
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()

	a := connect(t, s, pipeOpts{AcceptOptions: AcceptOptions{Host: "127.0.0.1"}})
	other := connect(t, s, pipeOpts{})
	for _, c := range []*client{a, other} {
		c.send(`{"type":"turn-events","on":true,"id":1}`)
		c.expect("ack")
	}
	servers := a.hello["ice_servers"].([]any)
	turnSrv := servers[len(servers)-1].(map[string]any)
	urls := str(turnSrv["urls"])
	if !strings.Contains(urls, "turn:127.0.0.1:") || strings.Contains(urls, "transport=tcp") {
		t.Fatalf("urls with TCP and TLS off: %s", urls)
	}

	// Allocate with the peer's credentials.
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	addr := net.JoinHostPort("127.0.0.1", str(cfg.Listen.Port))
	c, err := pionturn.NewClient(&pionturn.ClientConfig{
		STUNServerAddr: addr, TURNServerAddr: addr, Conn: conn,
		Username: turnSrv["username"].(string), Password: turnSrv["credential"].(string),
		Realm: cfg.Realm,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	rc, err := c.Allocate()
	if err != nil {
		t.Fatalf("allocate with the hello credentials: %v", err)
	}
	defer rc.Close()

	want := map[string]bool{"authenticated": false, "allocation-created": false}
	deadline := time.After(5 * time.Second)
	for !want["authenticated"] || !want["allocation-created"] {
		select {
		case m := <-a.msgs:
			if m["type"] != "turn" {
				t.Fatalf("unexpected %v", m)
			}
			ev := m["event"].(map[string]any)
			want[ev["kind"].(string)] = true
			if ev["kind"] == "allocation-created" && !strings.Contains(str(ev["detail"]), "relay 127.0.0.1:52") {
				t.Errorf("allocation event: %v", ev)
			}
		case <-deadline:
			t.Fatalf("relay decisions not seen: %v", want)
		}
	}
	other.quiet(100 * time.Millisecond)
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

func ptrTrue() *bool {
	b := true
	return &b
}
