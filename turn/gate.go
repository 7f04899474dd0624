package turn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	pionstun "github.com/pion/stun/v4"
	"github.com/prometheus/client_golang/prometheus"

	"icegate/auth"
	"icegate/internal/stunwire"
	"icegate/stun"
)

// The gate sees every STUN message before pion does. It answers Binding
// itself, checks credentials so a refusal gets the RFC's 401 (pion answers a
// wrong password or unknown user with 400) and is logged with its reason,
// applies icegate's limits and peer policy where pion has no hook or the wrong
// error code, and otherwise hands the message on untouched. ChannelData and
// Send indications, the relay's hot path, pass with a two-byte check.
//
// Where the gate must change what pion sees (a LIFETIME above the maximum, a
// missing address family) it rewrites the request and signs it again with the
// key it has just verified; where the request failed authentication it strips
// MESSAGE-INTEGRITY so that pion answers with a 401 carrying a fresh NONCE and
// REALM, exactly as RFC 8489 §9.2.4 asks.
type gate struct {
	s *Server

	mu sync.Mutex
	// verified remembers, for pion's AuthHandler, which key the gate matched
	// for a (source, username) pair: with several shared secrets live, only
	// the MESSAGE-INTEGRITY check can tell which one the client used.
	verified map[string]verifiedEntry
	// passed holds the requests passed to pion authenticated, until pion
	// answers (rememberPassed).
	passed map[txKey]passedEntry
	// claims are the shared-port claims of ChannelBinds passed to pion,
	// until pion answers (claimPeer); claimsPending is its size, read
	// without the lock on every response.
	claims        map[txKey]peerClaim
	claimsPending atomic.Int32

	idle atomic.Int64 // idle timeout of connections without allocation, ns

	// droppedBadFingerprint counts requests dropped for a wrong FINGERPRINT,
	// looked up once for the fast Binding path.
	droppedBadFingerprint prometheus.Counter
	// droppedNoChannel counts ChannelData pion discards for want of a
	// bound channel (gatePacketConn.countUnbound).
	droppedNoChannel prometheus.Counter
}

type verifiedEntry struct {
	userID string
	key    []byte
}

func newGate(s *Server) *gate {
	g := &gate{s: s, verified: map[string]verifiedEntry{}, passed: map[txKey]passedEntry{}, claims: map[txKey]peerClaim{}}
	g.idle.Store(int64(idleTimeout))
	g.droppedBadFingerprint = s.metrics.Dropped.WithLabelValues("bad_fingerprint")
	g.droppedNoChannel = s.metrics.Dropped.WithLabelValues("no_channel")
	return g
}

// inbound is one message from a client.
type inbound struct {
	data      []byte
	src       net.Addr
	local     net.Addr
	transport string
	reply     func([]byte)
	// guard is the unauthenticated-request bucket of the TCP, TLS or DTLS
	// connection the message came on; nil for UDP (see overLimit).
	guard *connGuard
}

// methods that need long-term credentials (RFC 8656 §5, RFC 6062 §4).
func authenticated(m pionstun.Method) bool {
	switch m {
	case pionstun.MethodAllocate, pionstun.MethodRefresh, pionstun.MethodCreatePermission,
		pionstun.MethodChannelBind, pionstun.MethodConnect, pionstun.MethodConnectionBind:
		return true
	}
	return false
}

// inspect decides what to do with one inbound message: it returns the bytes
// to hand to pion and true, or false when the gate answered or dropped it.
func (g *gate) inspect(in inbound) ([]byte, bool) {
	b := in.data
	// Send indication (0x0016): relay data, pion checks the permission.
	if len(b) >= 20 && b[0] == 0x00 && b[1] == 0x16 {
		return b, true
	}
	if !pionstun.IsMessage(b) {
		// No magic cookie: an RFC 3489 client, answered only with
		// stun.rfc3489 on an RFC 5780 socket (rfc5780.go).
		if !g.classicBinding(in) {
			g.drop("malformed")
		}
		return nil, false
	}
	msg := &pionstun.Message{Raw: b}
	if err := msg.Decode(); err != nil {
		g.drop("malformed")
		return nil, false
	}
	if msg.Contains(pionstun.AttrFingerprint) && pionstun.Fingerprint.Check(msg) != nil {
		// RFC 8489 §7.3: a message whose FINGERPRINT is wrong (or not the
		// last attribute, §14.7) is not STUN and is discarded, unanswered.
		g.droppedBadFingerprint.Inc()
		return nil, false
	}
	if msg.Type.Class != pionstun.ClassRequest {
		// Responses and indications other than Send are never meant for a server.
		g.drop("unexpected_class")
		return nil, false
	}
	method := msg.Type.Method
	srcAP := addrPortOf(in.src)
	now := time.Now()

	if method == pionstun.MethodBinding {
		if g.overLimit(in, now) {
			return nil, false
		}
		if !g.s.answerBinding(in, msg, srcAP) {
			g.drop("malformed")
			return nil, false
		}
		g.count(method, "binding")
		return nil, false
	}
	if !authenticated(method) {
		// RFC 8489 §6.3.1: an unknown method in a request gets a 400.
		if g.overLimit(in, now) {
			return nil, false
		}
		g.count(method, "unknown_method")
		in.reply(errorResponse(msg, pionstun.CodeBadRequest, "Unknown method", nil))
		return nil, false
	}

	creds := g.s.creds.Load()
	if creds == nil || creds.Empty() {
		// Never an open relay: with no credentials configured TURN is refused.
		if g.overLimit(in, now) {
			return nil, false
		}
		g.count(method, "no_credentials")
		g.s.limited.Log(slog.LevelWarn, "no-credentials", "TURN request refused: no credentials are configured",
			"client", in.src, "method", method.String())
		in.reply(errorResponse(msg, pionstun.CodeForbidden, "TURN disabled: no credentials configured", nil))
		return nil, false
	}

	if !msg.Contains(pionstun.AttrMessageIntegrity) {
		// The first leg of the challenge (RFC 8489 §9.2.3): pion answers 401 with
		// a NONCE and REALM. Unauthenticated, so rate-limited per source.
		if g.overLimit(in, now) {
			return nil, false
		}
		g.count(method, "challenge")
		return b, true
	}

	var username pionstun.Username
	var realmAttr pionstun.Realm
	if err := username.GetFrom(msg); err != nil {
		// pion answers 400 (RFC 8489 §9.2.4: MI without USERNAME is a bad request).
		g.count(method, "bad_request")
		return b, true
	}
	_ = realmAttr.GetFrom(msg) // a missing REALM fails the realm check below
	userID, key, err := g.verify(creds, msg, string(username), string(realmAttr), now)
	if err != nil {
		g.refuse(in, msg, string(username), err)
		if g.overLimit(in, now) {
			return nil, false
		}
		stripped, serr := rebuild(msg, nil, nil)
		if serr != nil {
			g.drop("malformed")
			return nil, false
		}
		g.count(method, "refused")
		return stripped, true
	}

	out, ok := g.checkMethod(in, msg, userID, key)
	if !ok {
		return nil, false
	}
	g.remember(in.src, string(username), userID, key)
	g.rememberPassed(in.src, msg, key, g.s.kf.noteFor(in, msg))
	// The allocation table keeps the credential: an Allocate's for the
	// allocation pion is about to report, any other's as the one the
	// client's allocations now stand on (revoke.go).
	g.s.allocs.granted(in.src, grant{username: string(username), userID: userID, key: key, transport: in.transport},
		method == pionstun.MethodAllocate)
	g.count(method, "pass")
	if method == pionstun.MethodAllocate {
		g.s.emit(Event{Kind: EventAuthenticated, Username: string(username), UserID: userID,
			Client: in.src.String(), Transport: in.transport, Detail: "Allocate"})
	}
	return out, true
}

