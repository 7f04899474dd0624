package auth

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
