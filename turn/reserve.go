package turn

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pionstun "github.com/pion/stun/v4"
)

// EVEN-PORT and RESERVATION-TOKEN (RFC 8656 §7.2 steps 5 and 6, §14.6,
// §14.9), implemented beside pion rather than inside it.
//
// pion keeps reservations in one allocation manager per PacketConnConfig,
// and icegate hands pion one SO_REUSEPORT listener socket per event loop:
// the Allocate carrying the token comes from another client port, the kernel
// hashes it to another socket, and that socket's manager never saw the
// token. pion also returns a token when the R bit is 0, never holds P+1, and
// accepts a token many times. So the gate takes both attributes out of the
// request, and the allocator does the work with one table for the whole
// server:
//
//  1. The gate validates the request (a token with EVEN-PORT or with
//     REQUESTED-ADDRESS-FAMILY is a 400, an unknown, used or expired token a
//     508, RFC 8656 §7.2 step 5), records what the allocator must do (an
//     allocIntent: any port, an even port, an even port with P+1 reserved,
//     or the reserved port of a token), and passes pion the request without
//     EVEN-PORT and RESERVATION-TOKEN, re-signed with the key it verified.
//  2. The intent has to reach the RelayAddressGenerator call that pion makes
//     for this very request, and pion passes the generator only the
//     network, the user id and the realm. The realm is the request's REALM
//     attribute, which the gate has already checked to be exactly this
//     server's realm; the gate appends "\x00" and the intent's number to it.
//     pion uses the realm for nothing but handing it on (AuthHandler,
//     QuotaHandler, the generator, its events, all icegate's). This works
//     the same on every listener socket and on TCP and TLS connections,
//     which share one generator across many goroutines.
//  3. The allocator binds the pair (P even and P+1, both claimed in the
//     port bitmap and both bound, so neither another allocation nor another
//     program can take P+1), keeps P+1's socket for the token's life and
//     closes it when the token expires unused. A token is redeemed exactly
//     once: the first Allocate that names it takes the held socket.
//  4. pion's success response has no RESERVATION-TOKEN; the gate adds it on
//     the way out (observe), re-signed with MESSAGE-INTEGRITY and
//     FINGERPRINT, also for pion's cached answer to a retransmission. When
//     the allocator fails, pion answers a bare 508; the gate rewrites it to
//     say what failed (a bind error is a 500, never "insufficient capacity").

// reservationLife is how long P+1 stays reserved for the token (RFC 8656
// §7.2 step 6: "about 30 seconds").
const reservationLife = 30 * time.Second

// intentTag separates the realm from the intent number in the realm pion
// hands the allocator. A client cannot send it: the gate refuses any realm
// other than this server's.
const intentTag = "\x00icegate-intent="

// txKey names one client transaction: the response to it is found by the
// client's address and the transaction ID.
type txKey struct {
	client netip.AddrPort
	tx     [pionstun.TransactionIDSize]byte
}

// allocIntent is what the allocator must do for one Allocate request.
type allocIntent struct {
	txKey
	key     []byte // the request's verified key, to sign the rewritten response
	even    bool   // EVEN-PORT: an even port
	reserve bool   // EVEN-PORT with R=1: and hold P+1 behind a token
	token   uint64 // RESERVATION-TOKEN: the reserved port (0: none)
	at      time.Time
	seq     uint64 // its number in the realm pion hands on (intend)
}

// heldPort is P+1 of an EVEN-PORT pair: bound, not yet read, waiting for
// the Allocate that redeems its token.
type heldPort struct {
	rc    *relayConn
	owner txKey // the EVEN-PORT Allocate that reserved it
	timer *time.Timer
}

// responseNote is what the gate must change in pion's response to one
// Allocate: add the token it issued, or say why the allocation failed.
type responseNote struct {
	key   []byte
	token uint64 // issued token, added to a success response
	err   error  // allocation failure, rewrites pion's 508
	// refused is the address family of a dual allocation (RFC 8656 §7.2,
	// ADDITIONAL-ADDRESS-FAMILY) that was not allocated (family 0: none).
	// The success response says so in ADDRESS-ERROR-CODE.
	refused addressError
	until   time.Time
}

// reservations is the server-wide table of allocation intents, reserved
// ports and response notes. The relay allocator owns it.
type reservations struct {
	life atomic.Int64 // reservation lifetime, ns (reservationLife; tests shorten it)

	mu      sync.Mutex
	seq     uint64
	intents map[uint64]*allocIntent
	held    map[uint64]*heldPort // token -> P+1
	notes   map[txKey]*responseNote
	swept   time.Time
	closed  bool
	// pending counts notes, so that observe looks at the table only when a
	// response may need changing.
	pending atomic.Int32
}

func newReservations() *reservations {
	r := &reservations{
		intents: map[uint64]*allocIntent{},
		held:    map[uint64]*heldPort{},
		notes:   map[txKey]*responseNote{},
	}
	r.life.Store(int64(reservationLife))
	return r
}

var (
	errTokenInvalid = errors.New("reservation token unknown, used or expired")
	errTokenFamily  = errors.New("reservation token is for another address family")
)

// staleAfter is how long an intent or a failure note waits for pion: pion
// handles an Allocate in well under a millisecond, and a client gives up on
// a transaction after about 40 s (RFC 8489 §6.2.1).
const staleAfter = 10 * time.Second

