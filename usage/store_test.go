package usage

import (
	"strconv"
	"testing"
	"time"
)

func TestStoreAggregates(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 10, 0, 30, 0, time.UTC)
	now := t0
	s := NewStore(time.Hour)
	s.now = func() time.Time { return now }
	one := Counters{BytesToPeer: 100, PacketsToPeer: 1, BytesToClient: 200, PacketsToClient: 2}
	alice := Key{User: "alice"}
	tenant := Key{User: "t7", CustomID: "t7"}
	for i := range 10 { // one report a minute, 10:00 to 10:09
		s.Add(t0.Add(time.Duration(i)*time.Minute), alice, one)
		s.Add(t0.Add(time.Duration(i)*time.Minute), tenant, one)
	}
	now = t0.Add(10 * time.Minute)

	for _, tc := range []struct {
		name  string
		q     Query
		rows  int
		first Counters
	}{
		{"total per key", Query{}, 2, Counters{1000, 10, 2000, 20}},
		{"one user", Query{User: "alice"}, 1, Counters{1000, 10, 2000, 20}},
		{"custom id", Query{CustomID: "t7"}, 1, Counters{1000, 10, 2000, 20}},
		{"per minute", Query{User: "alice", Step: time.Minute}, 10, one},
		{"per 5 minutes", Query{User: "alice", Step: 5 * time.Minute}, 2, Counters{500, 5, 1000, 10}},
		{"range", Query{User: "alice", From: t0.Add(2 * time.Minute), To: t0.Add(4 * time.Minute)}, 1, Counters{300, 3, 600, 6}}, // the minutes 10:02, 10:03 and 10:04 overlap [10:02:30, 10:04:30),
		{"nobody", Query{User: "mallory"}, 0, Counters{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rows := s.Query(tc.q)
			if len(rows) != tc.rows {
				t.Fatalf("%d rows, want %d: %+v", len(rows), tc.rows, rows)
			}
			if tc.rows > 0 && rows[0].Counters != tc.first {
				t.Errorf("first row %+v, want %+v", rows[0].Counters, tc.first)
			}
		})
	}

	// Retention: an hour later the early minutes are gone.
	now = t0.Add(time.Hour + 5*time.Minute)
	rows := s.Query(Query{User: "alice"})
	if len(rows) != 1 || rows[0].PacketsToPeer != 5 {
		t.Errorf("after the retention: %+v, want the last 5 minutes", rows)
	}
}

func TestStoreBoundsKeys(t *testing.T) {
	s := NewStore(time.Hour)
	now := time.Now()
	for i := range MaxKeysPerMinute + 10 {
		s.Add(now, Key{User: "u" + strconv.Itoa(i)}, Counters{BytesToPeer: 1})
	}
	rows := s.Query(Query{User: Overflow.User})
	if len(rows) != 1 || rows[0].BytesToPeer != 10 {
		t.Errorf("overflow rows %+v, want 10 bytes under %v", rows, Overflow)
	}
}
