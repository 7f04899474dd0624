package cluster

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"testing"
	"time"

	"icegate/signaling"
)

// The API key and token secret every node of a test cluster shares, as
// every node of a real one must (docs/cluster.md).
const (
	apiKey      = "cluster-test-api-key-0123456789abcdef"
	tokenSecret = "cluster-test-token-secret-0123456789abcdef"
)

// withAPI configures tokens and the server API on every node.
var withAPI = conf{
	signaling: fmt.Sprintf("  token_secrets = [%q]", tokenSecret),
	extra:     fmt.Sprintf("api {\n  keys = [%q]\n}", apiKey),
}

// mint returns a token for sub (and meta, when not "").
func mint(t *testing.T, sub, meta string) string {
	t.Helper()
	c := signaling.Claims{Subject: sub, Expiry: time.Now().Add(time.Hour).Unix()}
	if meta != "" {
		c.Meta = json.RawMessage(meta)
	}
	tok, err := signaling.MintToken(tokenSecret, c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// dialAs connects to n's /ws with a token for sub.
func dialAs(t *testing.T, n *node, sub, meta string) *peer {
	t.Helper()
	return dialWS(t, n, "/ws", url.Values{"token": {mint(t, sub, meta)}})
}

// resumeAs resumes p's session on n with a token for sub.
func resumeAs(t *testing.T, n *node, sub string, token string, last uint64) *peer {
	t.Helper()
	return dialWS(t, n, "/ws", url.Values{"token": {mint(t, sub, "")}, "resume": {token}, "last": {strconv.FormatUint(last, 10)}})
}

// call asks n's server API and returns the status and the decoded answer.
func call(t *testing.T, n *node, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, err := http.NewRequest(method, "http://"+n.http+"/api/v1/"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+apiKey)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s on %s: %v", method, path, n.name, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("%s %s on %s: %d, undecodable answer: %v", method, path, n.name, resp.StatusCode, err)
	}
	return resp.StatusCode, out
}

// mustCall is call that wants a 200.
func mustCall(t *testing.T, n *node, method, path string, body any) map[string]any {
	t.Helper()
	status, out := call(t, n, method, path, body)
	if status != http.StatusOK {
		t.Fatalf("%s %s on %s: %d %v", method, path, n.name, status, out)
	}
	return out
}

// joinAll joins ps to room in order; each one already in gets peer-joined.
func joinAll(t *testing.T, room string, ps ...*peer) {
	t.Helper()
	for i, p := range ps {
		p.send(`{"type":"join","room":%q}`, room)
		p.expect("joined")
		for _, q := range ps[:i] {
			if m := q.expect("peer-joined"); m["peer"] != p.id() {
				t.Fatalf("peer-joined: %v, want %s", m, p.id())
			}
		}
	}
}

// expectPush checks that p gets a push of data (and room), with a seq.
func expectPush(t *testing.T, p *peer, room, data string) {
	t.Helper()
	m := p.expect("push")
	if _, ok := m["seq"].(float64); !ok || str(m["data"]) != data || (room != "" && m["room"] != room) || (room == "" && m["room"] != nil) {
		t.Fatalf("push: %v, want data %s room %q and a seq", m, data, room)
	}
}

// The server API on a cluster, over HTTP, as an app's backend uses it: any
// node answers for every node.
func TestAPIAcrossNodes(t *testing.T) {
	_, nodes := cluster(t, 3, withAPI)
	c := dialAs(t, nodes[0], "carol", "")
	a := dialAs(t, nodes[1], "alice", "")
	b := dialAs(t, nodes[2], "bob", "")
	a2 := dialAs(t, nodes[2], "alice", "") // alice's second session, in no room
	joinAll(t, "call", a, b)

	// Pushed from node1 to a room whose members are on nodes 2 and 3.
	if res := mustCall(t, nodes[0], "POST", "push", map[string]any{"room": "call", "data": map[string]int{"n": 1}}); str(res) != `{"delivered":2,"dropped":0}` {
		t.Fatalf("push to the room: %v", res)
	}
	expectPush(t, a, "call", `{"n":1}`)
	expectPush(t, b, "call", `{"n":1}`)
	// To a peer on another node.
	if res := mustCall(t, nodes[0], "POST", "push", map[string]any{"peer": b.id(), "data": "to-b"}); str(res) != `{"delivered":1,"dropped":0}` {
		t.Fatalf("push to a peer: %v", res)
	}
	expectPush(t, b, "", `"to-b"`)
	// To a user with sessions on two nodes.
	if res := mustCall(t, nodes[0], "POST", "push", map[string]any{"user": "alice", "data": "to-alice"}); str(res) != `{"delivered":2,"dropped":0,"sessions":2}` {
		t.Fatalf("push to a user: %v", res)
	}
	expectPush(t, a, "", `"to-alice"`)
	expectPush(t, a2, "", `"to-alice"`)
	for _, p := range []*peer{a, b, a2, c} {
		p.quiet(100 * time.Millisecond) // each had it once
	}

	// The listings, asked of the node with none of the room's members.
	rooms := mustCall(t, nodes[0], "GET", "rooms", nil)
	if str(rooms) != `{"rooms":[{"max_peers":16,"members":2,"room":"call"}]}` {
		t.Fatalf("rooms: %v", rooms)
	}
	room := mustCall(t, nodes[0], "GET", "rooms/call", nil)
	ms, _ := room["members"].([]any)
	if len(ms) != 2 {
		t.Fatalf("rooms/call: %v", room)
	}
	for i, want := range []struct{ peer, user, node string }{{a.id(), "alice", "node2"}, {b.id(), "bob", "node3"}} {
		m := ms[i].(map[string]any)
		if m["peer"] != want.peer || m["user"] != want.user || m["node"] != want.node || m["joined"] == nil {
			t.Fatalf("rooms/call member %d: %v, want %+v", i, m, want)
		}
	}
	if res := mustCall(t, nodes[1], "GET", "nodes", nil); str(res) != `{"held":0,"node":"node2","nodes":[{"node":"node1","sessions":1},{"node":"node2","sessions":1},{"node":"node3","sessions":2}]}` {
		t.Fatalf("nodes: %v", res)
	}
	user := mustCall(t, nodes[0], "GET", "users/alice", nil)
	var ids []string
	for _, id := range user["sessions"].([]any) {
		ids = append(ids, id.(string))
	}
	slices.Sort(ids)
	want := []string{a.id(), a2.id()}
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Fatalf("users/alice: %v, want sessions %v", user, want)
	}

	// Disconnect, from node1, a peer on node3: its client sees the code
	// and reason, the room (on nodes 1 and 2) peer-left, and its resume
	// token is dead.
	c.send(`{"type":"join","room":"call"}`)
	c.expect("joined")
	for _, p := range []*peer{a, b} {
		if m := p.expect("peer-joined"); m["peer"] != c.id() || m["user"] != "carol" {
			t.Fatalf("peer-joined: %v", m)
		}
	}
	last := b.lastSeq()
	if res := mustCall(t, nodes[0], "POST", "disconnect", map[string]any{"peer": b.id(), "code": 4403, "reason": "removed by a moderator"}); str(res) != `{"disconnected":1}` {
		t.Fatalf("disconnect: %v", res)
	}
	if code, reason := b.closedWith(5 * time.Second); code != 4403 || reason != "removed by a moderator" {
		t.Fatalf("disconnected peer closed with %d %q, want 4403 \"removed by a moderator\"", code, reason)
	}
	for _, p := range []*peer{a, c} {
		if m := p.expect("peer-left"); m["peer"] != b.id() || m["room"] != "call" {
			t.Fatalf("peer-left: %v", m)
		}
	}
	b2 := resumeAs(t, nodes[1], "bob", b.token(), last)
	if b2.hello["resumed"] != false || b2.id() == b.id() || b2.hello["resume_error"] == nil {
		t.Fatalf("resume after a disconnect: %v", b2.hello)
	}
	if status, res := call(t, nodes[2], "POST", "push", map[string]any{"peer": b.id(), "data": 1}); status != http.StatusNotFound || str(res["error"].(map[string]any)["code"]) != `"no-such-peer"` {
		t.Fatalf("push to a disconnected peer: %d %v", status, res)
	}

	// Disconnect a user with sessions on two nodes, from a third.
	if res := mustCall(t, nodes[0], "POST", "disconnect", map[string]any{"user": "alice", "reason": "account closed"}); str(res) != `{"disconnected":2}` {
		t.Fatalf("disconnect a user: %v", res)
	}
	for _, p := range []*peer{a, a2} {
		if code, reason := p.closedWith(5 * time.Second); code != 4100 || reason != "account closed" {
			t.Fatalf("alice's session closed with %d %q, want 4100 \"account closed\"", code, reason)
		}
	}
	if m := c.expect("peer-left"); m["peer"] != a.id() {
		t.Fatalf("peer-left: %v", m)
	}
	if res := mustCall(t, nodes[2], "GET", "rooms/call", nil); str(res["members"]) != `[{"joined":`+str(res["members"].([]any)[0].(map[string]any)["joined"])+`,"node":"node1","peer":"`+c.id()+`","user":"carol"}]` {
		t.Fatalf("rooms/call after the disconnects: %v", res)
	}
	if res := mustCall(t, nodes[1], "GET", "users/alice", nil); str(res["sessions"]) != `[]` {
		t.Fatalf("users/alice after the disconnect: %v", res)
	}
	c.quiet(200 * time.Millisecond)
}

