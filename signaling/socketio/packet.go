// Package socketio is the socket.io v4 packet codec (socket.io-protocol
// version 5, github.com/socketio/socket.io-protocol): CONNECT, DISCONNECT,
// EVENT, ACK, CONNECT_ERROR, BINARY_EVENT and BINARY_ACK, with namespaces,
// ack ids and binary attachments. Packets travel as Engine.IO messages
// (package engineio); a binary packet is its text header followed by one
// binary message per attachment. The codec decides nothing: what an event
// means is the caller's.
package socketio

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
)

// Type is a packet type (socket.io-protocol "Packet types").
type Type byte

// The packet types.
const (
	Connect      Type = 0
	Disconnect   Type = 1
	Event        Type = 2
	Ack          Type = 3
	ConnectError Type = 4
	BinaryEvent  Type = 5
	BinaryAck    Type = 6
)

// MaxAttachments caps the binary attachments of one packet, as
// socket.io-parser's maxAttachments (10) does: a header announcing more
// is refused rather than waited for.
const MaxAttachments = 10

// Packet is one socket.io packet.
type Packet struct {
	Type Type
	// Namespace is "/" for the main namespace.
	Namespace string
	// ID is the ack id when HasID: an EVENT that wants an answer, or the
	// ACK that gives it.
	ID    uint64
	HasID bool
	// Data is the JSON payload as sent (nil when absent): the event's
	// name and arguments as an array, the ack's arguments, the CONNECT's
	// auth object, the CONNECT_ERROR's {"message":…}. Binary arguments
	// are {"_placeholder":true,"num":N} here; the bytes are Attachments.
	Data        json.RawMessage
	Attachments [][]byte
}

// ErrInvalid is a packet that does not decode or breaks a rule of the
// protocol; a server closes the connection on it (socket.io's does).
var ErrInvalid = errors.New("socketio: invalid packet")

// reserved are event names a client may not send (socket.io-parser's
// RESERVED_EVENTS): they name the socket's own events.
var reserved = map[string]bool{"connect": true, "connect_error": true, "disconnect": true,
	"disconnecting": true, "newListener": true, "removeListener": true}

// decodeHeader decodes a packet's text form:
// <type>[<attachments>-][<namespace>,][<id>][<JSON>]. The returned
// packet's Data aliases b.
func decodeHeader(b []byte) (Packet, int, error) {
	var p Packet
	if len(b) == 0 || b[0] < '0' || b[0] > '6' {
		return p, 0, ErrInvalid
	}
	p.Type = Type(b[0] - '0')
	i := 1
	atts := 0
	if p.Type == BinaryEvent || p.Type == BinaryAck {
		j := i
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		if j == i || j >= len(b) || b[j] != '-' || j-i > 2 {
			return p, 0, ErrInvalid
		}
		atts, _ = strconv.Atoi(string(b[i:j]))
		if atts > MaxAttachments {
			return p, 0, ErrInvalid
		}
		i = j + 1
	}
	p.Namespace = "/"
	if i < len(b) && b[i] == '/' {
		j := bytes.IndexByte(b[i:], ',')
		if j < 0 {
			p.Namespace = string(b[i:])
			i = len(b)
		} else {
			p.Namespace = string(b[i : i+j])
			i += j + 1
		}
	}
	j := i
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		j++
	}
	if j > i {
		id, err := strconv.ParseUint(string(b[i:j]), 10, 64)
		if err != nil {
			return p, 0, ErrInvalid
		}
		p.ID, p.HasID = id, true
		i = j
	}
	if i < len(b) {
		p.Data = b[i:]
		if !json.Valid(p.Data) {
			return p, 0, ErrInvalid
		}
	}
	if !payloadValid(&p) {
		return p, 0, ErrInvalid
	}
	return p, atts, nil
}

