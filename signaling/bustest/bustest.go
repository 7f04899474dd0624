package bustest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"icegate/signaling"
)

// NewBus returns a bus for the node named node, not yet started. Buses
// made for one t share their state (they are nodes of one cluster); buses
// of different tests do not. Run starts each with its own Recorder and
// closes it when t ends.
type NewBus func(t *testing.T, node string) signaling.Bus

// Node is a started bus and the recorder of its node.
type Node struct {
	signaling.Bus
	Rec *Recorder
}

// Start makes a bus with newBus, starts it with a fresh Recorder and
// closes it when t ends. It fails t on a delivery out of seq order.
func Start(t *testing.T, newBus NewBus, node string) Node {
	t.Helper()
	b := newBus(t, node)
	rec := NewRecorder()
	if err := b.Start(rec); err != nil {
		t.Fatalf("Start(%s): %v", node, err)
	}
	t.Cleanup(func() {
		if d := rec.Disorder(); len(d) > 0 {
			t.Errorf("node %s: deliveries out of seq order: %v", node, d)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = b.Close(ctx)
	})
	return Node{Bus: b, Rec: rec}
}

// Limits used by the tests unless one says otherwise.
var limits = signaling.Limits{Queue: 16, Keep: 16, Grace: time.Minute}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

var idSeq atomic.Int64

// newID returns a session id like the session code's (lowercase letters
// and digits), unique in the process.
func newID(tag string) string {
	return fmt.Sprintf("%s%dx%d", tag, idSeq.Add(1), time.Now().UnixNano()%1e6)
}

func open(t *testing.T, n Node, user string, l signaling.Limits) (id, token string) {
	t.Helper()
	id = newID("s")
	token = "tok-" + id
	if err := n.Open(ctx(t), signaling.Session{ID: id, User: user, Token: token, Limits: l}); err != nil {
		t.Fatalf("Open: %v", err)
	}
	return id, token
}

func member(id string) []byte { return []byte(`{"peer":"` + id + `"}`) }
func peerJoined(id, room string) []byte {
	return []byte(`{"type":"peer-joined","room":"` + room + `","peer":"` + id + `"}`)
}
func peerLeft(id, room string) []byte {
	return []byte(`{"type":"peer-left","room":"` + room + `","peer":"` + id + `"}`)
}
func joinedPrefix(room string) []byte { return []byte(`{"type":"joined","room":"` + room + `",`) }

func joinReq(id, room string, max int) signaling.JoinRequest {
	return signaling.JoinRequest{Session: id, Room: room, Max: max, RoomsPerPeer: 8,
		Member: member(id), PeerJoined: peerJoined(id, room), PeerLeft: peerLeft(id, room),
		JoinedPrefix: joinedPrefix(room)}
}

func join(t *testing.T, n Node, id, room string, max int) signaling.Joined {
	t.Helper()
	j, err := n.Join(ctx(t), joinReq(id, room, max))
	if err != nil {
		t.Fatalf("Join(%s, %s): %v", id, room, err)
	}
	return j
}

func body(s string) []byte { return []byte(`{"type":"msg","text":"` + s + `"}`) }

func bodies(ds []Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.Body
	}
	return out
}

func count(ds []Delivery, want string) int {
	n := 0
	for _, d := range ds {
		if d.Body == want {
			n++
		}
	}
	return n
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: err %v, want %v", what, err, want)
	}
}

// Run runs the contract tests, each as a subtest with buses of its own.
func Run(t *testing.T, newBus NewBus) {
	tests := []struct {
		name string
		f    func(t *testing.T, newBus NewBus)
	}{
		{"OpenResume", testOpenResume},
		{"ResumeUser", testResumeUser},
		{"ReplayGap", testReplayGap},
		{"HoldExpiry", testHoldExpiry},
		{"HeldQueue", testHeldQueue},
		{"JoinRace", testJoinRace},
		{"JoinAgainLeave", testJoinAgainLeave},
		{"Send", testSend},
		{"Broadcast", testBroadcast},
		{"PushClaim", testPushClaim},
		{"KickRouting", testKickRouting},
		{"Order", testOrder},
		{"Listing", testListing},
		{"Remove", testRemove},
		{"Epoch", testEpoch},
		{"BroadcastFromServer", testBroadcastFromServer},
		{"ImpossibleLast", testImpossibleLast},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.f(t, newBus) })
	}
}

