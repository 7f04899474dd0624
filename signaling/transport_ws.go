package signaling

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// Accept serves one upgraded WebSocket until it closes or ctx ends. It runs
// the connection's reader on the calling goroutine and one writer goroutine,
// and returns after both have finished. The server owns ws from here on.
func (s *Server) Accept(ctx context.Context, ws *websocket.Conn, opts AcceptOptions) error {
	st := s.settings()
	return s.ServeTransport(ctx, newWSTransport(ws, st.hardReadLimit, st.PingInterval+min(pongWait, st.PingInterval)), opts)
}

// wsTransport is the gorilla/websocket Transport.
type wsTransport struct {
	ws          *websocket.Conn
	readTimeout time.Duration
	// gone is set by the reader when the connection ended without a
	// close frame (Close then writes none).
	gone atomic.Bool
}

// newWSTransport wraps ws. Frames over hardLimit end the connection (gorilla
// answers them with close code 1009); a client that sends neither a frame
// nor a pong for readTimeout is dropped.
func newWSTransport(ws *websocket.Conn, hardLimit int64, readTimeout time.Duration) *wsTransport {
	t := &wsTransport{ws: ws, readTimeout: readTimeout}
	ws.SetReadLimit(hardLimit)
	_ = ws.SetReadDeadline(time.Now().Add(readTimeout))
	ws.SetPongHandler(func(string) error {
		return ws.SetReadDeadline(time.Now().Add(readTimeout))
	})
	return t
}

// ReadFrame implements Transport.
func (t *wsTransport) ReadFrame(buf []byte, limit int) ([]byte, error) {
	_, r, err := t.ws.NextReader()
	if err != nil {
		if connGone(err) {
			t.gone.Store(true)
		}
		var ce *websocket.CloseError
		switch {
		case errors.Is(err, websocket.ErrReadLimit):
			return nil, errors.Join(ErrReadLimit, err)
		case errors.As(err, &ce):
			return nil, &CloseError{Code: ce.Code, Text: ce.Text}
		}
		return nil, err
	}
	_ = t.ws.SetReadDeadline(time.Now().Add(t.readTimeout))
	if buf == nil {
		buf = getFrameBuf()
	}
	// Errors reading the body are returned as they are, not as a
	// CloseError: a close in the middle of a message is not a clean
	// goodbye.
	b := bytes.NewBuffer(buf[:0])
	n, err := b.ReadFrom(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if n > int64(limit) {
		if _, err := io.Copy(io.Discard, r); err != nil {
			return nil, err
		}
		return b.Bytes()[:limit], ErrFrameTooLarge
	}
	return b.Bytes(), nil
}

// WriteFrame implements Transport.
func (t *wsTransport) WriteFrame(deadline time.Time, head, body []byte) error {
	_ = t.ws.SetWriteDeadline(deadline)
	w, err := t.ws.NextWriter(websocket.TextMessage)
	if err != nil {
		return err
	}
	if len(head) > 0 {
		_, err = w.Write(head)
	}
	if err == nil {
		_, err = w.Write(body)
	}
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	return err
}

// Ping implements Transport.
func (t *wsTransport) Ping(deadline time.Time) error {
	return t.ws.WriteControl(websocket.PingMessage, nil, deadline)
}

// connGone reports whether a read error means the TCP connection itself
// ended or was reset without a close frame (gorilla reports an EOF as
// close code 1006, RFC 6455 §7.1.5: "closed abnormally"). A timeout is
// not gone: a client that stopped answering may still read a close.
func connGone(err error) bool {
	if ce, ok := errors.AsType[*websocket.CloseError](err); ok {
		return ce.Code == websocket.CloseAbnormalClosure
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// Close implements Transport. After the reader found the connection gone
// no close frame is written: RFC 6455 §7.1.1 sends none once the TCP
// connection is closed, and on a reset socket it is a write and an error
// for nothing, per connection (a reconnect storm's every dropped
// connection ends this way).
func (t *wsTransport) Close(code int, reason string) error {
	if code > 0 && !t.gone.Load() {
		_ = t.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
	}
	return t.ws.Close()
}

// ExpireWrites implements Transport. It sets the deadline on the network
// connection, which is safe from any goroutine (websocket.Conn's own
// SetWriteDeadline is not).
func (t *wsTransport) ExpireWrites(deadline time.Time) {
	_ = t.ws.NetConn().SetWriteDeadline(deadline)
}

// RemoteAddr implements Transport.
func (t *wsTransport) RemoteAddr() string {
	return t.ws.RemoteAddr().String()
}
