package config

// The switches, each with its default stated once, here: a switch left nil
// (a Config built in code, or `udp = null` in a file) means what
// default.hcl says, which TestSwitchDefaults checks. Code reads switches
// through these, never through the pointers.

func (l *Listen) UDPOn() bool          { return switchOr(l.UDP, true) }
func (l *Listen) TCPOn() bool          { return switchOr(l.TCP, true) }
func (l *Listen) TLSOn() bool          { return switchOr(l.TLS, true) }
func (l *Listen) DTLSOn() bool         { return switchOr(l.DTLS, true) }
func (l *Listen) SegmentationOn() bool { return switchOr(l.UDPSegmentation, true) }
func (l *Listen) FreeBindOn() bool     { return switchOr(l.FreeBind, true) }

func (r *Relay) TCPOn() bool          { return switchOr(r.TCP, false) }
func (r *Relay) PrivateAllowed() bool { return switchOr(r.PrivateOK, false) }

// Relay modes (Relay.Mode); "" is RelayDedicated.
const (
	RelayDedicated = "dedicated"
	RelayShared    = "shared"
)

// Kernel offload settings (Relay.KernelOffload); "" is OffloadAuto.
const (
	OffloadAuto = "auto"
	OffloadOn   = "on"
	OffloadOff  = "off"
)

// Offload returns relay.kernel_offload with its default applied.
func (r *Relay) Offload() string {
	if r.KernelOffload == "" {
		return OffloadAuto
	}
	return r.KernelOffload
}

// SharedOn reports relay.mode = "shared".
func (r *Relay) SharedOn() bool { return r.Mode == RelayShared }

func (a *Auth) EphemeralSecretOn() bool { return switchOr(a.EphemeralSecret, true) }

func (s *STUN) RFC3489On() bool { return switchOr(s.RFC3489, false) }

func (h *HTTP) TestPageOn() bool { return switchOr(h.TestPage, true) }

func (s *Signaling) TURNEventsOn() bool { return switchOr(s.TURNEvents, true) }