// A peer's identity (its token's sub and meta) reaches the members on
// other nodes: in joined, peer-joined, and every message it sends.
func TestIdentityAcrossNodes(t *testing.T) {
	_, nodes := cluster(t, 2, withAPI)
	a := dialAs(t, nodes[0], "alice", `{"name":"Alice"}`)
	b := dialAs(t, nodes[1], "bob", "")
	if a.hello["user"] != "alice" || b.hello["user"] != "bob" {
		t.Fatalf("hello's user: %v / %v", a.hello["user"], b.hello["user"])
	}
	a.send(`{"type":"join","room":"r"}`)
	a.expect("joined")
	b.send(`{"type":"join","room":"r"}`)
	if j := b.expect("joined"); str(j["members"]) != `[{"meta":{"name":"Alice"},"peer":"`+a.id()+`","user":"alice"}]` {
		t.Fatalf("joined across nodes: %v", j)
	}
	if m := a.expect("peer-joined"); m["peer"] != b.id() || m["user"] != "bob" || m["meta"] != nil {
		t.Fatalf("peer-joined across nodes: %v", m)
	}
	b.send(`{"type":"offer","to":%q,"id":1,"data":{"type":"offer","sdp":"v=0"}}`, a.id())
	b.expect("ack")
	if m := a.expect("offer"); m["from"] != b.id() || m["from_user"] != "bob" {
		t.Fatalf("offer across nodes: %v", m)
	}
	a.send(`{"type":"message","to":%q,"id":1,"data":"hi"}`, b.id())
	a.expect("ack")
	if m := b.expect("message"); m["from"] != a.id() || m["from_user"] != "alice" {
		t.Fatalf("message across nodes: %v", m)
	}
	a.send(`{"type":"broadcast","room":"r","id":2,"data":"all"}`)
	a.expect("ack")
	if m := b.expect("broadcast"); m["from"] != a.id() || m["from_user"] != "alice" {
		t.Fatalf("broadcast across nodes: %v", m)
	}
}