// payloadValid applies socket.io-parser's isPayloadValid.
func payloadValid(p *Packet) bool {
	first := byte(0)
	if d := bytes.TrimLeft(p.Data, " \t\r\n"); len(d) > 0 {
		first = d[0]
	}
	switch p.Type {
	case Connect:
		return p.Data == nil || first == '{'
	case Disconnect:
		return p.Data == nil
	case ConnectError:
		return first == '{' || first == '"'
	case Event, BinaryEvent:
		if first != '[' {
			return false
		}
		var args []json.RawMessage
		if json.Unmarshal(p.Data, &args) != nil || len(args) == 0 {
			return false
		}
		var name string
		if json.Unmarshal(args[0], &name) == nil {
			return !reserved[name]
		}
		var n json.Number
		return json.Unmarshal(args[0], &n) == nil
	case Ack, BinaryAck:
		return first == '['
	}
	return false
}

// Decoder turns Engine.IO messages into packets, gathering a binary
// packet's attachments from the binary messages that follow its header.
// The zero value is ready.
type Decoder struct {
	pending *Packet
	want    int
}

// Decode takes one Engine.IO message. It returns a complete packet, or
// nil while a binary packet waits for attachments. data is copied where
// the packet keeps it. An error (ErrInvalid) leaves the decoder unusable:
// the connection is to be closed.
func (d *Decoder) Decode(data []byte, binary bool) (*Packet, error) {
	if binary {
		if d.pending == nil {
			return nil, ErrInvalid
		}
		d.pending.Attachments = append(d.pending.Attachments, bytes.Clone(data))
		if len(d.pending.Attachments) < d.want {
			return nil, nil
		}
		p := d.pending
		d.pending, d.want = nil, 0
		return p, nil
	}
	if d.pending != nil {
		return nil, ErrInvalid // a text packet before the attachments
	}
	p, atts, err := decodeHeader(data)
	if err != nil {
		return nil, err
	}
	p.Data = bytes.Clone(p.Data)
	if atts > 0 {
		d.pending, d.want = &p, atts
		return nil, nil
	}
	return &p, nil
}

// Append appends p's text form (the first Engine.IO message of a binary
// packet) to dst. A binary packet's attachments go out after it, one
// binary message each.
func (p *Packet) Append(dst []byte) []byte {
	dst = append(dst, '0'+byte(p.Type))
	if p.Type == BinaryEvent || p.Type == BinaryAck {
		dst = strconv.AppendInt(dst, int64(len(p.Attachments)), 10)
		dst = append(dst, '-')
	}
	if p.Namespace != "" && p.Namespace != "/" {
		dst = append(dst, p.Namespace...)
		dst = append(dst, ',')
	}
	if p.HasID {
		dst = strconv.AppendUint(dst, p.ID, 10)
	}
	return append(dst, p.Data...)
}

// EventName returns an EVENT's name (a number is returned as its digits)
// and its arguments after the name.
func EventName(data json.RawMessage) (string, []json.RawMessage, error) {
	var args []json.RawMessage
	if err := json.Unmarshal(data, &args); err != nil || len(args) == 0 {
		return "", nil, ErrInvalid
	}
	var name string
	if json.Unmarshal(args[0], &name) != nil {
		var n json.Number
		if json.Unmarshal(args[0], &n) != nil {
			return "", nil, ErrInvalid
		}
		name = n.String()
	}
	return name, args[1:], nil
}

// EventData builds an EVENT's payload: the name, then the arguments
// (each a JSON value).
func EventData(name string, args ...json.RawMessage) json.RawMessage {
	n, _ := json.Marshal(name) // a string always encodes
	b := append([]byte{'['}, n...)
	for _, a := range args {
		b = append(b, ',')
		b = append(b, a...)
	}
	return append(b, ']')
}

// ArrayData builds an ACK's payload: the arguments as a JSON array.
func ArrayData(args ...json.RawMessage) json.RawMessage {
	b := []byte{'['}
	for i, a := range args {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, a...)
	}
	return append(b, ']')
}
