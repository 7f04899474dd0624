package main

import "testing"

// The benchmark itself never runs under `go test`: it takes minutes and
// starts processes. These check the parts its figures rest on.

func TestParseStatTicks(t *testing.T) {
	for _, tc := range []struct {
		name, stat string
		want       int64
		ok         bool
	}{
		{"plain", "1234 (icegate) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 37 0 0 20 0 9 0", 287, true},
		// The command name may hold spaces and parentheses.
		{"odd name", "1234 (a) b (c)) R 1 1 1 0 -1 0 0 0 0 0 7 3 0 0 20 0", 10, true},
		{"no paren", "1234 icegate S 1", 0, false},
		{"short", "1234 (x) S 1 2 3", 0, false},
		{"not a number", "1234 (x) S 1 1 1 0 -1 0 0 0 0 0 x 3 0 0", 0, false},
	} {
		got, err := parseStatTicks([]byte(tc.stat))
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("%s: parseStatTicks = %d, %v; want %d (ok %v)", tc.name, got, err, tc.want, tc.ok)
		}
	}
}
