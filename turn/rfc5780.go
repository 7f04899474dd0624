package turn

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	pionstun "github.com/pion/stun/v4"
	pionturn "github.com/pion/turn/v5"

	"icegate/stun"
)

// bindingSockets answers Binding requests for the gate (stun.Responder) and,
// with RFC 5780 configured (Config.RFC5780), holds the four UDP sockets
// A1:P1, A1:P2, A2:P1, A2:P2 so a response can leave from the one
// CHANGE-REQUEST names. It is filled while New opens the listeners and only
// read afterwards.
type bindingSockets struct {
	rfc5780 *stun.Responder
	conns   [4]net.PacketConn      // the raw sockets, by stun.Socket
	index   map[string]stun.Socket // local address -> socket
}

// openAlternates opens the three RFC 5780 sockets besides primary, the UDP
// listener just opened on addr, when addr is the configured primary address.
// Each is handed to pion behind the gate like the primary, so TURN works on
// all four (RFC 5780 §3 expects that of a combined STUN/TURN server).
func (s *Server) openAlternates(addr netip.Addr, primary net.PacketConn) ([]pionturn.PacketConnConfig, error) {
	st, primaryAddr := s.cfg.RFC5780, s.cfg.primary()
	if !st.On() || addr != primaryAddr {
		return nil, nil
	}
	v := "udp4"
	if addr.Is6() {
		v = "udp6"
	}
	// The bound ports, not the configured ones: tests listen on port 0, and
	// the alternate port 0 then takes whatever A1 got.
	p1, p2 := localPort(primary), uint16(st.AlternatePort)
	b := &s.binding
	b.index = map[string]stun.Socket{primary.LocalAddr().String(): stun.Primary}
	b.conns[stun.Primary] = primary
	var out []pionturn.PacketConnConfig
	for i := stun.AltPort; i <= stun.AltBoth; i++ {
		ap := netip.AddrPortFrom(primaryAddr, p2)
		switch i {
		case stun.AltIP:
			ap = netip.AddrPortFrom(st.Alternate, p1)
		case stun.AltBoth:
			ap = netip.AddrPortFrom(st.Alternate, p2)
		}
		pc, err := s.bindConfig().ListenPacket(context.Background(), v, ap.String())
		if err != nil {
			return nil, fmt.Errorf("listen udp %s (RFC5780.Alternate, RFC5780.AlternatePort): %w", ap, err)
		}
		s.track("udp", pc.LocalAddr(), pc.Close)
		if i == stun.AltPort {
			p2 = localPort(pc)
		}
		b.conns[i] = pc
		b.index[pc.LocalAddr().String()] = i
		out = append(out, pionturn.PacketConnConfig{
			PacketConn:            s.udpListener(pc),
			RelayAddressGenerator: s.relays,
			PermissionHandler:     s.permission,
		})
	}
	pub1, pub2 := st.PrimaryPublic, st.AlternatePublic
	if !pub1.IsValid() {
		pub1 = primaryAddr
	}
	if !pub2.IsValid() {
		pub2 = st.Alternate
	}
	public := [4]netip.AddrPort{
		netip.AddrPortFrom(pub1, p1), netip.AddrPortFrom(pub1, p2),
		netip.AddrPortFrom(pub2, p1), netip.AddrPortFrom(pub2, p2),
	}
	r, err := stun.NewResponder(stun.Config{Addrs: public, RFC3489: st.RFC3489})
	if err != nil {
		return nil, err
	}
	b.rfc5780 = r
	s.log.Info("RFC 5780 NAT behaviour discovery on", "primary", public[stun.Primary].String(),
		"other", public[stun.AltBoth].String(), "rfc3489", st.RFC3489)
	return out, nil
}

// answerBinding answers a Binding request (RFC 8489 §6.3, RFC 5780 §6.1).
// It reports false when the request cannot be answered. The response goes
// back the way the request came, except over UDP on the RFC 5780 sockets,
// where it leaves from the socket Table 1 names to the RESPONSE-PORT.
func (s *Server) answerBinding(in inbound, msg *pionstun.Message, src netip.AddrPort) bool {
	b := &s.binding
	var r *stun.Responder // nil: no alternate address
	on := stun.Primary
	stream := in.transport != "udp"
	if !stream {
		if i, ok := b.index[in.local.String()]; ok {
			r, on = b.rfc5780, i
		}
	}
	rep, err := r.Answer(stun.Request{Msg: msg, Src: src, On: on, Stream: stream})
	if err != nil {
		return false
	}
	if r == nil || (rep.From == on && rep.To == src) {
		in.reply(rep.Data)
		return true
	}
	_, _ = b.conns[rep.From].WriteTo(rep.Data, net.UDPAddrFromAddrPort(rep.To))
	return true
}

// classicBinding answers an RFC 3489 Binding request, one without the magic
// cookie (RFC 3489 §8.2, stun.Responder.AnswerClassic), that arrived on one
// of the RFC 5780 UDP sockets while stun.rfc3489 is on. It reports whether it
// took in (answered, or dropped for the per-source rate); false leaves the
// drop to the gate. Without rfc3489 the classic path does not exist. The
// answer always goes to the request's source: RESPONSE-ADDRESS is never
// honoured (it would make icegate a reflector).
func (g *gate) classicBinding(in inbound) bool {
	b := &g.s.binding
	if in.transport != "udp" || !b.rfc5780.Classic() || !stun.IsClassicBinding(in.data) {
		return false
	}
	on, ok := b.index[in.local.String()]
	if !ok {
		return false
	}
	src := addrPortOf(in.src)
	if g.overLimit(in, time.Now()) {
		return true
	}
	rep, err := b.rfc5780.AnswerClassic(in.data, src, on)
	if err != nil {
		return false
	}
	if rep.From == on {
		in.reply(rep.Data)
	} else {
		_, _ = b.conns[rep.From].WriteTo(rep.Data, net.UDPAddrFromAddrPort(rep.To))
	}
	g.count(pionstun.MethodBinding, "rfc3489")
	return true
}

func localPort(pc net.PacketConn) uint16 {
	ap := addrPortOf(pc.LocalAddr())
	return ap.Port()
}
