package main

import (
	"regexp"
	"strings"
	"testing"

	"icegate/config"
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