// verify checks realm and MESSAGE-INTEGRITY against every candidate key.
func (g *gate) verify(creds *auth.Credentials, msg *pionstun.Message, username, realm string, now time.Time) (string, []byte, error) {
	if realm != creds.Realm() {
		return "", nil, &realmError{got: realm, want: creds.Realm()}
	}
	return creds.Verify(username, now, func(key []byte) bool {
		return pionstun.MessageIntegrity(key).Check(msg) == nil
	})
}

type realmError struct{ got, want string }

func (e *realmError) Error() string {
	return "wrong realm " + quote(e.got) + " (this server's realm is " + quote(e.want) + ")"
}

func quote(s string) string { return "\"" + s + "\"" }

// refuse logs and counts an authentication failure with its reason.
func (g *gate) refuse(in inbound, msg *pionstun.Message, username string, err error) {
	reason := string(auth.ReasonBadIntegrity)
	var ref *auth.Refusal
	var rerr *realmError
	switch {
	case errors.As(err, &ref):
		reason = string(ref.Reason)
	case errors.As(err, &rerr):
		reason = "wrong-realm"
	}
	g.s.metrics.AuthRefusals.WithLabelValues(reason).Inc()
	g.s.emit(Event{Kind: EventAuthRefused, Username: username, Client: in.src.String(), Transport: in.transport, Detail: err.Error()})
	g.s.limited.Log(slog.LevelInfo, "auth-"+reason, "authentication refused",
		"reason", err.Error(), "client", in.src, "transport", in.transport,
		"method", msg.Type.Method.String(), "username", username)
}

// remember stores the verified key for pion's AuthHandler, which runs right
// after on the same goroutine and takes it out again. An entry stays behind
// only when pion refuses the request before asking for the key (a stale
// nonce); the map is emptied if such leftovers ever pile up.
func (g *gate) remember(src net.Addr, username, userID string, key []byte) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.verified) > 10000 {
		clear(g.verified)
	}
	g.verified[src.String()+"\x00"+username] = verifiedEntry{userID: userID, key: key}
}

// authHandler is pion's AuthHandler.
func (g *gate) authHandler(ra *pionRequestAttributes) (string, []byte, bool) {
	k := ra.SrcAddr.String() + "\x00" + ra.Username
	g.mu.Lock()
	v, ok := g.verified[k]
	delete(g.verified, k)
	g.mu.Unlock()
	if ok {
		return v.userID, v.key, true
	}
	// Every request passes the gate first, so this happens only when the
	// entry went in the purge above: let pion's own integrity check decide
	// with the first candidate key (right for a static user or a single
	// shared secret; with several live secrets the client may get a 401 and
	// retry, and the gate sees the retry).
	creds := g.s.creds.Load()
	if creds == nil {
		return "", nil, false
	}
	userID, keys, err := creds.Keys(ra.Username, time.Now())
	if err != nil || len(keys) == 0 {
		return "", nil, false
	}
	return userID, keys[0], true
}

// checkMethod applies what pion lacks for an authenticated request. It
// returns the bytes for pion, or false after answering the client itself.
func (g *gate) checkMethod(in inbound, msg *pionstun.Message, userID string, key []byte) ([]byte, bool) {
	if reason := malformed(msg); reason != "" {
		g.fail(in, msg, pionstun.CodeBadRequest, reason, key)
		return nil, false
	}
	if g.noAllocation(in, msg, key) || g.wrongCredentials(in, msg, userID, key) {
		return nil, false
	}
	switch msg.Type.Method {
	case pionstun.MethodAllocate:
		return g.checkAllocate(in, msg, key)
	case pionstun.MethodRefresh:
		return g.finish(in, msg, key, edits{})
	case pionstun.MethodCreatePermission:
		peers, err := peerAddrs(msg)
		if err != nil {
			g.fail(in, msg, pionstun.CodeBadRequest, "Missing XOR-PEER-ADDRESS", key)
			return nil, false
		}
		return g.checkPermissions(in, msg, peers, key)
	case pionstun.MethodChannelBind:
		peers, err := peerAddrs(msg)
		if err != nil || len(peers) != 1 {
			g.fail(in, msg, pionstun.CodeBadRequest, "Bad XOR-PEER-ADDRESS", key)
			return nil, false
		}
		if !msg.Contains(pionstun.AttrChannelNumber) {
			g.fail(in, msg, pionstun.CodeBadRequest, "Missing CHANNEL-NUMBER", key)
			return nil, false
		}
		// pion answers a denied ChannelBind with 401; RFC 8656 §11.2 wants 403.
		if d := g.s.decide(in.src, peers[0].Addr()); !d.Allowed || g.s.refuseSelfPort(in.src, peers[0]) {
			g.fail(in, msg, pionstun.CodeForbidden, "Forbidden by peer policy", key)
			return nil, false
		}
		out, ok := g.checkPermissions(in, msg, peers, key)
		if ok && !g.claimPeer(in, msg, peers[0], key) {
			return nil, false
		}
		return out, ok
	case pionstun.MethodConnect:
		// A channel or a connection names the port too: this server's own
		// address outside the relay ports is refused here (pion's permission
		// check sees only the IP).
		if peers, err := peerAddrs(msg); err == nil && len(peers) == 1 && g.s.refuseSelfPort(in.src, peers[0]) {
			g.fail(in, msg, pionstun.CodeForbidden, "Forbidden by peer policy", key)
			return nil, false
		}
	}
	return msg.Raw, true
}

