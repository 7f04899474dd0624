package turn

import (
	"cmp"
	"net/netip"
	"slices"
	"strconv"
	"time"
)

// What an operator sees of live allocations and what they may do to them
// (the admin API in cmd/icegate): list, show, kick. Everything is read from
// the allocation table (allocs.go), the one place that knows allocations.

// AllocationInfo describes one live allocation.
type AllocationInfo struct {
	// ID names the allocation while the server runs (the admin API's
	// /allocations/{id}); ids are not reused.
	ID string `json:"id"`
	// User is the user id the credential stands for: a static user's
	// name, or a shared-secret credential's USER part (its whole username
	// when it has none). limits.allocations_per_user counts by it.
	User string `json:"user"`
	// CustomID is the credential's custom identifier: the USER part of a
	// shared-secret username "EXPIRY:USER", which an application fills with
	// the id of its end user or tenant; "" for static users.
	CustomID string `json:"custom_id,omitempty"`
	// Username is the USERNAME the client last authenticated with.
	Username string `json:"username"`
	// Client is the client's transport address, Server the server's (the
	// 5-tuple, RFC 8656 §2); Transport is udp, tcp, tls or dtls.
	Client    string `json:"client"`
	Server    string `json:"server"`
	Transport string `json:"transport"`
	// Relay is the relayed transport address (XOR-RELAYED-ADDRESS).
	Relay string `json:"relay"`
	// TCPRelay is set for an RFC 6062 TCP relay; its traffic counts the
	// bytes of its peer connections, a packet being one read or write.
	TCPRelay bool      `json:"tcp_relay,omitempty"`
	Start    time.Time `json:"start"`
	// Traffic is what it relayed so far.
	Traffic
	// Permissions are the peer IPs it holds a permission for (RFC 8656
	// §9), Channels its channel bindings (§12), both sorted.
	Permissions []string      `json:"permissions"`
	Channels    []ChannelInfo `json:"channels"`
}

// ChannelInfo is one channel binding.
type ChannelInfo struct {
	Number uint16 `json:"number"`
	Peer   string `json:"peer"`
}

// AllocationFilter selects allocations; an empty field matches all.
type AllocationFilter struct {
	// User matches the user id, CustomID the custom identifier.
	User, CustomID string
	// Client matches the client's IP address, or its IP:port.
	Client string
}

func (f AllocationFilter) match(a *allocEntry) bool {
	if f.User != "" && a.cred.userID != f.User {
		return false
	}
	if f.CustomID != "" && a.cred.customID() != f.CustomID {
		return false
	}
	if f.Client != "" {
		ap := canonical(addrPortOf(a.src))
		if ip, err := netip.ParseAddr(f.Client); err == nil {
			return ap.Addr() == ip.Unmap()
		}
		want, err := netip.ParseAddrPort(f.Client)
		return err == nil && ap == canonical(want)
	}
	return true
}

// describe copies a's state. t.mu is held.
func (a *allocEntry) describe() AllocationInfo {
	out := AllocationInfo{ID: strconv.FormatUint(a.id, 10), User: a.cred.userID, CustomID: a.cred.customID(),
		Username: a.cred.username, Client: a.src.String(), Server: a.dst.String(), Transport: a.cred.transport,
		Relay: a.relay.addr.String(), TCPRelay: a.relay.tcp, Start: a.start, Traffic: a.traffic(),
		Permissions: make([]string, 0, len(a.peers)), Channels: make([]ChannelInfo, 0, len(a.chans))}
	for ip := range a.peers {
		out.Permissions = append(out.Permissions, ip.String())
	}
	slices.Sort(out.Permissions)
	for n, p := range a.chans {
		out.Channels = append(out.Channels, ChannelInfo{Number: n, Peer: p.String()})
	}
	slices.SortFunc(out.Channels, func(x, y ChannelInfo) int { return int(x.Number) - int(y.Number) })
	return out
}

// Allocations lists the live allocations f matches, oldest first.
func (s *Server) Allocations(f AllocationFilter) []AllocationInfo {
	t := s.allocs
	t.mu.RLock()
	out := make([]AllocationInfo, 0, len(t.allocs))
	for _, a := range t.allocs {
		if f.match(a) {
			out = append(out, a.describe())
		}
	}
	t.mu.RUnlock()
	slices.SortFunc(out, func(x, y AllocationInfo) int {
		a, _ := strconv.ParseUint(x.ID, 10, 64)
		b, _ := strconv.ParseUint(y.ID, 10, 64)
		return cmp.Compare(a, b)
	})
	return out
}

// Allocation returns the live allocation of id.
func (s *Server) Allocation(id string) (AllocationInfo, bool) {
	n, err := strconv.ParseUint(id, 10, 64)
	if err != nil {
		return AllocationInfo{}, false
	}
	t := s.allocs
	t.mu.RLock()
	defer t.mu.RUnlock()
	a := t.byID[n]
	if a == nil {
		return AllocationInfo{}, false
	}
	return a.describe(), true
}

// Kick ends the allocation of id, as a revocation does (revoke.go): its
// relay socket closes, so relaying stops at once and pion deletes the
// allocation (later requests on it get 437 Allocation Mismatch, RFC 8656
// §7.3 and §10), and a TCP, TLS or DTLS client's connection is closed, so
// that client's next send fails. reason goes to the log and the event. It
// reports false when no live allocation has that id.
func (s *Server) Kick(id, reason string) bool {
	n, err := strconv.ParseUint(id, 10, 64)
	if err != nil {
		return false
	}
	t := s.allocs
	t.mu.RLock()
	a := t.byID[n]
	var l liveAlloc
	if a != nil {
		l = t.live(a)
	}
	t.mu.RUnlock()
	if a == nil {
		return false
	}
	s.kick(l, reason)
	return true
}

// KickUser ends every live allocation of a user id (AllocationInfo.User)
// and returns how many.
func (s *Server) KickUser(user, reason string) int {
	t := s.allocs
	t.mu.RLock()
	var list []liveAlloc
	for _, a := range t.allocs {
		if a.cred.userID == user {
			list = append(list, t.live(a))
		}
	}
	t.mu.RUnlock()
	for _, l := range list {
		s.kick(l, reason)
	}
	return len(list)
}

// kick closes l's relay socket and its client's stream connection.
func (s *Server) kick(l liveAlloc, reason string) {
	s.kicked.Inc()
	s.log.Info("allocation kicked", "client", l.src.String(), "user", l.cred.userID, "relay", l.relay, "reason", reason)
	s.emit(Event{Kind: EventRefused, Client: l.src.String(), Transport: l.cred.transport,
		Username: l.cred.username, UserID: l.cred.userID, Detail: "allocation ended by an operator: " + reason})
	if l.sock != nil {
		_ = l.sock.Close()
	}
	s.streams.closeKey(l.key)
}

// logUsage writes an ended allocation's usage line, as coturn's session
// line does (its rp/rb: packets and bytes received from the client, sp/sb:
// sent to it), with the names icegate's counters use besides.
func (s *Server) logUsage(a allocInfo) {
	s.log.Info("allocation usage",
		"client", a.client, "user", a.userID, "custom_id", a.customID, "username", a.username,
		"transport", a.transport, "relay", a.relay,
		"duration", time.Since(a.start).Round(time.Millisecond).String(),
		"rp", a.traffic.PacketsToPeer, "rb", a.traffic.BytesToPeer,
		"sp", a.traffic.PacketsToClient, "sb", a.traffic.BytesToClient)
}
