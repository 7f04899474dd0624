package main

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"icegate/config"
	"icegate/signaling/redisbus"
	"icegate/turn"
)

// TestNodeID: cluster.node_id wins; without it the host name plus a random
// suffix, shaped to what config accepts as a node_id.
func TestNodeID(t *testing.T) {
	if got := nodeID(&config.Cluster{NodeID: "n1"}); got != "n1" {
		t.Errorf("configured node_id: %q", got)
	}
	valid := regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
	a, b := nodeID(&config.Cluster{}), nodeID(nil)
	if a == b || !valid.MatchString(a) || !regexp.MustCompile(`-[0-9a-f]{6}$`).MatchString(a) {
		t.Errorf("default node ids %q, %q", a, b)
	}
	for host, want := range map[string]string{
		"web-3":                  "web-3-abcdef",
		"":                       "icegate-abcdef",
		"h\u00f6st name":         "h-st-name-abcdef",
		"---":                    "icegate-abcdef",
		strings.Repeat("x", 100): strings.Repeat("x", 57) + "-abcdef",
	} {
		got := defaultNodeID(host, "abcdef")
		if got != want || !valid.MatchString(got) {
			t.Errorf("defaultNodeID(%q) = %q, want %q", host, got, want)
		}
		// What it makes passes config's own rule.
		src := "cluster {\n  redis_url = \"redis://h\"\n  node_id = \"" + got + "\"\n}\n"
		if _, diags := config.Parse([]byte(src), "n.hcl"); diags.HasErrors() {
			t.Errorf("config refuses %q: %s", got, config.FormatDiagnostics(diags))
		}
	}
}

// config check and the Redis bus parse cluster.redis_url separately (config
// does not import the bus); they must agree on what is a Redis URL, or a
// file that passes `config check` would fail at start.
func TestRedisURLFormsAgree(t *testing.T) {
	for _, u := range []string{
		"redis://127.0.0.1:6379/0", "redis://localhost", "redis://u:p%40ss@redis.example.com:7000/3",
		"redis://:legacy@[::1]:6379/", "rediss://h.example.com:6380/1", "unix:///run/redis/redis.sock",
		"unix://:pw@/run/redis.sock?db=5", "redis://s1:26379?addr=s2:26379&addr=s3&master_set=main",
		"rediss://s1/2?master_set=m",
		// Refused by both.
		"http://h", "redis://", "unix://relative.sock", "redis://h?dial_timeout=1s", "redis://h?addr=s2",
		"redis://h/notanumber", "", "redis://h:99999",
	} {
		_, cerr := config.ParseRedisURL(u)
		berr := redisbus.ParseURL(u)
		if (cerr == nil) != (berr == nil) {
			t.Errorf("%q: config says %v, the bus says %v", u, cerr, berr)
		}
	}
}

// TestBitRate: the steering record's bit rate is the relayed bytes between
// two samples, both directions and every transport, in bits per second.
func TestBitRate(t *testing.T) {
	var b bitRate
	if r := b.sample(map[string]turn.Traffic{"udp": {BytesToPeer: 1000}}); r != 0 {
		t.Errorf("first sample %v, want 0", r)
	}
	b.at = b.at.Add(-2 * time.Second) // as if the last sample was 2 s ago
	r := b.sample(map[string]turn.Traffic{"udp": {BytesToPeer: 1000 + 3000, BytesToClient: 2000}, "tcp": {BytesToClient: 1000}})
	// 6,000 bytes more in about 2 s: about 24,000 bit/s.
	if r < 23000 || r > 24100 {
		t.Errorf("rate %v, want about 24000", r)
	}
}