// noAllocation answers 437 (Allocation Mismatch) to a Refresh,
// CreatePermission, ChannelBind or Connect whose 5-tuple holds no
// allocation and reports true. RFC 8656 §5: every TURN request other than
// an Allocate whose 5-tuple identifies no allocation is rejected with 437
// (an indication or ChannelData is silently ignored; neither comes here);
// §7.3, §9.2 and §12.2 apply it to Refresh, CreatePermission and
// ChannelBind, RFC 6062 §5.2 to Connect. pion drops such a request
// unanswered (internal/server/turn.go returns errNoAllocationFound), so a
// client whose allocation was kicked, revoked or expired would wait for its
// transaction to time out. The check comes after authentication, as RFC
// 8656 §5 orders them: an unauthenticated request has had its 401, and the
// 437 is signed with the key the request was verified with. A malformed
// request has had its 400 before (RFC 8489 §7.3.1: the message itself is
// bad, whatever the allocation's state). Freshness of
// the NONCE is pion's to judge and is not checked here: a request signed
// with a stale nonce and no allocation gets the 437 rather than a 438
// first, and the client learns its allocation is gone one round trip
// sooner.
//
// An Allocate the gate passed to pion and pion has not answered yet counts
// as an allocation (allocTable.allocating): pion reports the allocation to
// the table before its success response goes out, and handles one 5-tuple's
// messages in order, so this never shows in practice, but a request must
// never be refused for an allocation that is being made.
func (g *gate) noAllocation(in inbound, msg *pionstun.Message, key []byte) bool {
	method := msg.Type.Method
	switch method {
	case pionstun.MethodRefresh, pionstun.MethodCreatePermission, pionstun.MethodChannelBind, pionstun.MethodConnect:
	default:
		return false
	}
	if g.s.allocs.holds(allocKey(in.src, in.local), in.src) {
		return false
	}
	g.count(method, "mismatch")
	g.s.limited.Log(slog.LevelInfo, "mismatch", "request refused: 437 Allocation Mismatch, the client's 5-tuple holds no allocation (it expired, was deleted, kicked or revoked)",
		"client", in.src, "transport", in.transport, "method", method.String())
	g.fail(in, msg, pionstun.CodeAllocMismatch, "Allocation Mismatch", key)
	return true
}

// wrongCredentials answers 441 (Wrong Credentials) to a Refresh,
// CreatePermission, ChannelBind or Connect whose credentials are valid but
// belong to another user than the allocation on its 5-tuple, and reports
// true. RFC 8656 §5: a request on an existing allocation must be
// authenticated with the same credentials that created it, else 441; §7.5
// and §9.2 say it for Refresh and CreatePermission. pion looks the
// allocation up by 5-tuple and user id together
// (Manager.GetAllocationForUserID) and drops the request unanswered when
// the user differs, so the client would wait for its transaction to time
// out. The comparison is pion's: the user id (a static user's name, a
// time-limited credential's user part), so a client that renews an expiring
// REST credential of the same user keeps its allocation. A wrong password is
// not this case: it fails verification and gets its 401 before. The 441 is
// signed with the key the request was verified with, the only one the
// client can check.
func (g *gate) wrongCredentials(in inbound, msg *pionstun.Message, userID string, key []byte) bool {
	method := msg.Type.Method
	switch method {
	case pionstun.MethodRefresh, pionstun.MethodCreatePermission, pionstun.MethodChannelBind, pionstun.MethodConnect:
	default:
		return false
	}
	owner, ok := g.s.allocs.owner(allocKey(in.src, in.local))
	if !ok || owner == userID {
		return false
	}
	g.count(method, "wrong_credentials")
	g.s.limited.Log(slog.LevelInfo, "wrong-credentials", "request refused: 441 Wrong Credentials, the allocation on this 5-tuple belongs to another user",
		"client", in.src, "transport", in.transport, "method", method.String(), "user", userID)
	g.fail(in, msg, pionstun.CodeWrongCredentials, "Wrong Credentials", key)
	return true
}

const (
	protoUDP = 17
	protoTCP = 6
)

// malformed names the first attribute of msg whose value is not what its
// RFC defines, or returns "". pion takes many of these as absent (a LIFETIME
// of two bytes means the default lifetime, an EVEN-PORT of none no
// EVEN-PORT); RFC 8489 §7.3.1 makes a malformed request a 400.
func malformed(msg *pionstun.Message) string {
	for _, a := range msg.Attributes {
		v := a.Value
		switch a.Type {
		case pionstun.AttrLifetime: // RFC 8656 §18.2
			if len(v) != 4 {
				return "Bad LIFETIME"
			}
		case pionstun.AttrEvenPort: // §18.8
			if len(v) != 1 {
				return "Bad EVEN-PORT"
			}
		case pionstun.AttrReservationToken: // §18.9
			if len(v) != 8 {
				return "Bad RESERVATION-TOKEN"
			}
		case pionstun.AttrRequestedTransport: // §18.7
			if len(v) != 4 {
				return "Bad REQUESTED-TRANSPORT"
			}
		case pionstun.AttrRequestedAddressFamily: // §18.10: 0x01 IPv4, 0x02 IPv6
			if len(v) != 4 || (v[0] != 0x01 && v[0] != 0x02) {
				return "Bad REQUESTED-ADDRESS-FAMILY"
			}
		case attrAdditionalAddressFamily, attrAdditionalAddressFamilyDraft: // §18.11: 0x01 IPv4, 0x02 IPv6
			if len(v) != 4 || (v[0] != 0x01 && v[0] != 0x02) {
				return "Bad ADDITIONAL-ADDRESS-FAMILY"
			}
		case pionstun.AttrXORPeerAddress: // §18.3
			if _, ok := stunwire.ParseAddr(v, msg.TransactionID[:], true); !ok {
				return "Bad XOR-PEER-ADDRESS"
			}
		case pionstun.AttrChannelNumber: // §18.1
			if len(v) != 4 {
				return "Bad CHANNEL-NUMBER"
			}
			if !stunwire.ValidChannel(binary.BigEndian.Uint16(v)) {
				return "Channel number out of range"
			}
		}
	}
	return ""
}

// edits is how the gate changes a request before pion sees it: attribute
// types to drop and attributes to add.
type edits struct {
	drop []pionstun.AttrType
	add  []pionstun.RawAttribute
}

func (e *edits) replace(a pionstun.RawAttribute) {
	e.drop = append(e.drop, a.Type)
	e.add = append(e.add, a)
}