// intend records in and returns the realm to hand pion in its place.
func (r *reservations) intend(realm string, in *allocIntent) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sweep(in.at)
	r.seq++
	in.seq = r.seq
	r.intents[r.seq] = in
	return realm + intentTag + strconv.FormatUint(r.seq, 16)
}

// intentNumber returns the intent number a realm pion hands on carries,
// or 0: the allocation table finds a shared-mode relay by it.
func intentNumber(realm string) uint64 {
	i := strings.Index(realm, intentTag)
	if i < 0 {
		return 0
	}
	n, err := strconv.ParseUint(realm[i+len(intentTag):], 16, 64)
	if err != nil {
		return 0
	}
	return n
}

// take returns and forgets the intent realm names, or nil.
func (r *reservations) take(realm string) *allocIntent {
	i := strings.Index(realm, intentTag)
	if i < 0 {
		return nil
	}
	n, err := strconv.ParseUint(realm[i+len(intentTag):], 16, 64)
	if err != nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	in := r.intents[n]
	delete(r.intents, n)
	return in
}

// sweep drops intents pion never acted on (it refused the request before
// allocating), failure notes whose response never went out and token notes
// past the token's life. r.mu is held.
func (r *reservations) sweep(now time.Time) {
	if now.Sub(r.swept) < staleAfter {
		return
	}
	r.swept = now
	for k, in := range r.intents {
		if now.Sub(in.at) > staleAfter {
			delete(r.intents, k)
		}
	}
	for k, n := range r.notes {
		if now.After(n.until) {
			delete(r.notes, k)
			r.pending.Add(-1)
		}
	}
}

// valid reports whether token names a held port, and its network.
func (r *reservations) valid(token uint64) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.held[token]
	if h == nil {
		return "", false
	}
	return h.rc.network, true
}

// hold keeps rc (P+1) for a new token and returns the token. When the token
// expires unused, rc is closed and its port freed.
func (r *reservations) hold(rc *relayConn, owner txKey, key []byte) (uint64, error) {
	var b [8]byte
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, errServerClosing
	}
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return 0, err
		}
		token := binary.BigEndian.Uint64(b[:])
		if token == 0 || r.held[token] != nil {
			continue
		}
		h := &heldPort{rc: rc, owner: owner}
		h.timer = time.AfterFunc(time.Duration(r.life.Load()), func() { r.expire(token, h) })
		r.held[token] = h
		r.addNote(owner, &responseNote{key: key, token: token, until: time.Now().Add(time.Duration(r.life.Load()))})
		return token, nil
	}
}

var errServerClosing = errors.New("server is closing")

// expire ends an unredeemed reservation.
func (r *reservations) expire(token uint64, h *heldPort) {
	r.mu.Lock()
	if r.held[token] != h {
		r.mu.Unlock()
		return // redeemed meanwhile
	}
	delete(r.held, token)
	r.dropNote(h.owner)
	r.mu.Unlock()
	_ = h.rc.Close()
}

// redeem takes the port token holds, once: a second Allocate with the same
// token finds nothing (RFC 8656 §7.2 step 5: the token must be valid).
func (r *reservations) redeem(token uint64, network string) (*relayConn, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.held[token]
	if h == nil {
		return nil, errTokenInvalid
	}
	if h.rc.network != network {
		return nil, errTokenFamily
	}
	delete(r.held, token)
	h.timer.Stop()
	// The EVEN-PORT Allocate's note stays until its sweep, for a
	// retransmission of that Allocate, which must get the same token.
	return h.rc, nil
}

// fail records why the allocation for in failed, for the response.
func (r *reservations) fail(in *allocIntent, err error) {
	if in == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.addNote(in.txKey, &responseNote{key: in.key, err: err, until: time.Now().Add(staleAfter)})
}

func (r *reservations) addNote(k txKey, n *responseNote) {
	old := r.notes[k]
	if old == nil {
		r.pending.Add(1)
	} else if n.refused.family == 0 && n.err == nil {
		// A token issued for a dual Allocate: the response carries both.
		n.refused = old.refused
	}
	r.notes[k] = n
}

// dualNoteLife is how long the note of a dual Allocate waits for pion's
// response, and for pion's cached answers to retransmissions: a client
// retransmits a request for about 40 s (RFC 8489 §6.2.1).
const dualNoteLife = 40 * time.Second

// refuseFamily records that the success response to the Allocate k must
// say, in ADDRESS-ERROR-CODE, that a family was not allocated.
func (r *reservations) refuseFamily(k txKey, key []byte, family addressError, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sweep(now)
	if n := r.notes[k]; n != nil && n.err == nil {
		n.refused = family
		return
	}
	r.addNote(k, &responseNote{key: key, refused: family, until: now.Add(dualNoteLife)})
}

func (r *reservations) dropNote(k txKey) {
	if r.notes[k] != nil {
		delete(r.notes, k)
		r.pending.Add(-1)
	}
}

// note returns the note for the response to k. A failure note is used
// once; a token note stays for retransmissions until the token's life ends.
func (r *reservations) note(k txKey) *responseNote {
	if r.pending.Load() == 0 {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.notes[k]
	if n != nil && n.err != nil {
		r.dropNote(k)
	}
	return n
}

// close frees every held port: the server is shutting down.
func (r *reservations) close() {
	r.mu.Lock()
	r.closed = true
	held := r.held
	r.held = map[uint64]*heldPort{}
	r.mu.Unlock()
	for _, h := range held {
		h.timer.Stop()
		_ = h.rc.Close()
	}
}

// heldCount is the number of ports held for tokens.
func (r *reservations) heldCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.held)
}