// testOpenResume: a session opened on A resumes on B with its current
// token and on C with its previous one; each time the holder before is
// kicked with 4000 and the messages after Last come back.
func testOpenResume(t *testing.T, newBus NewBus) {
	a, b, c := Start(t, newBus, "node-a"), Start(t, newBus, "node-b"), Start(t, newBus, "node-c")
	id, tok := open(t, a, "alice", limits)
	join(t, a, id, "r1", 4)
	for _, s := range []string{"m1", "m2", "m3"} {
		if err := a.Push(ctx(t), id, body(s)); err != nil {
			t.Fatal(err)
		}
	}
	got := a.Rec.WaitDeliveries(t, id, 4) // joined, m1..m3
	if got[0].Seq != 1 || got[3].Seq != 4 || got[1].Body != string(body("m1")) {
		t.Fatalf("deliveries on A: %+v", got)
	}
	res, err := b.Resume(ctx(t), signaling.ResumeRequest{Token: tok, NewToken: tok + "-2", User: "alice", Last: 2, Limits: limits})
	if err != nil {
		t.Fatalf("Resume on B: %v", err)
	}
	if res.ID != id || !slices.Equal(res.Rooms, []string{"r1"}) || res.From != 3 || res.Gap ||
		!slices.Equal(strs(res.Msgs), []string{string(body("m2")), string(body("m3"))}) {
		t.Fatalf("Resume on B = %+v (msgs %q)", res, strs(res.Msgs))
	}
	waitKick(t, a, id, 4000)
	// Later messages reach B, in order after what Resume returned.
	if err := c.Push(ctx(t), id, body("m4")); err != nil {
		t.Fatal(err)
	}
	if d := b.Rec.WaitDeliveries(t, id, 1); d[len(d)-1].Seq != 5 || d[len(d)-1].Body != string(body("m4")) {
		t.Fatalf("deliveries on B: %+v", d)
	}
	// The previous token (the one B resumed with) still works: a drop
	// during the resume loses nothing.
	res, err = c.Resume(ctx(t), signaling.ResumeRequest{Token: tok, NewToken: tok + "-3", User: "alice", Last: 5, Limits: limits})
	if err != nil {
		t.Fatalf("Resume on C with the previous token: %v", err)
	}
	if res.ID != id || res.From != 6 || len(res.Msgs) != 0 || res.Gap {
		t.Fatalf("Resume on C = %+v", res)
	}
	waitKick(t, b, id, 4000)
	// And the new current one.
	if _, err := a.Resume(ctx(t), signaling.ResumeRequest{Token: tok + "-3", NewToken: tok + "-4", User: "alice", Last: 5, Limits: limits}); err != nil {
		t.Fatalf("Resume on A with the current token: %v", err)
	}
	waitKick(t, c, id, 4000)
	_, err = a.Resume(ctx(t), signaling.ResumeRequest{Token: "no-such-token", NewToken: "x", User: "alice", Limits: limits})
	wantErr(t, "Resume with an unknown token", err, signaling.ErrUnknownSession)
}

func waitKick(t *testing.T, n Node, id string, code int) {
	t.Helper()
	if !n.Rec.WaitFor(5*time.Second, func(r *Recorder) bool {
		return slices.ContainsFunc(r.Kicks(), func(k KickCall) bool { return k.ID == id && k.Code == code })
	}) {
		t.Fatalf("node %s: no kick %d of %s (kicks %+v)", n.NodeID(), code, id, n.Rec.Kicks())
	}
}

func strs(b [][]byte) []string {
	out := make([]string, len(b))
	for i, m := range b {
		out[i] = string(m)
	}
	return out
}

// testResumeUser: another user's token is refused, and the session stays
// where it was.
func testResumeUser(t *testing.T, newBus NewBus) {
	a, b := Start(t, newBus, "node-a"), Start(t, newBus, "node-b")
	id, tok := open(t, a, "alice", limits)
	_, err := b.Resume(ctx(t), signaling.ResumeRequest{Token: tok, NewToken: "t2", User: "mallory", Limits: limits})
	wantErr(t, "Resume as another user", err, signaling.ErrOtherUser)
	if err := b.Push(ctx(t), id, body("still-a")); err != nil {
		t.Fatal(err)
	}
	a.Rec.WaitDeliveries(t, id, 1)
	if len(a.Rec.Kicks()) != 0 {
		t.Fatalf("kicks after a refused resume: %+v", a.Rec.Kicks())
	}
	// Anonymous sessions resume only anonymously.
	id2, tok2 := open(t, a, "", limits)
	_, err = b.Resume(ctx(t), signaling.ResumeRequest{Token: tok2, NewToken: "t3", User: "alice", Limits: limits})
	wantErr(t, "Resume of an anonymous session as a user", err, signaling.ErrOtherUser)
	if res, err := b.Resume(ctx(t), signaling.ResumeRequest{Token: tok2, NewToken: "t4", Limits: limits}); err != nil || res.ID != id2 {
		t.Fatalf("anonymous Resume = %+v, %v", res, err)
	}
}