// checkAllocate handles draining, REQUESTED-TRANSPORT (RFC 8656 §7.2 step 3,
// TCP only when RFC 6062 relays are on), EVEN-PORT and RESERVATION-TOKEN
// (§7.2 steps 5 and 6, done beside pion: reserve.go),
// REQUESTED-ADDRESS-FAMILY (RFC 6156 §4.2: 440 when the family is not
// configured) and the lifetime cap. Every Allocate reaches pion tagged with
// its intent, so that the allocator can say why it failed.
func (g *gate) checkAllocate(in inbound, msg *pionstun.Message, key []byte) ([]byte, bool) {
	if g.s.Draining() {
		g.attempt("draining")
		if g.tryAlternate(in, msg, key, "draining") {
			return nil, false
		}
		// 508 as RFC 8656 §7.2 lets a server answer when it cannot take
		// the allocation now; the reason says why, for the client's log:
		// SIGUSR1 or shutdown, not a full port range.
		g.fail(in, msg, pionstun.CodeInsufficientCapacity, "Server is draining: no new allocations, try another server", key)
		return nil, false
	}
	transport, err := msg.Get(pionstun.AttrRequestedTransport)
	if err != nil {
		g.fail(in, msg, pionstun.CodeBadRequest, "Missing REQUESTED-TRANSPORT", key)
		return nil, false
	}
	tcp := transport[0] == protoTCP
	if tcp {
		if !g.s.relays.tcp {
			g.attempt("tcp_disabled")
			g.fail(in, msg, pionstun.CodeUnsupportedTransProto, "TCP relays are disabled", key)
			return nil, false
		}
		if in.transport == "udp" || in.transport == "dtls" {
			// RFC 6062 §5.1: a TCP allocation needs a TCP or TLS control connection.
			g.fail(in, msg, pionstun.CodeBadRequest, "TCP allocation over a datagram transport", key)
			return nil, false
		}
	}
	evenV, evenErr := msg.Get(pionstun.AttrEvenPort)
	tokenV, tokenErr := msg.Get(pionstun.AttrReservationToken)
	famV, famErr := msg.Get(pionstun.AttrRequestedAddressFamily)
	// The dual allocation's attribute under RFC 8656's number or, as
	// coturn's clients send it, the draft's; the answer uses the same one.
	answer := attrAddressErrorCode
	addV, addErr := msg.Get(attrAdditionalAddressFamily)
	if addErr != nil {
		answer = attrAddressErrorCodeDraft
		addV, addErr = msg.Get(attrAdditionalAddressFamilyDraft)
	}
	hasEven, hasToken, hasFam, dual := evenErr == nil, tokenErr == nil, famErr == nil, addErr == nil
	switch {
	case dual && hasFam:
		// RFC 8656 §7.2 step 6: a dual allocation names no single family.
		g.fail(in, msg, pionstun.CodeBadRequest, "REQUESTED-ADDRESS-FAMILY with ADDITIONAL-ADDRESS-FAMILY", key)
		return nil, false
	case dual && addV[0] != 0x02:
		// RFC 8656 §7.2 step 8 and §18.11: IPv6 is the only valid value
		// (IPv4 is the allocation's first family).
		g.fail(in, msg, pionstun.CodeBadRequest, "ADDITIONAL-ADDRESS-FAMILY must be IPv6", key)
		return nil, false
	case hasToken && hasEven:
		// RFC 8656 §7.2 step 5.
		g.fail(in, msg, pionstun.CodeBadRequest, "RESERVATION-TOKEN with EVEN-PORT", key)
		return nil, false
	case hasToken && hasFam:
		// RFC 8656 §7.2 step 5 and RFC 6156 §4.2: the token names the family.
		g.fail(in, msg, pionstun.CodeBadRequest, "RESERVATION-TOKEN with REQUESTED-ADDRESS-FAMILY", key)
		return nil, false
	case tcp && (hasToken || hasEven):
		// RFC 6062 §5.1: a TCP allocation takes neither.
		g.fail(in, msg, pionstun.CodeBadRequest, "EVEN-PORT or RESERVATION-TOKEN with a TCP allocation", key)
		return nil, false
	}

	var e edits
	e.drop = append(e.drop, pionstun.AttrEvenPort, pionstun.AttrReservationToken,
		attrAdditionalAddressFamily, attrAdditionalAddressFamilyDraft)
	// A retransmission of an Allocate that succeeded: pion answers from its
	// cache (or 437), and observe adds the token it issued, if any.
	existing := g.s.allocs.has(allocKey(in.src, in.local))
	if !existing && g.s.alternate != nil && g.s.relays.full() {
		// At limits.allocations_total the allocator would refuse with 508;
		// with an alternate known the client is sent there instead. A
		// retransmission of an Allocate that succeeded (existing) still
		// gets pion's cached answer.
		g.attempt("total_quota")
		if g.tryAlternate(in, msg, key, "full") {
			return nil, false
		}
		g.fail(in, msg, pionstun.CodeInsufficientCapacity, "Server allocation limit reached", key)
		return nil, false
	}
	intent := &allocIntent{
		txKey: txKey{client: canonical(addrPortOf(in.src)), tx: msg.TransactionID},
		key:   key, at: time.Now(),
	}
	if hasEven {
		intent.even = true
		intent.reserve = evenV[0]&0x80 != 0 // the R bit (RFC 8656 §14.6)
	}
	if hasToken && !existing {
		intent.token = binary.BigEndian.Uint64(tokenV)
		network, ok := g.s.relays.res.valid(intent.token)
		if !ok {
			// RFC 8656 §7.2 step 5: an invalid token is a 508.
			g.attempt("token_invalid")
			g.s.limited.Log(slog.LevelInfo, "token-invalid", "allocation refused: "+errTokenInvalid.Error(),
				"client", in.src, "transport", in.transport)
			g.fail(in, msg, pionstun.CodeInsufficientCapacity, "Reservation token unknown, used or expired", key)
			return nil, false
		}
		fam := byte(0x01)
		if network == "udp6" {
			fam = 0x02
		}
		e.add = append(e.add, familyAttr(fam))
		if dual {
			g.s.relays.res.refuseFamily(intent.txKey, key, addressError{answer, 0x03 - fam}, intent.at)
		}
	}
	if hasFam {
		if (famV[0] == 0x01 && !g.s.relays.v4.enabled()) || (famV[0] == 0x02 && !g.s.relays.v6.enabled()) {
			g.attempt("family_disabled")
			g.fail(in, msg, pionstun.CodeAddrFamilyNotSupported, "Address Family not Supported", key)
			return nil, false
		}
	} else if dual && !hasToken {
		// RFC 8656 §7.2 step 8 asks for an IPv4 and an IPv6 relayed address.
		// pion's allocation has one relay socket, so icegate allocates one
		// family, IPv4 when it relays IPv4 (RFC 8656 makes IPv4 the first
		// family), and says in the success response's ADDRESS-ERROR-CODE
		// (§18.13) that the other was not allocated: 440, a family this
		// server does not allocate as the second of a pair. The client
		// knows it holds one family and must not refresh or use the other.
		switch {
		case g.s.relays.v4.enabled():
			e.add = append(e.add, familyAttr(0x01))
			g.s.relays.res.refuseFamily(intent.txKey, key, addressError{answer, 0x02}, intent.at)
		case g.s.relays.v6.enabled():
			e.add = append(e.add, familyAttr(0x02))
			g.s.relays.res.refuseFamily(intent.txKey, key, addressError{answer, 0x01}, intent.at)
		default:
			g.attempt("family_disabled")
			g.fail(in, msg, pionstun.CodeAddrFamilyNotSupported, "Address Family not Supported", key)
			return nil, false
		}
	} else if !hasToken {
		// pion picks the listener's family when the client names none. When
		// that family has no relay, fall back to the other one (RFC 6156
		// makes IPv4 the default), or say 440 when neither exists.
		localIP := addrPortOf(in.local)
		v6listener := localIP.Addr().Is6() && !localIP.Addr().Is4In6()
		switch {
		case v6listener && !g.s.relays.v6.enabled() && g.s.relays.v4.enabled():
			e.add = append(e.add, familyAttr(0x01))
		case !v6listener && !g.s.relays.v4.enabled() && g.s.relays.v6.enabled():
			e.add = append(e.add, familyAttr(0x02))
		case v6listener && !g.s.relays.v6.enabled(), !v6listener && !g.s.relays.v4.enabled():
			g.attempt("family_disabled")
			g.fail(in, msg, pionstun.CodeAddrFamilyNotSupported, "Address Family not Supported", key)
			return nil, false
		}
	}
	if !existing {
		var realm pionstun.Realm
		_ = realm.GetFrom(msg) // checked by verify
		tagged := g.s.relays.res.intend(string(realm), intent)
		e.replace(pionstun.RawAttribute{Type: pionstun.AttrRealm, Value: []byte(tagged)})
	}
	return g.finish(in, msg, key, e)
}

