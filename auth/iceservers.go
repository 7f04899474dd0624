package auth

import (
	"net"
	"strconv"
	"strings"
)

// ICEServer is one entry of the iceServers list a browser passes to
// new RTCPeerConnection({iceServers: [...]}) (W3C WebRTC, RTCIceServer
// dictionary). Its JSON encoding is exactly that dictionary, so the
// signaling package can send it as is. For a TURN server minted with
// MintREST, Username and Credential are the time-limited username and
// password; a STUN-only entry leaves both empty.
type ICEServer struct {
	// URLs are stun:, turn: or turns: URIs (RFC 7064, RFC 7065).
	URLs []string `json:"urls"`
	// Username is the long-term credential username.
	Username string `json:"username,omitempty"`
	// Credential is the password (the browser derives the key itself).
	Credential string `json:"credential,omitempty"`
}

// Transports says which of a server's transports to name in iceServers.
type Transports struct {
	UDP, TCP, TLS bool
}

// ICEServers returns the browser iceServers for a STUN/TURN server at host
// (a name or an IP, IPv6 bracketed or not: URLs get it bracketed): a stun:
// URL, and when username is set the turn: (UDP, TCP) and turns: URLs with
// that credential (RFC 7064, RFC 7065). Transports switched off are left out.
func ICEServers(host string, port, tlsPort int, t Transports, username, password string) []ICEServer {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	hp := net.JoinHostPort(host, strconv.Itoa(port))
	hps := net.JoinHostPort(host, strconv.Itoa(tlsPort))
	var out []ICEServer
	if t.UDP {
		out = append(out, ICEServer{URLs: []string{"stun:" + hp}})
	}
	if username == "" {
		return out
	}
	turn := ICEServer{Username: username, Credential: password}
	if t.UDP {
		turn.URLs = append(turn.URLs, "turn:"+hp+"?transport=udp")
	}
	if t.TCP {
		turn.URLs = append(turn.URLs, "turn:"+hp+"?transport=tcp")
	}
	if t.TLS {
		turn.URLs = append(turn.URLs, "turns:"+hps+"?transport=tcp")
	}
	if len(turn.URLs) > 0 {
		out = append(out, turn)
	}
	return out
}
