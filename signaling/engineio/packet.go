package engineio

import (
	"encoding/base64"
	"errors"
)

// Packet types (engine.io-protocol, "Protocol": "packet encoding"). A text
// packet is its type digit followed by its data; over WebSocket a binary
// frame is a message packet with no type at all, and in a long-polling
// payload a binary message is "b" followed by its base64.
const (
	typeOpen    = '0'
	typeClose   = '1'
	typePing    = '2'
	typePong    = '3'
	typeMessage = '4'
	typeUpgrade = '5'
	typeNoop    = '6'

	// binaryPrefix marks a base64 binary message in a polling payload.
	binaryPrefix = 'b'
	// recordSeparator joins the packets of a polling payload (0x1e, the
	// ASCII record separator, engine.io-protocol "HTTP long-polling").
	recordSeparator = 0x1e
)

// ErrBadPacket is a packet or payload that does not decode: an unknown
// type, an empty packet, bad base64. Engine.IO closes the session on it.
var ErrBadPacket = errors.New("engineio: invalid packet")

// packet is one decoded packet: its type and data (the message for
// typeMessage, "probe" for a probe ping or pong). binary says a message's
// data is binary.
type packet struct {
	typ    byte
	binary bool
	data   []byte
}

// decodeText decodes one text packet: a WebSocket text frame, or one
// record of a polling payload. data aliases b.
func decodeText(b []byte) (packet, error) {
	if len(b) == 0 {
		return packet{}, ErrBadPacket
	}
	if b[0] == binaryPrefix {
		d := make([]byte, base64.StdEncoding.DecodedLen(len(b)-1))
		n, err := base64.StdEncoding.Decode(d, b[1:])
		if err != nil {
			return packet{}, ErrBadPacket
		}
		return packet{typ: typeMessage, binary: true, data: d[:n]}, nil
	}
	if b[0] < typeOpen || b[0] > typeNoop {
		return packet{}, ErrBadPacket
	}
	return packet{typ: b[0], data: b[1:]}, nil
}

// decodePayload calls fn for each packet of a polling payload, in order,
// stopping at the first error (fn's, or ErrBadPacket for a record that does
// not decode; the packets before it have been handled).
func decodePayload(b []byte, fn func(packet) error) error {
	for {
		i := indexRS(b)
		rec := b
		if i >= 0 {
			rec = b[:i]
		}
		p, err := decodeText(rec)
		if err != nil {
			return err
		}
		if err := fn(p); err != nil {
			return err
		}
		if i < 0 {
			return nil
		}
		b = b[i+1:]
	}
}

func indexRS(b []byte) int {
	for i, c := range b {
		if c == recordSeparator {
			return i
		}
	}
	return -1
}

// appendPayload appends the polling payload of ps to dst: text packets as
// type and data, binary messages as "b" and base64, separated by 0x1e.
func appendPayload(dst []byte, ps []packet) []byte {
	for i, p := range ps {
		if i > 0 {
			dst = append(dst, recordSeparator)
		}
		if p.binary {
			dst = append(dst, binaryPrefix)
			dst = base64.StdEncoding.AppendEncode(dst, p.data)
			continue
		}
		dst = append(dst, p.typ)
		dst = append(dst, p.data...)
	}
	return dst
}
