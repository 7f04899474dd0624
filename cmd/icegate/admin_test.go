package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"icegate/auth"
	"icegate/steer"
)

// TestAdminAPI runs the binary with api.keys and drives its admin API with
// `icegate admin`: list allocations by user and custom identifier, show
// one, the usage query, drain (a new Allocate refused) and undrain, kick
// an allocation (relaying stops, the client's next Allocate-bound request
// fails), kick a user; a wrong key is refused; the relayed counters and the
// usage line show the traffic.
func TestAdminAPI(t *testing.T) {
	dir := t.TempDir()
	port, metricsPort := freeTCPUDPPort(t), freeTCPUDPPort(t)
	const key = "admin-test-key-0123456789abcdef0123456789"
	cfgFile := filepath.Join(dir, "icegate.hcl")
	src := fmt.Sprintf(`log { format = "json" }
listen {
  addresses = ["127.0.0.1"]
  port      = %d
  tls_port  = %d
  dtls      = false
}
relay {
  min_port    = 23000
  max_port    = 23999
  ipv4_bind   = "127.0.0.1"
  ipv4_public = "127.0.0.1"
  ipv6_bind   = ""
  private_ok  = true
}
auth {
  secrets = ["admin-test-secret-0123456789"]
  user "alice" { password = "wonderland" }
}
policy { presets = ["loopback"] }
metrics { listen = "127.0.0.1:%d" }
http { listen = "" }
api { keys = [%q] }
usage { retention = "2h" }
shutdown_grace = "1s"
`, port, freeTCPUDPPort(t), metricsPort, key)
	if err := os.WriteFile(cfgFile, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startServe(t, cfgFile)
	p.waitLog(0, "icegate ready")
	server := fmt.Sprintf("127.0.0.1:%d", port)
	base := fmt.Sprintf("http://127.0.0.1:%d", metricsPort)

	admin := func(args ...string) (map[string]any, error) {
		var out, errb bytes.Buffer
		err := run(context.Background(), append([]string{"admin", "-url", base, "-key", key}, args...), &out, &errb)
		if err != nil {
			return nil, err
		}
		var v map[string]any
		if jerr := json.Unmarshal(out.Bytes(), &v); jerr != nil {
			t.Fatalf("admin %v: not JSON: %v\n%s", args, jerr, out.String())
		}
		return v, nil
	}
	mustAdmin := func(args ...string) map[string]any {
		t.Helper()
		v, err := admin(args...)
		if err != nil {
			t.Fatalf("admin %v: %v", args, err)
		}
		return v
	}

	peer := udpEchoPeer(t, "127.0.0.1")
	alice, err := turnRelay(t, server, "alice", "wonderland")
	if err != nil {
		t.Fatal(err)
	}
	tenantUser, tenantPass, _ := auth.MintREST("admin-test-secret-0123456789", "tenant-9", time.Hour, time.Now(), ":")
	tenant, err := turnRelay(t, server, tenantUser, tenantPass)
	if err != nil {
		t.Fatal(err)
	}
	if !echoes(alice, peer) || !echoes(tenant, peer) {
		t.Fatal("no echo through the relay")
	}

	// Listing and filters.
	all := mustAdmin("list")["allocations"].([]any)
	if len(all) != 2 {
		t.Fatalf("%d allocations listed, want 2: %v", len(all), all)
	}
	byCustom := mustAdmin("list", "-custom-id", "tenant-9")["allocations"].([]any)
	if len(byCustom) != 1 {
		t.Fatalf("custom id filter: %v", byCustom)
	}
	tenantAlloc := byCustom[0].(map[string]any)
	if tenantAlloc["user"] != "tenant-9" || tenantAlloc["transport"] != "udp" || tenantAlloc["bytes_to_peer"].(float64) < 4 {
		t.Errorf("tenant's allocation %v", tenantAlloc)
	}
	id := tenantAlloc["id"].(string)
	if shown := mustAdmin("show", id); shown["relay"] != tenantAlloc["relay"] {
		t.Errorf("show %s: %v", id, shown)
	}

	// Usage: what the tenant relayed so far.
	rows := mustAdmin("usage", "-custom-id", "tenant-9")["usage"].([]any)
	if len(rows) != 1 || rows[0].(map[string]any)["bytes_to_peer"].(float64) < 4 {
		t.Errorf("usage of tenant-9: %v", rows)
	}

	// A wrong key.
	if _, err := run2(base, "not-the-key-0123456789abcdef0123456789", "list"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("a wrong key: %v, want 401", err)
	}

	// Without a cluster the node list is this node's scope, and empty.
	if d := mustAdmin("nodes"); d["scope"] != "node" || len(d["nodes"].([]any)) != 0 {
		t.Errorf("nodes without a cluster: %v", d)
	}

	// Drain: a new Allocate is refused; undrain takes it back.
	if d := mustAdmin("drain"); d["draining"] != true {
		t.Errorf("drain: %v", d)
	}
	if d := mustAdmin("status"); d["draining"] != true || d["allocations"].(float64) != 2 {
		t.Errorf("status while draining: %v", d)
	}
	if _, err := turnRelay(t, server, "alice", "wonderland"); err == nil {
		t.Error("an Allocate succeeded while draining")
	}
	if d := mustAdmin("undrain"); d["draining"] != false || d["changed"] != true {
		t.Errorf("undrain: %v", d)
	}
	if _, err := turnRelay(t, server, "alice", "wonderland"); err != nil {
		t.Errorf("an Allocate after undrain: %v", err)
	}

	// Kick one: relaying stops; the others go on.
	if k := mustAdmin("kick", id); k["kicked"].(float64) != 1 {
		t.Errorf("kick: %v", k)
	}
	if echoes(tenant, peer) {
		t.Error("the kicked allocation still relays")
	}
	if !echoes(alice, peer) {
		t.Error("alice's allocation stopped relaying after another one was kicked")
	}
	if _, err := admin("show", id); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("show a kicked allocation: %v, want 404", err)
	}
	rec := p.waitLog(0, "allocation usage")
	if rec["custom_id"] != "tenant-9" || rec["rb"] == nil || rec["sb"] == nil {
		t.Errorf("usage line %v", rec)
	}

	// Kick a user: both of alice's.
	if k := mustAdmin("kick", "-user", "alice"); k["kicked"].(float64) != 2 {
		t.Errorf("kick -user alice: %v", k)
	}
	if echoes(alice, peer) {
		t.Error("alice's allocation still relays after kick -user")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if n := len(mustAdmin("list")["allocations"].([]any)); n == 0 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("%d allocations left after kicking them all", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if v := metric(t, base+"/metrics", `icegate_relayed_packets_total{direction="client_to_peer",transport="udp"}`); v == "" || v == "0" {
		t.Errorf("icegate_relayed_packets_total client_to_peer udp = %q", v)
	}
	if v := metric(t, base+"/metrics", "icegate_allocations_kicked_total"); v != "3" {
		t.Errorf("icegate_allocations_kicked_total = %q, want 3", v)
	}
	// Without signaling, sessions are not found.
	if _, err := admin("list", "-sessions"); err == nil || !strings.Contains(err.Error(), "signaling is off") {
		t.Errorf("sessions without signaling: %v", err)
	}
}

// run2 calls `icegate admin` with another key.
func run2(base, key string, args ...string) (string, error) {
	var out, errb bytes.Buffer
	err := run(context.Background(), append([]string{"admin", "-url", base, "-key", key}, args...), &out, &errb)
	return out.String(), err
}

// TestAdminNodes: in a cluster the node list is every steering record, its
// NONCE left out (a 300's credential, not for display).
func TestAdminNodes(t *testing.T) {
	a := &adminAPI{keys: func() []string { return []string{"k"} }, log: slog.New(slog.DiscardHandler),
		nodes: func() []steer.Node {
			return []steer.Node{{ID: "a", Host: "turn-a.example.com", Port: 3478, Nonce: "secret-nonce",
				Load: steer.Load{Allocations: 3, Capacity: 100, BitRate: 8000, CPU: 0.25}}, {ID: "b", Port: 3478}}
		}}
	req := httptest.NewRequest("GET", "/api/v1/admin/nodes", nil)
	req.Header.Set("Authorization", "Bearer k")
	rec := httptest.NewRecorder()
	a.handler().ServeHTTP(rec, req)
	var got nodeList
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || rec.Code != 200 {
		t.Fatalf("%d %s (%v)", rec.Code, rec.Body, err)
	}
	if got.Scope != "cluster" || len(got.Nodes) != 2 || got.Nodes[0].ID != "a" || got.Nodes[0].Allocations != 3 || got.Nodes[0].BitRate != 8000 {
		t.Errorf("nodes: %+v", got)
	}
	if strings.Contains(rec.Body.String(), "secret-nonce") {
		t.Errorf("the NONCE is shown: %s", rec.Body)
	}
}
