package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAdminDrainStatus: the admin API's drain and undrain update systemd's
// STATUS as SIGUSR1 does; during the shutdown's grace period an undrain is
// refused (409) and a new Allocate still fails, while a live allocation
// keeps relaying.
func TestAdminDrainStatus(t *testing.T) {
	notify := listenNotify(t)
	dir := t.TempDir()
	port, metricsPort := freeTCPUDPPort(t), freeTCPUDPPort(t)
	const key = "admin-drain-key-0123456789abcdef0123456789"
	cfgFile := filepath.Join(dir, "icegate.hcl")
	src := fmt.Sprintf(`log { format = "json" }
listen {
  addresses = ["127.0.0.1"]
  port      = %d
  tls_port  = %d
  dtls      = false
}
relay {
  min_port    = 24000
  max_port    = 24999
  ipv4_bind   = "127.0.0.1"
  ipv4_public = "127.0.0.1"
  ipv6_bind   = ""
  private_ok  = true
}
auth {
  user "alice" { password = "wonderland" }
}
policy { presets = ["loopback"] }
metrics { listen = "127.0.0.1:%d" }
http { listen = "" }
api { keys = [%q] }
shutdown_grace = "20s"
`, port, freeTCPUDPPort(t), metricsPort, key)
	if err := os.WriteFile(cfgFile, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startServe(t, cfgFile, "NOTIFY_SOCKET="+notify.path)
	notify.next(t, "READY=1")
	server := fmt.Sprintf("127.0.0.1:%d", port)
	base := fmt.Sprintf("http://127.0.0.1:%d", metricsPort)

	if _, err := run2(base, key, "drain"); err != nil {
		t.Fatal(err)
	}
	if m := notify.next(t, "STATUS=draining: new allocations refused"); m == "" {
		t.Fatal("no STATUS after drain")
	}
	if _, err := run2(base, key, "undrain"); err != nil {
		t.Fatal(err)
	}
	notify.next(t, "STATUS=serving")

	peer := udpEchoPeer(t, "127.0.0.1")
	live, err := turnRelay(t, server, "alice", "wonderland")
	if err != nil {
		t.Fatal(err)
	}
	if !echoes(live, peer) {
		t.Fatal("no echo through the relay")
	}
	// The shutdown: the live allocation holds the grace period open.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	notify.until(t, "STOPPING=1")
	out, err := run2(base, key, "undrain")
	if err == nil || !strings.Contains(err.Error(), "409") {
		t.Fatalf("undrain during the shutdown: %v %s, want 409", err, out)
	}
	if _, err := turnRelay(t, server, "alice", "wonderland"); err == nil {
		t.Error("an Allocate succeeded after an undrain during the shutdown")
	}
	if !echoes(live, peer) {
		t.Error("the live allocation stopped relaying during the grace period")
	}
	if d, err := run2(base, key, "status"); err != nil || !strings.Contains(d, `"draining": true`) {
		t.Errorf("status during the shutdown: %v %s", err, d)
	}
	_ = live.Close() // refresh 0: the grace period ends early
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the server did not stop when its last allocation left")
	}
}