// Attributes of RFC 8656 that pion/stun does not name. coturn (4.6 and
// its turnutils_uclient -Z) still uses the numbers of the draft that became
// RFC 8656 (draft-ietf-tram-turnbis): 0x8032 and 0x8033, where IANA
// registered 0x8000 and 0x8001 (RFC 8656 §17). Both are understood, and
// the answer uses the numbering of the request.
const (
	attrAdditionalAddressFamily      pionstun.AttrType = 0x8000 // §18.11
	attrAddressErrorCode             pionstun.AttrType = 0x8001 // §18.13
	attrAdditionalAddressFamilyDraft pionstun.AttrType = 0x8032 // coturn's ADDITIONAL-ADDRESS-FAMILY
	attrAddressErrorCodeDraft        pionstun.AttrType = 0x8033 // coturn's ADDRESS-ERROR-CODE
)

// addressError is an ADDRESS-ERROR-CODE to add to a success response: its
// attribute type (attrAddressErrorCode or the draft's) and the family that
// was not allocated (0x01 IPv4, 0x02 IPv6).
type addressError struct {
	attr   pionstun.AttrType
	family byte
}

// attribute is the ADDRESS-ERROR-CODE attribute (RFC 8656 §18.13): the
// family, then an ERROR-CODE's class, number and reason.
func (a addressError) attribute(code pionstun.ErrorCode) pionstun.RawAttribute {
	v := append([]byte{a.family, 0, byte(code / 100), byte(code % 100)}, reasonPhrase(int(code))...)
	return pionstun.RawAttribute{Type: a.attr, Value: v}
}

func familyAttr(f byte) pionstun.RawAttribute {
	return pionstun.RawAttribute{Type: pionstun.AttrRequestedAddressFamily, Value: []byte{f, 0, 0, 0}}
}

// pion ignores a requested LIFETIME of an hour or more and uses its default,
// so the largest lifetime it grants is just under an hour.
const pionMaxLifetime = time.Hour - time.Second

// finish enforces limits.max_lifetime (RFC 8656 §7.2: the server may pick a
// shorter lifetime than asked), applies e and re-signs the request if
// anything changed.
func (g *gate) finish(in inbound, msg *pionstun.Message, key []byte, e edits) ([]byte, bool) {
	maxLife := min(g.s.maxLifetime, pionMaxLifetime)
	if v, err := msg.Get(pionstun.AttrLifetime); err == nil && len(v) == 4 {
		asked := time.Duration(binary.BigEndian.Uint32(v)) * time.Second
		if asked > maxLife {
			val := make([]byte, 4)
			binary.BigEndian.PutUint32(val, uint32(maxLife/time.Second))
			e.replace(pionstun.RawAttribute{Type: pionstun.AttrLifetime, Value: val})
		}
	}
	changed := len(e.add) > 0
	for _, t := range e.drop {
		if !changed && msg.Contains(t) {
			changed = true
		}
	}
	if !changed {
		return msg.Raw, true
	}
	out, err := rebuild(msg, key, func(t pionstun.AttrType) bool {
		for _, r := range e.drop {
			if r == t {
				return true
			}
		}
		return false
	}, e.add...)
	if err != nil {
		g.fail(in, msg, pionstun.CodeServerError, "Server Error", key)
		return nil, false
	}
	return out, true
}

// checkPermissions enforces limits.permissions_per_allocation. Permissions
// are counted by the allocation table from pion's events; a refresh of an
// existing permission does not count again. RFC 8656 §9.2: 508 when the
// server cannot add it.
func (g *gate) checkPermissions(in inbound, msg *pionstun.Message, peers []netip.AddrPort, key []byte) ([]byte, bool) {
	limit := g.s.cfg.Limits.PermissionsPerAllocation // NoLimit: no cap
	if limit <= 0 {
		return msg.Raw, true
	}
	if g.s.allocs.permissionsAfter(allocKey(in.src, in.local), peers) > limit {
		g.s.limited.Log(slog.LevelInfo, "permission-quota", "permission refused: allocation has too many permissions",
			"client", in.src, "limit", limit)
		g.fail(in, msg, pionstun.CodeInsufficientCapacity, "Too many permissions", key)
		return nil, false
	}
	return msg.Raw, true
}

// claimPeer claims peer for the client's allocation on its shared relay
// socket (shared.go) before pion binds the channel, so that two
// allocations can never both be told yes. When another allocation holds
// the peer it answers 403 (RFC 8656 §12.2 lets the server refuse a
// ChannelBind; 403 is its answer for what the server will not allow), when
// the allocation holds maxClaims peers already 508 (as for too many
// permissions), and returns false. A claim whose ChannelBind pion then refuses is settled
// when pion's answer goes out (observe).
func (g *gate) claimPeer(in inbound, msg *pionstun.Message, peer netip.AddrPort, key []byte) bool {
	if g.s.relays.shared == nil {
		return true
	}
	rc := g.s.allocs.relayOf(allocKey(in.src, in.local))
	if rc == nil || rc.shared == nil {
		return true // an RFC 6062 TCP relay, or an allocation that just ended (pion drops the request)
	}
	switch rc.shared.claim(rc, peer) {
	case claimsFull:
		g.count(pionstun.MethodChannelBind, "peer_claims_full")
		g.s.limited.Log(slog.LevelInfo, "peer-claims-full", "channel refused: the allocation holds as many peers on its shared relay port as it may",
			"client", in.src, "peer", peer.String(), "relay", rc.public.String(), "limit", maxClaims)
		g.fail(in, msg, pionstun.CodeInsufficientCapacity, "Too many peers for one allocation on a shared relay port", key)
		return false
	case claimTaken:
		g.count(pionstun.MethodChannelBind, "peer_in_use")
		g.s.limited.Log(slog.LevelInfo, "peer-in-use", "channel refused: another allocation on this shared relay port has the peer",
			"client", in.src, "peer", peer.String(), "relay", rc.public.String())
		g.fail(in, msg, pionstun.CodeForbidden, "Peer address and port in use by another allocation on this shared relay port", key)
		return false
	}
	k := txKey{client: canonical(addrPortOf(in.src)), tx: msg.TransactionID}
	g.mu.Lock()
	if len(g.claims) > maxPassed {
		clear(g.claims) // leftovers only: their claims end with their permissions
	}
	g.claims[k] = peerClaim{rc: rc, peer: peer}
	g.claimsPending.Store(int32(len(g.claims)))
	g.mu.Unlock()
	return true
}

