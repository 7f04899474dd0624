package tokenbucket

import (
	"testing"
	"time"
)

func TestBucket(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := Full(3, t0)
	for i := range 3 {
		if !b.Take(t0, 1, 3, 1) {
			t.Fatalf("take %d of the burst refused", i)
		}
	}
	if b.Take(t0, 1, 3, 1) {
		t.Fatal("took past the burst")
	}
	// One second refills one token at rate 1.
	if !b.Take(t0.Add(time.Second), 1, 3, 1) || b.Take(t0.Add(time.Second), 1, 3, 1) {
		t.Fatal("refill after 1 s is not one token")
	}
	// A long pause refills no more than the burst.
	later := t0.Add(time.Hour)
	if !b.Take(later, 1, 3, 3) || b.Take(later, 1, 3, 1) {
		t.Fatal("refill not capped at the burst")
	}
	// Taking n at once: a 1500-byte datagram against 1000 bytes left.
	c := Full(1000, t0)
	if c.Take(t0, 100, 1000, 1500) {
		t.Fatal("took more than the bucket holds")
	}
	if !c.Take(t0, 100, 1000, 1000) {
		t.Fatal("a refused take spent tokens")
	}
	// A clock stepping back refills nothing.
	d := Full(1, t0)
	d.Take(t0, 1, 1, 1)
	if d.Take(t0.Add(-time.Hour), 1, 1, 1) {
		t.Fatal("a backward clock refilled")
	}
	// The zero bucket is empty.
	h := Full(2, t0)
	if !h.Has(t0, 1, 2, 2) || !h.Has(t0, 1, 2, 2) {
		t.Fatal("Has took tokens")
	}
	if h.Has(t0, 1, 2, 3) {
		t.Fatal("Has reports more than the bucket holds")
	}
	if !h.Take(t0, 1, 2, 2) || h.Has(t0, 1, 2, 1) || !h.Has(t0.Add(time.Second), 1, 2, 1) {
		t.Fatal("Has does not refill like Take")
	}
	var z Bucket
	if z.Take(time.Time{}, 1, 1, 1) {
		t.Fatal("zero bucket not empty")
	}
}

func TestNoAllocations(t *testing.T) {
	b := Full(10, time.Now())
	now := time.Now()
	if n := testing.AllocsPerRun(100, func() { b.Take(now, 1, 10, 1) }); n != 0 {
		t.Errorf("%v allocations", n)
	}
}
