package sioconformance

import (
	"bytes"
	"encoding/json"
	"time"

	"icegate/signaling/engineio"
	"icegate/signaling/socketio"
)

// newEchoServer is engine.io-protocol's test server: every message back to
// its sender, text as text and binary as binary.
func newEchoServer() *engineio.Server {
	return engineio.NewServer(engineio.Config{PingInterval: pingInterval, PingTimeout: pingTimeout, MaxPayload: maxPayload},
		func(s *engineio.Session) {
			var buf []byte
			for {
				b, binary, err := s.ReadMessage(buf)
				if err != nil {
					return
				}
				buf = b
				deadline := time.Now().Add(5 * time.Second)
				if binary {
					err = s.WriteBinary(deadline, b)
				} else {
					err = s.WriteText(deadline, nil, b)
				}
				if err != nil {
					return
				}
			}
		})
}

// newSocketIOServer is socket.io-protocol's test server (its Readme's
// configuration: connectTimeout 1000 ms; on connection, emit "auth" with
// the handshake's auth; "message" echoed as "message-back";
// "message-with-ack" acked with its arguments; a /custom namespace that
// only emits "auth"), built over the Engine.IO server and the codec.
func newSocketIOServer() *engineio.Server {
	return engineio.NewServer(engineio.Config{PingInterval: pingInterval, PingTimeout: pingTimeout, MaxPayload: maxPayload},
		func(s *engineio.Session) {
			// The connection closes unless a namespace is joined within
			// connectTimeout.
			timeout := time.AfterFunc(time.Second, func() { _ = s.Close() })
			defer timeout.Stop()
			var d socketio.Decoder
			connected := map[string]bool{}
			write := func(p *socketio.Packet) error {
				deadline := time.Now().Add(5 * time.Second)
				if err := s.WriteText(deadline, nil, p.Append(nil)); err != nil {
					return err
				}
				for _, a := range p.Attachments {
					if err := s.WriteBinary(deadline, a); err != nil {
						return err
					}
				}
				return nil
			}
			var buf []byte
			for {
				b, binary, err := s.ReadMessage(buf)
				if err != nil {
					return
				}
				buf = b
				p, err := d.Decode(b, binary)
				if err != nil {
					s.Drop()
					return
				}
				if p == nil {
					continue
				}
				ns := p.Namespace
				switch p.Type {
				case socketio.Connect:
					if ns != "/" && ns != "/custom" {
						err = write(&socketio.Packet{Type: socketio.ConnectError, Namespace: ns, Data: json.RawMessage(`{"message":"Invalid namespace"}`)})
						break
					}
					timeout.Stop()
					connected[ns] = true
					auth := json.RawMessage(`{}`)
					if p.Data != nil {
						var c bytes.Buffer
						_ = json.Compact(&c, p.Data)
						auth = c.Bytes()
					}
					err = write(&socketio.Packet{Type: socketio.Connect, Namespace: ns, Data: json.RawMessage(`{"sid":"` + s.ID() + ns + `"}`)})
					if err == nil {
						// The suite reads the handshake and the "auth"
						// event with two listeners, the second added
						// after the first fired: ws 8.5 fires every
						// frame of one TCP read at once, so two frames
						// arriving together lose the second. Node's
						// server writes them a tick apart; so does this.
						time.Sleep(authGap)
						err = write(&socketio.Packet{Type: socketio.Event, Namespace: ns, Data: socketio.EventData("auth", auth)})
					}
				case socketio.Disconnect:
					delete(connected, ns)
				case socketio.Event, socketio.BinaryEvent:
					if !connected[ns] || ns != "/" {
						break
					}
					name, args, _ := socketio.EventName(p.Data)
					switch {
					case name == "message":
						err = write(&socketio.Packet{Type: p.Type, Namespace: ns, Data: socketio.EventData("message-back", args...), Attachments: p.Attachments})
					case name == "message-with-ack" && p.HasID:
						typ := socketio.Ack
						if p.Type == socketio.BinaryEvent {
							typ = socketio.BinaryAck
						}
						err = write(&socketio.Packet{Type: typ, Namespace: ns, ID: p.ID, HasID: true, Data: socketio.ArrayData(args...), Attachments: p.Attachments})
					}
				}
				if err != nil {
					return
				}
			}
		})
}

// authGap separates the CONNECT answer from the "auth" event (see above).
const authGap = 20 * time.Millisecond
