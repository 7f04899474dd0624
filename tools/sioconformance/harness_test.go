package sioconformance

import (
	"time"

	"icegate/signaling/engineio"
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
