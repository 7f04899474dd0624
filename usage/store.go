// Package usage aggregates relayed traffic per user and custom identifier
// in minute buckets, for the admin API's usage query: in memory on one
// node (Store), and across a cluster in Redis (Redis). It owns no sockets
// of the relay and knows nothing of TURN: the relay reports what it
// relayed (turn.Options.Usage) and cmd/icegate hands that to a Sink.
package usage

import (
	"cmp"
	"slices"
	"sync"
	"time"
)

// Counters are relayed application bytes and packets each way.
type Counters struct {
	BytesToPeer     uint64 `json:"bytes_to_peer"`
	PacketsToPeer   uint64 `json:"packets_to_peer"`
	BytesToClient   uint64 `json:"bytes_to_client"`
	PacketsToClient uint64 `json:"packets_to_client"`
}

// Add returns c plus d.
func (c Counters) Add(d Counters) Counters {
	return Counters{c.BytesToPeer + d.BytesToPeer, c.PacketsToPeer + d.PacketsToPeer,
		c.BytesToClient + d.BytesToClient, c.PacketsToClient + d.PacketsToClient}
}

// Key is whose traffic: the relay's user id and the credential's custom
// identifier (turn.AllocationInfo).
type Key struct {
	User     string `json:"user"`
	CustomID string `json:"custom_id,omitempty"`
}

// Overflow is the key the traffic of keys beyond MaxKeysPerMinute is
// booked under, so that a flood of distinct user names cannot grow memory
// without bound and no byte goes uncounted.
var Overflow = Key{User: "(other)"}

// MaxKeysPerMinute bounds the distinct keys of one minute's bucket.
const MaxKeysPerMinute = 50000

// DefaultRetention is how long minute buckets are kept unless configured
// (usage.retention).
const DefaultRetention = 24 * time.Hour

// Sink takes reports of traffic: t is when it was read.
type Sink interface {
	Add(t time.Time, k Key, c Counters)
}

// Query selects usage rows.
type Query struct {
	// From and To select the minutes that overlap [From, To); zero values
	// mean the whole retention and now.
	From, To time.Time
	// User and CustomID select one key's rows; "" matches any.
	User, CustomID string
	// Step is the width of a row's window, a whole number of minutes;
	// 0 means one row per key for the whole range.
	Step time.Duration
}

// Row is one key's traffic in one window.
type Row struct {
	Start time.Time `json:"start"`
	Key
	Counters
}

// Store keeps minute buckets in memory, for retention. It is safe for
// concurrent use.
type Store struct {
	retention time.Duration
	now       func() time.Time

	mu      sync.Mutex
	buckets map[int64]map[Key]Counters // unix minute -> key -> counters
}

// NewStore returns a store keeping buckets for retention (DefaultRetention
// when 0).
func NewStore(retention time.Duration) *Store {
	if retention <= 0 {
		retention = DefaultRetention
	}
	return &Store{retention: retention, now: time.Now, buckets: map[int64]map[Key]Counters{}}
}

// Retention is how long the store keeps a minute.
func (s *Store) Retention() time.Duration { return s.retention }

func minuteOf(t time.Time) int64 { return t.Unix() / 60 }

// Add books c under k in the minute of t.
func (s *Store) Add(t time.Time, k Key, c Counters) {
	m := minuteOf(t)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prune()
	b := s.buckets[m]
	if b == nil {
		b = map[Key]Counters{}
		s.buckets[m] = b
	}
	if _, ok := b[k]; !ok && len(b) >= MaxKeysPerMinute {
		k = Overflow
	}
	b[k] = b[k].Add(c)
}

// prune drops the minutes older than the retention. s.mu is held.
func (s *Store) prune() {
	oldest := minuteOf(s.now().Add(-s.retention))
	for m := range s.buckets {
		if m < oldest {
			delete(s.buckets, m)
		}
	}
}

// Query returns the rows q selects, by window start and then key.
func (s *Store) Query(q Query) []Row {
	from, to := q.window(s.now(), s.retention)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prune()
	acc := newAccumulator(q, from)
	for m, b := range s.buckets {
		if m < from || m >= to {
			continue
		}
		for k, c := range b {
			acc.add(m, k, c)
		}
	}
	return acc.rows()
}

// window is q's range in unix minutes, [from, to).
func (q Query) window(now time.Time, retention time.Duration) (from, to int64) {
	from, to = minuteOf(now.Add(-retention)), minuteOf(now)+1
	if !q.From.IsZero() {
		from = max(from, minuteOf(q.From))
	}
	if !q.To.IsZero() {
		to = min(to, (q.To.Unix()+59)/60)
	}
	return from, to
}

// accumulator sums minutes into q's windows.
type accumulator struct {
	q    Query
	from int64
	step int64 // minutes per window; 0: one window
	sums map[int64]map[Key]Counters
}

func newAccumulator(q Query, from int64) *accumulator {
	step := int64(q.Step / time.Minute)
	return &accumulator{q: q, from: from, step: step, sums: map[int64]map[Key]Counters{}}
}

func (a *accumulator) add(minute int64, k Key, c Counters) {
	if a.q.User != "" && k.User != a.q.User || a.q.CustomID != "" && k.CustomID != a.q.CustomID {
		return
	}
	w := a.from
	if a.step > 0 {
		w = a.from + (minute-a.from)/a.step*a.step
	}
	b := a.sums[w]
	if b == nil {
		b = map[Key]Counters{}
		a.sums[w] = b
	}
	b[k] = b[k].Add(c)
}

func (a *accumulator) rows() []Row {
	out := []Row{}
	for w, b := range a.sums {
		for k, c := range b {
			out = append(out, Row{Start: time.Unix(w*60, 0).UTC(), Key: k, Counters: c})
		}
	}
	slices.SortFunc(out, func(x, y Row) int {
		if c := x.Start.Compare(y.Start); c != 0 {
			return c
		}
		if c := cmp.Compare(x.User, y.User); c != 0 {
			return c
		}
		return cmp.Compare(x.CustomID, y.CustomID)
	})
	return out
}