// peerClaim is a shared-port claim a ChannelBind made, until pion answers.
type peerClaim struct {
	rc   *relayConn
	peer netip.AddrPort
}

// settleClaim handles pion's answer b to a ChannelBind: an error response
// ends the claim the gate made for it, unless the allocation holds the
// peer anyway (a permission for its IP, or the channel from before).
func (g *gate) settleClaim(b []byte, dst net.Addr) {
	k := txKey{client: canonical(addrPortOf(dst))}
	copy(k.tx[:], b[8:20])
	g.mu.Lock()
	c, ok := g.claims[k]
	if ok {
		delete(g.claims, k)
		g.claimsPending.Store(int32(len(g.claims)))
	}
	g.mu.Unlock()
	if ok && b[1] == 0x19 {
		c.rc.shared.settle(c.rc, c.peer)
	}
}

// peerAddrs decodes every XOR-PEER-ADDRESS (RFC 8656 §18.3); IPv4-mapped
// addresses come back as IPv4, like pion's permission events.
func peerAddrs(msg *pionstun.Message) ([]netip.AddrPort, error) {
	var out []netip.AddrPort
	for _, a := range msg.Attributes {
		if a.Type != pionstun.AttrXORPeerAddress {
			continue
		}
		ap, ok := stunwire.ParseAddr(a.Value, msg.TransactionID[:], true)
		if !ok {
			return nil, errBadPeer
		}
		out = append(out, ap)
	}
	if len(out) == 0 {
		return nil, errBadPeer
	}
	return out, nil
}

var errBadPeer = errors.New("bad XOR-PEER-ADDRESS")

// rebuild re-encodes msg without its integrity and fingerprint attributes
// and without the attribute types drop reports, appends add, and signs with
// key when key is not nil.
func rebuild(msg *pionstun.Message, key []byte, drop func(pionstun.AttrType) bool, add ...pionstun.RawAttribute) ([]byte, error) {
	out := &pionstun.Message{TransactionID: msg.TransactionID, Type: msg.Type}
	out.WriteHeader()
	for _, a := range msg.Attributes {
		switch a.Type {
		case pionstun.AttrMessageIntegrity, pionstun.AttrMessageIntegritySHA256, pionstun.AttrFingerprint:
			continue
		}
		if drop != nil && drop(a.Type) {
			continue
		}
		out.Add(a.Type, a.Value)
	}
	for _, a := range add {
		out.Add(a.Type, a.Value)
	}
	if key != nil {
		if err := pionstun.MessageIntegrity(key).AddTo(out); err != nil {
			return nil, err
		}
	}
	out.WriteLength()
	return out.Raw, nil
}

// tryAlternate answers an Allocate this server will not take (why:
// "draining" or "full") with 300 Try Alternate naming the server
// Options.Alternate picks, and reports whether it did (false: none known).
// RFC 8489 §10: ALTERNATE-SERVER with the alternate's address of the
// request's family, and over TLS or DTLS ALTERNATE-DOMAIN with its name so
// the client can check its certificate; the response is signed with the
// key the request was authenticated with (§10 allows it, and a client
// that checks integrity then trusts the redirect). REALM and NONCE are the
// alternate's (libwebrtc's TurnAllocateRequest::OnTryAlternate applies a
// 300's REALM and NONCE before it allocates there, and fails on a 438).
func (g *gate) tryAlternate(in inbound, msg *pionstun.Message, key []byte, why string) bool {
	if g.s.alternate == nil {
		return false
	}
	src := addrPortOf(in.src)
	alt, ok := g.s.alternate(in.transport, src.Addr().Unmap().Is6())
	if !ok || !alt.Addr.IsValid() {
		return false
	}
	setters := []pionstun.Setter{
		pionstun.NewTransactionIDSetter(msg.TransactionID),
		pionstun.NewType(msg.Type.Method, pionstun.ClassErrorResponse),
		&pionstun.ErrorCodeAttribute{Code: pionstun.CodeTryAlternate, Reason: []byte("Try Alternate")},
		&pionstun.AlternateServer{IP: alt.Addr.Addr().AsSlice(), Port: int(alt.Addr.Port())},
	}
	if alt.Domain != "" && (in.transport == "tls" || in.transport == "dtls") {
		setters = append(setters, pionstun.RawAttribute{Type: pionstun.AttrAlternateDomain, Value: []byte(alt.Domain)})
	}
	if alt.Realm != "" {
		setters = append(setters, pionstun.NewRealm(alt.Realm))
	}
	if alt.Nonce != "" {
		setters = append(setters, pionstun.NewNonce(alt.Nonce))
	}
	setters = append(setters, pionstun.NewSoftware(stun.Software))
	if key != nil {
		setters = append(setters, pionstun.MessageIntegrity(key))
	}
	setters = append(setters, pionstun.Fingerprint)
	m, err := pionstun.Build(setters...)
	if err != nil {
		return false
	}
	// Counted before the client can see the answer (a test, or an
	// operator's scrape right after, must find it).
	g.count(msg.Type.Method, "try_alternate")
	in.reply(m.Raw)
	g.s.limited.Log(slog.LevelInfo, "try-alternate", "allocation sent to another node: 300 Try Alternate",
		"why", why, "alternate", alt.Addr, "node", alt.Node, "client", in.src, "transport", in.transport)
	g.s.emit(Event{Kind: EventRefused, Client: in.src.String(), Transport: in.transport,
		Detail: fmt.Sprintf("Allocate: 300 Try Alternate %s (%s, this server is %s)", alt.Addr, alt.Node, why)})
	return true
}

// errorResponse builds an error response to req, signed with key when the
// request was authenticated (RFC 8489 §9.2.4).
func errorResponse(req *pionstun.Message, code pionstun.ErrorCode, reason string, key []byte) []byte {
	setters := []pionstun.Setter{
		pionstun.NewTransactionIDSetter(req.TransactionID),
		pionstun.NewType(req.Type.Method, pionstun.ClassErrorResponse),
		&pionstun.ErrorCodeAttribute{Code: code, Reason: []byte(reason)},
		pionstun.NewSoftware(stun.Software),
	}
	if key != nil {
		setters = append(setters, pionstun.MessageIntegrity(key))
	}
	setters = append(setters, pionstun.Fingerprint)
	m, err := pionstun.Build(setters...)
	if err != nil {
		return nil
	}
	return m.Raw
}

// fail answers an authenticated request with an error the gate decided on,
// and reports it as an event.
func (g *gate) fail(in inbound, msg *pionstun.Message, code pionstun.ErrorCode, reason string, key []byte) {
	in.reply(errorResponse(msg, code, reason, key))
	g.s.emit(Event{Kind: EventRefused, Client: in.src.String(), Transport: in.transport,
		Detail: fmt.Sprintf("%s: %d %s", msg.Type.Method, int(code), reason)})
}