// testReplayGap: a log bounded at Keep+Queue answers a replay from before
// its start with a gap and the newest messages, and one from inside it
// with what follows.
func testReplayGap(t *testing.T, newBus NewBus) {
	a := Start(t, newBus, "node-a")
	l := signaling.Limits{Queue: 2, Keep: 2, Grace: time.Minute}
	id, _ := open(t, a, "", l)
	for i := 1; i <= 10; i++ {
		if err := a.Push(ctx(t), id, body(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	from, msgs, gap, err := a.Replay(ctx(t), id, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !gap || len(msgs) < l.Keep || len(msgs) > l.Keep+l.Queue || from+uint64(len(msgs))-1 != 10 {
		t.Fatalf("Replay(0) = from %d, %d msgs, gap %v; want a gap and the last %d..%d", from, len(msgs), gap, l.Keep, l.Keep+l.Queue)
	}
	if string(msgs[len(msgs)-1]) != string(body("10")) {
		t.Fatalf("last replayed %s", msgs[len(msgs)-1])
	}
	from, msgs, gap, err = a.Replay(ctx(t), id, 8)
	if err != nil || from != 9 || gap || !slices.Equal(strs(msgs), []string{string(body("9")), string(body("10"))}) {
		t.Fatalf("Replay(8) = %d %q %v %v", from, strs(msgs), gap, err)
	}
	from, msgs, gap, err = a.Replay(ctx(t), id, 10)
	if err != nil || from != 11 || gap || len(msgs) != 0 {
		t.Fatalf("Replay(10) = %d %q %v %v", from, strs(msgs), gap, err)
	}
	_, _, _, err = a.Replay(ctx(t), "no-such-session", 0)
	wantErr(t, "Replay of an unknown session", err, signaling.ErrUnknownSession)
}

// testHoldExpiry: a held session is answered held; when its grace ends
// each other member gets its peer-left exactly once, and it is gone.
func testHoldExpiry(t *testing.T, newBus NewBus) {
	a, b := Start(t, newBus, "node-a"), Start(t, newBus, "node-b")
	s1, _ := open(t, a, "", limits)
	s2, _ := open(t, b, "", limits)
	s3, _ := open(t, b, "", limits)
	for _, id := range []string{s1, s2, s3} {
		join(t, a, id, "room", 8)
	}
	if err := a.Hold(ctx(t), s1, 0, 1, 700*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	// A second Hold changes nothing (and is not an error).
	if err := a.Hold(ctx(t), s1, 0, 0, time.Hour); err != nil {
		t.Fatal(err)
	}
	held, err := b.Send(ctx(t), signaling.SendRequest{From: s2, To: s1, Body: body("to-held"), Ack: []byte(`{"type":"ack"}`), AckHeld: []byte(`{"type":"ack","held":true}`)})
	if err != nil || !held {
		t.Fatalf("Send to held = %v, %v", held, err)
	}
	if d := b.Rec.WaitDeliveries(t, s2, 3); d[2].Body != `{"type":"ack","held":true}` {
		t.Fatalf("sender got %q, want the held ack third", bodies(d))
	}
	counts, err := b.Counts(ctx(t))
	if err != nil || counts[""] < 1 {
		t.Fatalf("Counts = %v, %v; want a held session under \"\"", counts, err)
	}
	left := string(peerLeft(s1, "room"))
	for _, n := range []string{s2, s3} {
		if !b.Rec.WaitFor(10*time.Second, func(r *Recorder) bool { return count(r.Delivered(n), left) >= 1 }) {
			t.Fatalf("%s: no peer-left of the expired session: %q", n, bodies(b.Rec.Delivered(n)))
		}
	}
	time.Sleep(1500 * time.Millisecond) // every node's reaper has run since
	for _, n := range []string{s2, s3} {
		if c := count(b.Rec.Delivered(n), left); c != 1 {
			t.Fatalf("%s got %d peer-left, want 1", n, c)
		}
	}
	_, err = b.Send(ctx(t), signaling.SendRequest{From: s2, To: s1, Body: body("late"), Anyone: true})
	wantErr(t, "Send to an expired session", err, signaling.ErrPeerGone)
	ms, err := a.Members(ctx(t), "room")
	if err != nil || len(ms) != 2 {
		t.Fatalf("Members after expiry = %+v, %v", ms, err)
	}
}

// testHeldQueue: a held session takes Queue messages beyond what was
// written, then sends fail (a broadcast counts it dropped); a resume gets
// them all.
func testHeldQueue(t *testing.T, newBus NewBus) {
	a, b := Start(t, newBus, "node-a"), Start(t, newBus, "node-b")
	l := signaling.Limits{Queue: 2, Keep: 4, Grace: time.Minute}
	s1, tok := open(t, a, "", l)
	s2, _ := open(t, b, "", limits)
	join(t, a, s1, "q", 4)
	join(t, b, s2, "q", 4)
	d := a.Rec.WaitDeliveries(t, s1, 2) // joined, peer-joined
	if err := a.Hold(ctx(t), s1, 0, d[len(d)-1].Seq, time.Minute); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if held, err := b.Send(ctx(t), signaling.SendRequest{From: s2, To: s1, Body: body(fmt.Sprint("q", i))}); err != nil || !held {
			t.Fatalf("Send %d to held = %v, %v", i, held, err)
		}
	}
	_, err := b.Send(ctx(t), signaling.SendRequest{From: s2, To: s1, Body: body("over")})
	wantErr(t, "Send to a held session with a full queue", err, signaling.ErrQueueFull)
	wantErr(t, "Push to a held session with a full queue", b.Push(ctx(t), s1, body("over")), signaling.ErrQueueFull)
	del, drop, err := b.Broadcast(ctx(t), signaling.BroadcastRequest{From: s2, Room: "q", Body: body("bc"), AckPrefix: []byte(`{"type":"ack",`)})
	if err != nil || del != 0 || drop != 1 {
		t.Fatalf("Broadcast to a full held member = %d delivered, %d dropped, %v", del, drop, err)
	}
	if got := b.Rec.WaitDeliveries(t, s2, 2); got[len(got)-1].Body != string(signaling.BroadcastAck([]byte(`{"type":"ack",`), 0, 1)) {
		t.Fatalf("broadcast ack %q", got[len(got)-1].Body)
	}
	res, err := b.Resume(ctx(t), signaling.ResumeRequest{Token: tok, NewToken: "n", Last: 2, Limits: l})
	if err != nil || res.From != 3 || res.Gap || !slices.Equal(strs(res.Msgs), []string{string(body("q0")), string(body("q1"))}) {
		t.Fatalf("Resume = %+v %q, %v", res, strs(res.Msgs), err)
	}
	// Live again: sends are not held.
	if held, err := b.Send(ctx(t), signaling.SendRequest{From: s2, To: s1, Body: body("live")}); err != nil || held {
		t.Fatalf("Send after resume = %v, %v", held, err)
	}
}

// testJoinRace: two nodes race for the last seat of a room, many times;
// exactly one wins each time.
func testJoinRace(t *testing.T, newBus NewBus) {
	a, b := Start(t, newBus, "node-a"), Start(t, newBus, "node-b")
	for round := range 40 {
		room := fmt.Sprint("race-", round)
		first, _ := open(t, a, "", limits)
		join(t, a, first, room, 2)
		sa, _ := open(t, a, "", limits)
		sb, _ := open(t, b, "", limits)
		var wg sync.WaitGroup
		var errA, errB error
		var jA, jB signaling.Joined
		wg.Add(2)
		go func() { defer wg.Done(); jA, errA = a.Join(ctx(t), joinReq(sa, room, 2)) }()
		go func() { defer wg.Done(); jB, errB = b.Join(ctx(t), joinReq(sb, room, 2)) }()
		wg.Wait()
		// Winner and loser both learn the room's cap.
		if jA.Max != 2 || jB.Max != 2 {
			t.Fatalf("round %d: Max %d and %d, want 2 for both", round, jA.Max, jB.Max)
		}
		okA, okB := errA == nil, errB == nil
		if okA == okB {
			t.Fatalf("round %d: join errors %v and %v; want exactly one winner", round, errA, errB)
		}
		for _, e := range []error{errA, errB} {
			if e != nil && !errors.Is(e, signaling.ErrRoomFull) {
				t.Fatalf("round %d: loser's error %v, want ErrRoomFull", round, e)
			}
		}
		if ms, err := a.Members(ctx(t), room); err != nil || len(ms) != 2 {
			t.Fatalf("round %d: members %+v, %v", round, ms, err)
		}
	}
}

// testJoinAgainLeave: the joined reply's bytes, a join again (no news for
// the others), rooms per peer, leave and leave again.
func testJoinAgainLeave(t *testing.T, newBus NewBus) {
	a, b := Start(t, newBus, "node-a"), Start(t, newBus, "node-b")
	s1, _ := open(t, a, "", limits)
	s2, _ := open(t, b, "", limits)
	j1 := join(t, a, s1, "room", 3)
	if len(j1.Peers) != 0 || j1.Max != 3 || j1.Again {
		t.Fatalf("first Join = %+v", j1)
	}
	j2 := join(t, b, s2, "room", 9) // Max only counts for the join that creates the room
	if !slices.Equal(j2.Peers, []string{s1}) || j2.Max != 3 || j2.Again {
		t.Fatalf("second Join = %+v", j2)
	}
	want := signaling.JoinedBody(joinedPrefix("room"), []string{s1}, [][]byte{member(s1)}, 3)
	if d := b.Rec.WaitDeliveries(t, s2, 1); d[0].Body != string(want) {
		t.Fatalf("joined reply %s, want %s", d[0].Body, want)
	}
	if d := a.Rec.WaitDeliveries(t, s1, 2); d[1].Body != string(peerJoined(s2, "room")) {
		t.Fatalf("peer-joined %s", d[1].Body)
	}
	again := join(t, b, s2, "room", 3)
	if !again.Again || !slices.Equal(again.Peers, []string{s1}) || again.Max != 3 {
		t.Fatalf("Join again = %+v", again)
	}
	if d := b.Rec.WaitDeliveries(t, s2, 2); d[1].Body != string(want) {
		t.Fatalf("joined reply again %s, want %s", d[1].Body, want)
	}
	// RoomsPerPeer.
	r := joinReq(s1, "other", 3)
	r.RoomsPerPeer = 1
	_, err := a.Join(ctx(t), r)
	wantErr(t, "Join beyond RoomsPerPeer", err, signaling.ErrTooManyRooms)
	// Leave: the leaver gets Left, the other the PeerLeft body.
	if err := b.Leave(ctx(t), signaling.LeaveRequest{Session: s2, Room: "room", Left: []byte(`{"type":"left"}`)}); err != nil {
		t.Fatal(err)
	}
	if d := b.Rec.WaitDeliveries(t, s2, 3); d[2].Body != `{"type":"left"}` {
		t.Fatalf("leaver got %q", bodies(d))
	}
	if d := a.Rec.WaitDeliveries(t, s1, 3); d[2].Body != string(peerLeft(s2, "room")) {
		t.Fatalf("other got %q", bodies(d))
	}
	if count(a.Rec.Delivered(s1), string(peerJoined(s2, "room"))) != 1 {
		t.Fatalf("join again told the others: %q", bodies(a.Rec.Delivered(s1)))
	}
	err = b.Leave(ctx(t), signaling.LeaveRequest{Session: s2, Room: "room", Left: []byte(`{}`)})
	wantErr(t, "Leave again", err, signaling.ErrNotInRoom)
	// The last one out: the room is gone, and a new one starts with its
	// own cap.
	if err := a.Leave(ctx(t), signaling.LeaveRequest{Session: s1, Room: "room", Left: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if j := join(t, a, s1, "room", 5); j.Max != 5 || len(j.Peers) != 0 {
		t.Fatalf("Join of a fresh room = %+v", j)
	}
}

// testSend: who may reach whom, and the acks.
func testSend(t *testing.T, newBus NewBus) {
	a, b := Start(t, newBus, "node-a"), Start(t, newBus, "node-b")
	s1, _ := open(t, a, "", limits)
	s2, _ := open(t, b, "", limits)
	s3, _ := open(t, b, "", limits)
	join(t, a, s1, "x", 4)
	join(t, b, s2, "x", 4)
	join(t, b, s3, "y", 4)
	join(t, a, s1, "z", 4)
	ack := []byte(`{"type":"ack","id":1}`)
	held, err := a.Send(ctx(t), signaling.SendRequest{From: s1, To: s2, Body: body("hi"), Ack: ack, AckHeld: []byte(`{"held":1}`)})
	if err != nil || held {
		t.Fatalf("Send in a shared room = %v, %v", held, err)
	}
	if d := b.Rec.WaitDeliveries(t, s2, 2); d[1].Body != string(body("hi")) {
		t.Fatalf("target got %q", bodies(d))
	}
	if d := a.Rec.WaitDeliveries(t, s1, 4); d[3].Body != string(ack) {
		t.Fatalf("sender got %q", bodies(d))
	}
	_, err = a.Send(ctx(t), signaling.SendRequest{From: s1, To: s3, Body: body("no")})
	wantErr(t, "Send without a common room", err, signaling.ErrNotShared)
	_, err = a.Send(ctx(t), signaling.SendRequest{From: s1, To: s2, Room: "z", Body: body("no")})
	wantErr(t, "Send naming a room the target is not in", err, signaling.ErrNotShared)
	if _, err := a.Send(ctx(t), signaling.SendRequest{From: s1, To: s2, Room: "x", Body: body("in-x")}); err != nil {
		t.Fatalf("Send naming the common room: %v", err)
	}
	if _, err := a.Send(ctx(t), signaling.SendRequest{From: s1, To: s3, Anyone: true, Body: body("anyone")}); err != nil {
		t.Fatalf("Send with Anyone: %v", err)
	}
	if err := b.Claim(ctx(t), s3, "carol"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Send(ctx(t), signaling.SendRequest{From: s1, To: "carol", ByName: true, Body: body("by-name")}); err != nil {
		t.Fatalf("Send by name: %v", err)
	}
	if d := b.Rec.WaitDeliveries(t, s3, 3); d[1].Body != string(body("anyone")) || d[2].Body != string(body("by-name")) {
		t.Fatalf("s3 got %q", bodies(d))
	}
	_, err = a.Send(ctx(t), signaling.SendRequest{From: s1, To: "nobody", ByName: true, Body: body("x")})
	wantErr(t, "Send to an unclaimed name", err, signaling.ErrUnknownSession)
	_, err = a.Send(ctx(t), signaling.SendRequest{From: s1, To: "no-such-session", Anyone: true, Body: body("x")})
	wantErr(t, "Send to an unknown session", err, signaling.ErrUnknownSession)
	if err := b.Remove(ctx(t), s2, 0); err != nil {
		t.Fatal(err)
	}
	_, err = a.Send(ctx(t), signaling.SendRequest{From: s1, To: s2, Body: body("x")})
	wantErr(t, "Send to a removed session", err, signaling.ErrPeerGone)
}

// testBroadcast: counts and the ack's bytes.
func testBroadcast(t *testing.T, newBus NewBus) {
	a, b := Start(t, newBus, "node-a"), Start(t, newBus, "node-b")
	ids := make([]string, 4)
	for i := range ids {
		n := a
		if i%2 == 1 {
			n = b
		}
		ids[i], _ = open(t, n, "", limits)
		join(t, n, ids[i], "bc", 8)
	}
	prefix := []byte(`{"type":"ack","id":"7",`)
	d, x, err := a.Broadcast(ctx(t), signaling.BroadcastRequest{From: ids[0], Room: "bc", Body: body("all"), AckPrefix: prefix})
	if err != nil || d != 3 || x != 0 {
		t.Fatalf("Broadcast = %d, %d, %v", d, x, err)
	}
	for i, id := range ids[1:] {
		n := a
		if i%2 == 0 {
			n = b
		}
		if !n.Rec.WaitFor(5*time.Second, func(r *Recorder) bool { return count(r.Delivered(id), string(body("all"))) == 1 }) {
			t.Fatalf("%s: %q", id, bodies(n.Rec.Delivered(id)))
		}
	}
	want := string(signaling.BroadcastAck(prefix, 3, 0))
	if !a.Rec.WaitFor(5*time.Second, func(r *Recorder) bool { return count(r.Delivered(ids[0]), want) == 1 }) {
		t.Fatalf("sender: %q, want %s", bodies(a.Rec.Delivered(ids[0])), want)
	}
	// No ack without a prefix.
	if _, _, err := a.Broadcast(ctx(t), signaling.BroadcastRequest{From: ids[0], Room: "bc", Body: body("quiet")}); err != nil {
		t.Fatal(err)
	}
	out, _ := open(t, a, "", limits)
	_, _, err = a.Broadcast(ctx(t), signaling.BroadcastRequest{From: out, Room: "bc", Body: body("x")})
	wantErr(t, "Broadcast from outside the room", err, signaling.ErrNotInRoom)
	b.Rec.WaitFor(5*time.Second, func(r *Recorder) bool { return count(r.Delivered(ids[1]), string(body("quiet"))) == 1 })
	if n := len(a.Rec.Delivered(ids[0])); count(a.Rec.Delivered(ids[0]), want) != 1 || strings.Contains(a.Rec.Delivered(ids[0])[n-1].Body, "quiet") {
		t.Fatalf("sender after a broadcast without ack: %q", bodies(a.Rec.Delivered(ids[0])))
	}
}

// testPushClaim: push to live and unknown sessions; names.
func testPushClaim(t *testing.T, newBus NewBus) {
	a, b := Start(t, newBus, "node-a"), Start(t, newBus, "node-b")
	s1, _ := open(t, a, "", limits)
	s2, _ := open(t, b, "", limits)
	if err := b.Push(ctx(t), s1, body("pushed")); err != nil {
		t.Fatal(err)
	}
	if d := a.Rec.WaitDeliveries(t, s1, 1); d[0].Body != string(body("pushed")) || d[0].Seq != 1 {
		t.Fatalf("pushed: %+v", d)
	}
	wantErr(t, "Push to an unknown session", a.Push(ctx(t), "no-such-session", body("x")), signaling.ErrUnknownSession)
	if err := a.Claim(ctx(t), s1, "bob"); err != nil {
		t.Fatal(err)
	}
	if err := a.Claim(ctx(t), s1, "bob"); err != nil {
		t.Fatalf("claiming one's own name again: %v", err)
	}
	wantErr(t, "Claim of a taken name", b.Claim(ctx(t), s2, "bob"), signaling.ErrNameTaken)
	if err := a.Remove(ctx(t), s1, 0); err != nil {
		t.Fatal(err)
	}
	if err := b.Claim(ctx(t), s2, "bob"); err != nil {
		t.Fatalf("claiming the name of a removed session: %v", err)
	}
}

// testKickRouting: a kick reaches the node holding the session, and only
// it.
func testKickRouting(t *testing.T, newBus NewBus) {
	a, b := Start(t, newBus, "node-a"), Start(t, newBus, "node-b")
	s, _ := open(t, b, "", limits)
	if err := a.Kick(ctx(t), s, 4003, "kicked by the api"); err != nil {
		t.Fatal(err)
	}
	waitKick(t, b, s, 4003)
	if k := b.Rec.Kicks(); k[0].Reason != "kicked by the api" {
		t.Fatalf("kick %+v", k)
	}
	time.Sleep(100 * time.Millisecond)
	if k := a.Rec.Kicks(); len(k) != 0 {
		t.Fatalf("node A got kicks %+v", k)
	}
	wantErr(t, "Kick of an unknown session", a.Kick(ctx(t), "no-such-session", 4003, ""), signaling.ErrUnknownSession)
}

// testOrder: concurrent senders on two nodes; the target's deliveries come
// in seq order with no gap, and each sender's messages in its order.
func testOrder(t *testing.T, newBus NewBus) {
	a, b := Start(t, newBus, "node-a"), Start(t, newBus, "node-b")
	target, _ := open(t, b, "", limits)
	join(t, b, target, "o", 16)
	const senders, each = 6, 40
	var wg sync.WaitGroup
	errs := make(chan error, senders)
	for i := range senders {
		n := a
		if i%2 == 1 {
			n = b
		}
		id, _ := open(t, n, "", limits)
		join(t, n, id, "o", 16)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range each {
				if _, err := n.Send(ctx(t), signaling.SendRequest{From: id, To: target, Body: body(fmt.Sprintf("%d-%03d", i, k))}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	d := b.Rec.WaitDeliveries(t, target, 1+senders+senders*each)
	last := map[string]string{}
	for i, x := range d {
		if x.Seq != uint64(i+1) {
			t.Fatalf("delivery %d has seq %d", i, x.Seq)
		}
		if !strings.Contains(x.Body, `"text"`) {
			continue
		}
		text := x.Body[strings.Index(x.Body, `"text":"`)+8 : len(x.Body)-2]
		who, n, _ := strings.Cut(text, "-")
		if n <= last[who] {
			t.Fatalf("sender %s: %s after %s", who, n, last[who])
		}
		last[who] = n
	}
}

// testListing: rooms, members in join order with their node and user,
// sessions of a user, counts per node.
func testListing(t *testing.T, newBus NewBus) {
	a, b := Start(t, newBus, "node-a"), Start(t, newBus, "node-b")
	s1, _ := open(t, a, "ann", limits)
	s2, _ := open(t, b, "ben", limits)
	s3, _ := open(t, b, "ann", limits)
	before := time.Now().Add(-time.Minute)
	join(t, b, s2, "l1", 5)
	join(t, a, s1, "l1", 5)
	join(t, b, s3, "l2", 0)
	rooms, err := a.Rooms(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(rooms, func(x, y signaling.RoomInfo) int { return strings.Compare(x.Name, y.Name) })
	if want := []signaling.RoomInfo{{Name: "l1", Members: 2, Max: 5}, {Name: "l2", Members: 1, Max: 0}}; !slices.Equal(rooms, want) {
		t.Fatalf("Rooms = %+v, want %+v", rooms, want)
	}
	ms, err := a.Members(ctx(t), "l1")
	if err != nil || len(ms) != 2 {
		t.Fatalf("Members = %+v, %v", ms, err)
	}
	if ms[0].Peer != s2 || ms[0].User != "ben" || ms[0].Node != b.NodeID() ||
		ms[1].Peer != s1 || ms[1].User != "ann" || ms[1].Node != a.NodeID() ||
		ms[0].Joined.Before(before) || ms[1].Joined.Before(ms[0].Joined) {
		t.Fatalf("Members = %+v", ms)
	}
	if ms, err := a.Members(ctx(t), "no-such-room"); err != nil || len(ms) != 0 {
		t.Fatalf("Members of no room = %+v, %v", ms, err)
	}
	ss, err := b.SessionsOf(ctx(t), "ann")
	slices.Sort(ss)
	want := []string{s1, s3}
	slices.Sort(want)
	if err != nil || !slices.Equal(ss, want) {
		t.Fatalf("SessionsOf(ann) = %v, %v; want %v", ss, err, want)
	}
	c, err := a.Counts(ctx(t))
	if err != nil || c[a.NodeID()] != 1 || c[b.NodeID()] != 2 || c[""] != 0 {
		t.Fatalf("Counts = %v, %v", c, err)
	}
	if err := b.Hold(ctx(t), s2, 0, 0, time.Minute); err != nil {
		t.Fatal(err)
	}
	if c, err := a.Counts(ctx(t)); err != nil || c[b.NodeID()] != 1 || c[""] != 1 {
		t.Fatalf("Counts after Hold = %v, %v", c, err)
	}
	if ms, _ := a.Members(ctx(t), "l1"); len(ms) != 2 || ms[0].Peer != s2 {
		t.Fatalf("a held member stays in its room: %+v", ms)
	}
}

// testRemove: a removed session leaves its rooms (the others get its
// PeerLeft once), gives up its token and name, and is answered gone.
func testRemove(t *testing.T, newBus NewBus) {
	a, b := Start(t, newBus, "node-a"), Start(t, newBus, "node-b")
	s1, tok := open(t, a, "u", limits)
	s2, _ := open(t, b, "", limits)
	join(t, a, s1, "r1", 4)
	join(t, a, s1, "r2", 4)
	join(t, b, s2, "r1", 4)
	join(t, b, s2, "r2", 4)
	if err := a.Claim(ctx(t), s1, "n1"); err != nil {
		t.Fatal(err)
	}
	if err := b.Remove(ctx(t), s1, 0); err != nil {
		t.Fatal(err)
	}
	if err := b.Remove(ctx(t), s1, 0); err != nil {
		t.Fatalf("removing a gone session: %v", err)
	}
	for _, r := range []string{"r1", "r2"} {
		w := string(peerLeft(s1, r))
		if !b.Rec.WaitFor(5*time.Second, func(rec *Recorder) bool { return count(rec.Delivered(s2), w) == 1 }) {
			t.Fatalf("%s: %q", r, bodies(b.Rec.Delivered(s2)))
		}
	}
	_, err := b.Resume(ctx(t), signaling.ResumeRequest{Token: tok, NewToken: "x", User: "u", Limits: limits})
	wantErr(t, "Resume of a removed session", err, signaling.ErrUnknownSession)
	_, err = b.Send(ctx(t), signaling.SendRequest{From: s2, To: "n1", ByName: true, Body: body("x")})
	wantErr(t, "Send to the name of a removed session", err, signaling.ErrUnknownSession)
	wantErr(t, "Push to a removed session", b.Push(ctx(t), s1, body("x")), signaling.ErrUnknownSession)
	if ss, err := a.SessionsOf(ctx(t), "u"); err != nil || len(ss) != 0 {
		t.Fatalf("SessionsOf after Remove = %v, %v", ss, err)
	}
	if rooms, err := a.Rooms(ctx(t)); err != nil || len(rooms) != 2 || rooms[0].Members+rooms[1].Members != 2 {
		t.Fatalf("Rooms after Remove = %+v, %v", rooms, err)
	}
}

// testEpoch: a connection that ends after its session resumed (on this
// node or another) cannot hold or remove the resumed session.
func testEpoch(t *testing.T, newBus NewBus) {
	a, b := Start(t, newBus, "node-a"), Start(t, newBus, "node-b")
	id, tok := open(t, a, "", limits)
	res, err := a.Resume(ctx(t), signaling.ResumeRequest{Token: tok, NewToken: "e2", Limits: limits})
	if err != nil || res.Epoch != 2 {
		t.Fatalf("Resume on the same node = %+v, %v; want epoch 2", res, err)
	}
	// The first connection's late Hold and Remove change nothing.
	if err := a.Hold(ctx(t), id, 1, 0, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := a.Remove(ctx(t), id, 1); err != nil {
		t.Fatal(err)
	}
	if err := a.Push(ctx(t), id, body("still")); err != nil {
		t.Fatalf("Push after stale Hold and Remove: %v", err)
	}
	a.Rec.WaitDeliveries(t, id, 1)
	res, err = b.Resume(ctx(t), signaling.ResumeRequest{Token: "e2", NewToken: "e3", Limits: limits})
	if err != nil || res.Epoch != 3 {
		t.Fatalf("Resume on another node = %+v, %v; want epoch 3", res, err)
	}
	// The kick that resume sends node-a names the epoch it replaced, so a
	// newer connection there (had one come) would be spared.
	if !a.Rec.WaitFor(5*time.Second, func(r *Recorder) bool {
		for _, k := range r.Kicks() {
			if k.ID == id && k.Code == 4000 && k.Epoch == 2 {
				return true
			}
		}
		return false
	}) {
		t.Fatalf("no kick of epoch 2 on node-a: %+v", a.Rec.Kicks())
	}
	if err := b.Remove(ctx(t), id, 2); err != nil {
		t.Fatal(err)
	}
	if err := b.Push(ctx(t), id, body("b")); err != nil {
		t.Fatalf("Push after a stale Remove: %v", err)
	}
	b.Rec.WaitDeliveries(t, id, 1)
	if err := b.Remove(ctx(t), id, 3); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "Push after Remove", b.Push(ctx(t), id, body("gone")), signaling.ErrUnknownSession)
}

// testBroadcastFromServer: a broadcast with From "" (the server API's push)
// reaches every member once, acks no one, drops for a held member whose
// queue is full, and reaches no one in a room without members; a
// session's broadcast still needs its membership.
func testBroadcastFromServer(t *testing.T, newBus NewBus) {
	a, b := Start(t, newBus, "node-a"), Start(t, newBus, "node-b")
	l := signaling.Limits{Queue: 4, Keep: 4, Grace: time.Minute}
	s1, _ := open(t, a, "", l)
	s2, _ := open(t, b, "", l)
	s3, _ := open(t, b, "", l)
	for _, id := range []string{s1, s2, s3} {
		join(t, a, id, "srv", 3)
	}
	if err := b.Hold(ctx(t), s3, 0, 0, time.Minute); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		_ = a.Push(ctx(t), s3, body("fill"))
	}
	// Deliveries are asynchronous on a shared bus: let the joins' arrive
	// (s1: joined and two peer-joined; s2: joined and one).
	n1, n2 := len(a.Rec.WaitDeliveries(t, s1, 3)), len(b.Rec.WaitDeliveries(t, s2, 2))
	d, x, err := b.Broadcast(ctx(t), signaling.BroadcastRequest{Room: "srv", Body: body("push"), AckPrefix: []byte(`{"type":"ack",`)})
	if err != nil || d != 2 || x != 1 {
		t.Fatalf("Broadcast from the server = %d delivered, %d dropped, %v; want 2, 1", d, x, err)
	}
	for _, c := range []struct {
		rec *Recorder
		id  string
		n   int
	}{{a.Rec, s1, n1}, {b.Rec, s2, n2}} {
		got := c.rec.WaitDeliveries(t, c.id, c.n+1)[c.n:]
		if len(got) != 1 || got[0].Body != string(body("push")) {
			t.Errorf("%s got %v, want the push once", c.id, bodies(got))
		}
	}
	if d, x, err := a.Broadcast(ctx(t), signaling.BroadcastRequest{Room: "nowhere", Body: body("x")}); d != 0 || x != 0 || err != nil {
		t.Errorf("Broadcast from the server to no room = %d, %d, %v", d, x, err)
	}
	_, _, err = a.Broadcast(ctx(t), signaling.BroadcastRequest{From: "stranger", Room: "srv", Body: body("x")})
	wantErr(t, "Broadcast from a stranger", err, signaling.ErrNotInRoom)
	// No ack reached anyone, later.
	time.Sleep(100 * time.Millisecond)
	if got := a.Rec.Delivered(s1); len(got) != n1+1 {
		t.Errorf("s1 got %v after the push", bodies(got[n1:]))
	}
}

// testImpossibleLast: a resume claiming a seq beyond what was ever written
// to the client gets what was never written, and a gap for what was.
func testImpossibleLast(t *testing.T, newBus NewBus) {
	a, b := Start(t, newBus, "node-a"), Start(t, newBus, "node-b")
	id, tok := open(t, a, "", limits)
	for i := 1; i <= 3; i++ {
		if err := a.Push(ctx(t), id, body(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	a.Rec.WaitDeliveries(t, id, 3)
	if err := a.Hold(ctx(t), id, 0, 1, time.Minute); err != nil { // only seq 1 was written
		t.Fatal(err)
	}
	res, err := b.Resume(ctx(t), signaling.ResumeRequest{Token: tok, NewToken: "imp", Last: 99, Limits: limits})
	if err != nil {
		t.Fatal(err)
	}
	if res.From != 2 || !res.Gap || len(res.Msgs) != 2 || string(res.Msgs[0]) != string(body("2")) {
		t.Fatalf("Resume with last 99 after writing 1 = from %d, gap %v, %q; want from 2, a gap, messages 2 and 3", res.From, res.Gap, res.Msgs)
	}
}
