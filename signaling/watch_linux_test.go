package signaling

import "testing"

// A slot freed and taken by another connection has a new generation: an
// event naming the old one (read from the kernel before the first
// connection ended, its descriptor number perhaps reused since) finds no
// connection, and the waiter drops it.
func TestWaiterStaleSlot(t *testing.T) {
	p, err := newPoller(func(*conn, bool) { t.Error("no connection is registered with epoll here") }, func(*conn) { t.Error("no connection is registered with epoll here") })
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	a, b := &conn{}, &conn{}
	p.add(a)
	slot, gen := a.w.slot, a.w.gen
	if p.lookup(slot, gen) != a {
		t.Fatal("a not found in its slot")
	}
	p.release(a)
	p.add(b)
	if b.w.slot != slot || b.w.gen == gen {
		t.Fatalf("b in slot %d gen %d; a was in %d gen %d: want the same slot, a new generation", b.w.slot, b.w.gen, slot, gen)
	}
	if c := p.lookup(slot, gen); c != nil {
		t.Fatal("an event for a's generation found a connection")
	}
	if p.lookup(slot, b.w.gen) != b {
		t.Fatal("b not found in its slot")
	}
	p.release(a) // a's slot is b's now: releasing a again frees nothing
	if p.count() != 1 || p.lookup(slot, b.w.gen) != b {
		t.Fatal("a stale release took b's slot")
	}
	if p.lookup(-1, 0) != nil || p.lookup(99, 0) != nil {
		t.Fatal("a slot out of range found a connection")
	}
}