func (g *gate) drop(reason string) { g.s.metrics.Dropped.WithLabelValues(reason).Inc() }

// overLimit applies the limit for unauthenticated requests: true (and the
// drop counted) when the sender is over it. A UDP source can be forged, so
// UDP requests are held per source IP and address against reflection
// (sourceLimiter); a TCP, TLS or DTLS connection has proven its address in
// its handshake and only answers to its own per-connection bucket, so clients
// sharing an address (a NAT, an L4 proxy) never starve one another there.
func (g *gate) overLimit(in inbound, now time.Time) bool {
	if in.guard != nil {
		if in.guard.allow(now) {
			return false
		}
	} else if g.s.unauth.allow(addrPortOf(in.src), now) {
		return false
	}
	g.s.droppedRateLimited.Inc()
	return true
}

func (g *gate) count(m pionstun.Method, outcome string) {
	g.s.metrics.Requests.WithLabelValues(methodLabel(m), outcome).Inc()
}

// methodLabel keeps the label set bounded: unknown methods share one label.
func methodLabel(m pionstun.Method) string {
	switch m {
	case pionstun.MethodBinding, pionstun.MethodAllocate, pionstun.MethodRefresh,
		pionstun.MethodCreatePermission, pionstun.MethodChannelBind, pionstun.MethodConnect,
		pionstun.MethodConnectionBind:
		return m.String()
	}
	return "other"
}

// observe looks at a message pion sends to a client, to log and count the
// errors pion decides on its own (438 stale nonce above all), and returns
// the bytes to send: pion's own, or its answer to an Allocate rewritten
// with what pion cannot know (reserve.go): the RESERVATION-TOKEN the
// allocator issued, or why the allocation failed.
func (g *gate) observe(b []byte, dst net.Addr) []byte {
	// Relayed data (ChannelData, Data indications) leaves after one look
	// at the first byte: only responses (class bit C1, 0x0100) go on.
	if len(b) < 20 || b[0]&0xC1 != 0x01 {
		return b
	}
	passed, key, note := g.takePassed(b, dst)
	if note != nil && b[1]&0x10 == 0 {
		// A success response (class bits 10, RFC 8489 §5): what pion
		// refreshed without an event, for the kernel's deadlines.
		g.s.allocs.refreshed(note, b)
	}
	if passed && b[0] == 0x01 && (b[1] == 0x03 || b[1] == 0x13) {
		// pion has answered an Allocate the gate passed: it is no longer
		// in flight (noAllocation). Deferred, so that the events below
		// still name the client from its credential.
		defer g.s.allocs.answered(dst)
	}
	// Success (0x0109) or error (0x0119) response to a ChannelBind that
	// claimed a shared-port peer.
	if b[0] == 0x01 && (b[1] == 0x09 || b[1] == 0x19) && g.claimsPending.Load() > 0 {
		g.settleClaim(b, dst)
	}
	// Success (0x0103) or error (0x0113) response to an Allocate, while
	// some note waits: one atomic load on every other message.
	if b[0] == 0x01 && (b[1] == 0x03 || b[1] == 0x13) && g.s.relays.res.pending.Load() > 0 {
		if out, ok := g.allocResponse(b, dst); ok {
			return out
		}
	}
	code := stunwire.ErrorCode(b)
	if code == 0 {
		return b
	}
	if passed && b[0] == 0x01 && b[1] == 0x13 {
		g.allocRefused(code)
	}
	switch code {
	case 438:
		g.s.metrics.AuthRefusals.WithLabelValues("stale-nonce").Inc()
		g.s.limited.Log(slog.LevelInfo, "auth-stale-nonce", "authentication refused",
			"reason", "stale nonce", "client", dst)
	case 486:
		g.s.limited.Log(slog.LevelInfo, "quota-user", "allocation refused: user quota reached (limits.allocations_per_user)",
			"client", dst)
		g.s.emit(Event{Kind: EventRefused, Client: dst.String(), Detail: "486 allocation quota reached (limits.allocations_per_user)"})
	case 508:
		// The allocator's failures are rewritten above with their cause; a
		// 508 still here is one pion decided alone.
		g.s.limited.Log(slog.LevelWarn, "capacity", "allocation refused by pion: 508 (no cause recorded)",
			"client", dst)
		g.s.emit(Event{Kind: EventRefused, Client: dst.String(), Detail: "508 insufficient capacity (refused by pion)"})
	}
	return withReason(b, key)
}

// allocRefused counts pion's own error response to an Allocate the gate
// passed authenticated (icegate_allocation_attempts_total), so that the
// outcomes add up to the Allocates passed: 437 (the 5-tuple already has an
// allocation, RFC 8656 §7.2 step 2) is a mismatch, anything else an error.
// Not counted here: 401 and 438, which are challenges and not attempts;
// 486, counted as user_quota by quota; 508, which pion sends only when the
// allocator failed, and the allocator counts its own outcomes.
func (g *gate) allocRefused(code int) {
	switch code {
	case 401, 438, 486, 508:
	case 437:
		g.attempt("mismatch")
	default:
		g.attempt("error")
	}
}

// The gate remembers, per transaction, each authenticated request it passed
// to pion with the key it verified, until pion's response goes out: the
// response to an Allocate is then known to answer an authenticated,
// well-formed one (allocRefused), and an error response that pion signed
// can be signed again after its reason phrase is filled in (withReason).

// passedEntry is one request passed to pion.
type passedEntry struct {
	key []byte
	// note is what the request refreshes for the kernel fast path when
	// it succeeds (offload.go); nil when that is off.
	note *offloadNote
}

// maxPassed bounds the passed map: an entry stays behind only when pion
// answers nothing (or a response goes out another way: a ConnectionBind's,
// signed by conn.go), and the map is emptied if such leftovers pile up.
const maxPassed = 10000

func (g *gate) rememberPassed(src net.Addr, msg *pionstun.Message, key []byte, note *offloadNote) {
	k := txKey{client: canonical(addrPortOf(src)), tx: msg.TransactionID}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.passed) > maxPassed {
		clear(g.passed)
	}
	g.passed[k] = passedEntry{key: key, note: note}
}

// takePassed returns and forgets the entry for the transaction response b
// answers.
func (g *gate) takePassed(b []byte, dst net.Addr) (bool, []byte, *offloadNote) {
	k := txKey{client: canonical(addrPortOf(dst))}
	copy(k.tx[:], b[8:20])
	g.mu.Lock()
	defer g.mu.Unlock()
	e, ok := g.passed[k]
	if ok {
		delete(g.passed, k)
	}
	return ok, e.key, e.note
}

