// Package tokenbucket is icegate's one token bucket: the per-source limit
// for unauthenticated requests, the bandwidth cap per allocation, the
// signaling message rate per connection and the rate-limited log all refill
// and take the same way, here.
//
// A Bucket is a plain value with no lock: its owner guards it (most owners
// already hold a lock around the map or connection the bucket lives in) and
// passes the rate and burst on every call, so a reload that changes them
// takes effect at the next call without touching the buckets.
package tokenbucket

import "time"

// Bucket holds tokens that refill at a rate up to a burst. The zero value is
// empty; Full makes a full one.
type Bucket struct {
	tokens float64
	last   time.Time
}

// Full returns a bucket holding burst tokens at now.
func Full(burst float64, now time.Time) Bucket { return Bucket{tokens: burst, last: now} }

// Take refills the bucket for the time since its last use at rate tokens
// per second, capped at burst, and then takes n tokens if it holds that
// many, reporting whether it did. A clock that went backwards refills
// nothing.
func (b *Bucket) Take(now time.Time, rate, burst, n float64) bool {
	if d := now.Sub(b.last); d > 0 {
		b.tokens += d.Seconds() * rate
	}
	if b.tokens > burst {
		b.tokens = burst
	}
	b.last = now
	if b.tokens < n {
		return false
	}
	b.tokens -= n
	return true
}

// Has refills the bucket like Take and reports whether it holds n tokens,
// taking none. An owner that charges two buckets for one request (a source
// address and its IP) asks the first with Has and takes from it only when
// the second agreed, so a refusal by either charges neither; a Take at the
// same now then refills nothing.
func (b *Bucket) Has(now time.Time, rate, burst, n float64) bool {
	return b.Take(now, rate, burst, 0) && b.tokens >= n
}