// withReason fills in the reason phrase of an error response that pion
// sent with none (RFC 8489 §14.8: the phrase is for a human, and coturn's
// clients print it). A response pion signed is signed again with key after
// pion's signature has been checked with it; without the key it is left
// as it is. Error responses are few, so this copies.
func withReason(b []byte, key []byte) []byte {
	v, ok := stunwire.Find(b, stunwire.AttrErrorCode)
	if !ok || len(v) != 4 {
		return b
	}
	code := int(v[2]&0x7)*100 + int(v[3])
	reason := reasonPhrase(code)
	if reason == "" {
		return b
	}
	resp := &pionstun.Message{Raw: append([]byte(nil), b...)}
	if resp.Decode() != nil || resp.Contains(pionstun.AttrMessageIntegritySHA256) {
		return b
	}
	signed := resp.Contains(pionstun.AttrMessageIntegrity)
	if signed && (key == nil || pionstun.MessageIntegrity(key).Check(resp) != nil) {
		return b
	}
	if !signed {
		key = nil
	}
	out, err := rebuild(resp, key, func(t pionstun.AttrType) bool { return t == pionstun.AttrErrorCode },
		pionstun.RawAttribute{Type: pionstun.AttrErrorCode, Value: append(append([]byte(nil), v...), reason...)})
	if err != nil {
		return b
	}
	if resp.Contains(pionstun.AttrFingerprint) {
		out = withFingerprint(out)
	}
	return out
}

// reasonPhrase is the reason phrase RFC 8489 §14.8 and RFC 8656 §15
// recommend for code, or "".
func reasonPhrase(code int) string {
	switch code {
	case 300:
		return "Try Alternate"
	case 400:
		return "Bad Request"
	case 401:
		return "Unauthorized"
	case 403:
		return "Forbidden"
	case 420:
		return "Unknown Attribute"
	case 437:
		return "Allocation Mismatch"
	case 438:
		return "Stale Nonce"
	case 440:
		return "Address Family not Supported"
	case 441:
		return "Wrong Credentials"
	case 442:
		return "Unsupported Transport Protocol"
	case 443:
		return "Peer Address Family Mismatch"
	case 446:
		return "Connection Already Exists" // RFC 6062 §6.3
	case 447:
		return "Connection Timeout or Failure" // RFC 6062 §6.3
	case 486:
		return "Allocation Quota Reached"
	case 500:
		return "Server Error"
	case 508:
		return "Insufficient Capacity"
	}
	return ""
}

// allocResponse rewrites pion's response b to an Allocate when a note says
// how; false leaves b as it is.
func (g *gate) allocResponse(b []byte, dst net.Addr) ([]byte, bool) {
	k := txKey{client: canonical(addrPortOf(dst))}
	copy(k.tx[:], b[8:20])
	n := g.s.relays.res.note(k)
	if n == nil {
		return nil, false
	}
	resp := &pionstun.Message{Raw: append([]byte(nil), b...)}
	if resp.Decode() != nil {
		return nil, false
	}
	success := resp.Type.Class == pionstun.ClassSuccessResponse
	switch {
	case success && (n.token != 0 || n.refused.family != 0):
		var add []pionstun.RawAttribute
		if n.token != 0 {
			// RFC 8656 §7.2: the success response carries the
			// RESERVATION-TOKEN when a second port was reserved.
			var tok [8]byte
			binary.BigEndian.PutUint64(tok[:], n.token)
			add = append(add, pionstun.RawAttribute{Type: pionstun.AttrReservationToken, Value: tok[:]})
		}
		if n.refused.family != 0 {
			// RFC 8656 §7.2 step 8: the family of a dual allocation that
			// was not allocated, with 440.
			add = append(add, n.refused.attribute(pionstun.CodeAddrFamilyNotSupported))
		}
		out, err := rebuild(resp, n.key, nil, add...)
		if err != nil {
			return nil, false
		}
		return withFingerprint(out), true
	case !success && n.err != nil:
		code, reason := failureCode(n.err)
		g.s.limited.Log(slog.LevelWarn, "alloc-"+outcomeOf(n.err), "allocation failed: "+reason,
			"client", dst, "code", int(code), "err", n.err.Error())
		g.s.emit(Event{Kind: EventRefused, Client: dst.String(),
			Detail: fmt.Sprintf("Allocate: %d %s: %v", int(code), reason, n.err)})
		return errorResponse(resp, code, reason, n.key), true
	}
	return nil, false
}

// failureCode is the answer to an Allocate the allocator could not serve.
// RFC 8656 allows 508 only where capacity ran out (and for a bad token, §7.2
// step 5); a relay socket that cannot be bound is a 500 with its reason.
func failureCode(err error) (pionstun.ErrorCode, string) {
	var be *bindError
	switch {
	case errors.Is(err, errTotalQuota):
		return pionstun.CodeInsufficientCapacity, "Server allocation limit reached"
	case errors.Is(err, errSharedNoEven):
		return pionstun.CodeInsufficientCapacity, "No even port among the shared relay ports"
	case errors.Is(err, errSharedNoPair):
		return pionstun.CodeInsufficientCapacity, "No even shared relay port with the next port shared too"
	case errors.Is(err, errRangeFull):
		return pionstun.CodeInsufficientCapacity, "Relay port range exhausted"
	case errors.Is(err, errTokenInvalid), errors.Is(err, errTokenFamily):
		return pionstun.CodeInsufficientCapacity, "Reservation token unknown, used or expired"
	case errors.Is(err, errFamilyDisabled):
		return pionstun.CodeAddrFamilyNotSupported, "Address Family not Supported"
	case errors.Is(err, errTCPRelayOff):
		return pionstun.CodeUnsupportedTransProto, "TCP relays are disabled"
	case errors.As(err, &be):
		return pionstun.CodeServerError, "Relay socket could not be bound"
	}
	return pionstun.CodeServerError, "Server Error"
}

// withFingerprint appends FINGERPRINT to a built message.
func withFingerprint(raw []byte) []byte {
	m := &pionstun.Message{Raw: raw}
	if m.Decode() != nil || pionstun.Fingerprint.AddTo(m) != nil {
		return raw
	}
	return m.Raw
}

// attempt counts an allocation the gate refused before the allocator saw
// it (icegate_allocation_attempts_total; the allocator counts the rest).
func (g *gate) attempt(outcome string) {
	g.s.metrics.AllocationsMade.WithLabelValues(outcome).Inc()
}

// hasAllocation reports whether the 5-tuple key (allocKey) holds an
// allocation: a TCP or TLS connection that does is not idle.
func (g *gate) hasAllocation(key string) bool { return g.s.allocs.has(key) }

// quota is pion's QuotaHandler: limits.allocations_per_user (486), over
// this server's allocations and, with Options.UserElsewhere, the user's
// allocations on the cluster's other nodes.
func (g *gate) quota(userID, _ string, _ net.Addr) bool {
	limit := g.s.cfg.Limits.AllocationsPerUser // NoLimit: no cap
	if limit <= 0 {
		return true
	}
	n := g.s.allocs.userAllocations(userID)
	if n < limit && g.s.userElsewhere != nil {
		// Cluster-wide: only asked when the local count passes, so a user
		// over the cap here costs no round trip.
		n += g.s.userElsewhere(userID)
	}
	ok := n < limit
	if !ok {
		g.attempt("user_quota")
	}
	return ok
}
