package signaling

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"icegate/signaling/engineio"
)

// Accept serves one upgraded WebSocket until it closes or ctx ends. It runs
// the connection's reader on the calling goroutine and one writer goroutine,
// and returns after both have finished. The server owns ws from here on.
func (s *Server) Accept(ctx context.Context, ws *websocket.Conn, opts AcceptOptions) error {
	return s.accept(ctx, ws, nil, opts)
}

// accept is Accept for a connection that serveWS upgraded through nc
// (idleconn.go), or through anything else with a nil nc.
func (s *Server) accept(ctx context.Context, ws *websocket.Conn, nc *idleConn, opts AcceptOptions) error {
	return s.serve(ctx, s.newWSTransport(ws, nc), &opts, opts.proto())
}

// proto is the protocol opts select.
func (opts *AcceptOptions) proto() protocol {
	if opts.Simple {
		return simpleProto{}
	}
	return wsProto{}
}

// newWSTransport wraps ws with s's read limit and read timeout.
func (s *Server) newWSTransport(ws *websocket.Conn, nc *idleConn) *wsTransport {
	st := s.settings()
	return newWSTransport(ws, nc, st.hardReadLimit, st.PingInterval+min(pongWait, st.PingInterval))
}

// wsTransport is the gorilla/websocket Transport.
type wsTransport struct {
	ws          *websocket.Conn
	nc          *idleConn // what ws reads through, when serveWS upgraded it; else nil
	readTimeout time.Duration
	// gone is set by the reader when the connection ended without a
	// close frame (Close then writes none).
	gone atomic.Bool
	// untimed: the server's timer loop keeps the read timeout (a
	// connection in the waiter, watch.go); no read deadline is set.
	untimedReads bool
}

// watched implements watchable: the read timeout is left to the timer
// loop, the deadline set at the start is cleared, and neither a pong nor
// a frame sets another. Any input shows the client alive. Called before
// the connection is first read in the waiter.
func (t *wsTransport) watched(*conn) (*idleConn, time.Duration, bool) {
	t.untimedReads = true
	_ = t.ws.SetReadDeadline(time.Time{})
	return t.nc, t.readTimeout, false
}

// newWSTransport wraps ws, which reads through nc when nc is not nil.
// Frames over hardLimit end the connection (gorilla answers them with
// close code 1009); a client that sends neither a frame nor a pong for
// readTimeout is dropped.
func newWSTransport(ws *websocket.Conn, nc *idleConn, hardLimit int64, readTimeout time.Duration) *wsTransport {
	t := &wsTransport{ws: ws, nc: nc, readTimeout: readTimeout}
	ws.SetReadLimit(hardLimit)
	_ = ws.SetReadDeadline(time.Now().Add(readTimeout))
	ws.SetPongHandler(func(string) error {
		t.pong()
		return nil
	})
	if nc != nil {
		// gorilla's own answers to a client's ping and close, written
		// from the reader beside the writer, as its default handlers
		// write them (gorilla/websocket v1.5.3, conn.go), kept apart
		// from the timer loop's raw ping (ctl). Each closure holds t
		// alone, as the defaults they replace held the conn.
		ws.SetPingHandler(func(data string) error {
			var err error
			t.nc.ctlWrite(func() {
				err = t.ws.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
			})
			// As gorilla's handler: a close already sent, or a write
			// that timed out, is not the reader's error.
			var ne net.Error
			if errors.Is(err, websocket.ErrCloseSent) || errors.As(err, &ne) && ne.Timeout() {
				return nil
			}
			return err
		})
		ws.SetCloseHandler(func(code int, _ string) error {
			msg := websocket.FormatCloseMessage(code, "")
			t.nc.ctlWrite(func() {
				_ = t.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
			})
			return nil
		})
	}
	return t
}

// pong extends the read deadline: the client is alive.
func (t *wsTransport) pong() {
	if t.nc != nil {
		t.nc.pongDue.Store(false)
	}
	if t.untimedReads {
		return
	}
	_ = t.ws.SetReadDeadline(time.Now().Add(t.readTimeout))
}

// answerPing answers a client's ping as gorilla's default ping handler
// does (RFC 6455 §5.5.2: a pong with the ping's payload), for a ping
// idleConn.skipControl took before gorilla saw it. WriteControl may be
// called alongside the writer; an error is the writer's and the reader's
// to find, as gorilla's handler leaves it.
func (t *wsTransport) answerPing(payload []byte) {
	write := func() { _ = t.ws.WriteControl(websocket.PongMessage, payload, time.Now().Add(writeWait)) }
	if t.nc == nil {
		write()
		return
	}
	t.nc.ctlWrite(write)
}

// canWait implements idleReader: only a connection upgraded through an
// idleConn with a raw socket can wait without reading.
func (t *wsTransport) canWait() bool {
	return t.nc != nil && t.nc.raw != nil
}

// idle implements idleReader.
func (t *wsTransport) idle() *idleConn { return t.nc }

// waitInput implements idleReader.
func (t *wsTransport) waitInput() {
	t.nc.wait()
}

// readIdle implements idleReader: keepalives are consumed here (see
// idleConn.skipControl) so that the short-lived goroutine this runs on
// ends instead of blocking in gorilla for the next data frame; after a
// frame, probe learns whether crypto/tls holds more, for the next wait.
func (t *wsTransport) readIdle(limit int) ([]byte, error) {
	if t.nc.lowatOn {
		took := t.nc.takeWaitingPong()
		// The reads below may block mid-frame, for a last segment
		// shorter than the mark: every byte must wake them again. The
		// next ping sets the mark anew (beforePing, lazyPing).
		t.nc.lowatOn = !t.nc.setLowat(1)
		if took {
			t.pong()
			if !t.nc.buffered() {
				return nil, errIdle
			}
		}
	}
	for t.nc.skipControl(t.pong, t.answerPing) {
		t.nc.probe()
		if !t.nc.buffered() {
			return nil, errIdle
		}
	}
	b, err := t.ReadFrame(nil, limit)
	if err == nil || errors.Is(err, ErrFrameTooLarge) {
		t.nc.probe()
	}
	return b, err
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
	if !t.untimedReads {
		_ = t.ws.SetReadDeadline(time.Now().Add(t.readTimeout))
	}
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

// Ping implements Transport. The pong to the last ping, waiting alone in
// the socket (lazy pongs, idleconn_linux.go), is taken first: the client
// is alive.
func (t *wsTransport) Ping(deadline time.Time) error {
	t.beforePing()
	return t.ws.WriteControl(websocket.PingMessage, nil, deadline)
}

// beforePing is Ping's part before the write: the lazy pong of a
// connection whose reader goroutine waits on its socket.
func (t *wsTransport) beforePing() {
	if t.nc != nil && t.nc.lazy && !t.untimedReads {
		took, empty := t.nc.beforePing()
		due := t.nc.pongDue.Load()
		switch {
		case took, !due:
			// The client answered (or has not been asked since it
			// last did): its read deadline runs from here, so that
			// it falls after the next ping, which takes this ping's
			// pong; the reader is not woken for it.
			t.pong()
		case empty:
			// The last ping went unanswered for a whole ping
			// interval, longer than the pong wait: the reader ends
			// the connection as at its read timeout.
			_ = t.ws.SetReadDeadline(time.Now())
		}
		t.nc.pongDue.Store(true)
	}
}

// pingFrame is the server's ping as gorilla's WriteControl writes it: no
// payload, unmasked (RFC 6455 §5.2, §5.5.2).
var pingFrame = [2]byte{0x89, 0x00}

// canPingInline implements inlinePinger: a plain TCP socket that can be
// written without blocking (Linux).
func (t *wsTransport) canPingInline() bool {
	return t.nc != nil && t.nc.tls == nil && t.nc.raw != nil && inlinePings
}

// pingInline implements inlinePinger. The frame goes straight to the
// socket, beside gorilla: gorilla holds no partial frame between writes
// (whole frames are flushed under its write lock, and the caller holds
// the connection's writer role), and the readers' control writes
// (answerPing, a close's answer) wait while the ping is on the socket
// (idleConn.ctl); when one is in progress, the ping goes the blocking way
// (sent 0), so the timer loop never waits behind a write. The send uses
// the socket through RawConn.Control, not Write: Write would wait for the
// socket's write lock, which a control write to a client whose buffer is
// full holds for up to writeWait, and would fail on a write deadline an
// earlier write left behind.
func (t *wsTransport) pingInline() (int, error) {
	t.beforePing()
	if !t.nc.ctl.CompareAndSwap(0, ctlPinging) {
		return 0, nil
	}
	n, err := t.nc.sendNow(pingFrame[:])
	if n == 1 {
		// Cut short: the rest goes out in pingRest before control
		// frames may (ctl stays set), or a pong would land inside the
		// ping. Practically never: two bytes that fit in part only.
		return n, err
	}
	t.nc.ctl.Add(-ctlPinging)
	return n, err
}

// pingRest implements inlinePinger.
func (t *wsTransport) pingRest(sent int, deadline time.Time) error {
	if sent == 0 {
		return t.ws.WriteControl(websocket.PingMessage, nil, deadline)
	}
	defer t.nc.ctl.Add(-ctlPinging) // pingInline kept it for the rest
	nc := t.ws.NetConn()
	_ = nc.SetWriteDeadline(deadline)
	_, err := nc.Write(pingFrame[sent:])
	return err
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

// newSIOTransport is es as a Transport (sio.go), with the idle wait when
// es is over a WebSocket upgradeIdle made.
func newSIOTransport(es *engineio.Session) *sioTransport {
	t := &sioTransport{es: es}
	t.nc, t.answerPing = sioIdleConn(es)
	return t
}

// sioIdleConn is the idleConn es's WebSocket reads through, and a function
// that answers a WebSocket ping on it; nil while es polls, or when its
// WebSocket was not made by upgradeIdle.
func sioIdleConn(es *engineio.Session) (*idleConn, func(payload []byte)) {
	ws := es.WebSocket()
	if ws == nil {
		return nil, nil
	}
	nc, ok := ws.NetConn().(*idleConn)
	if !ok {
		return nil, nil
	}
	// As gorilla's default ping handler (RFC 6455 §5.5.2), for a ping
	// idleConn.skipControl took; WriteControl may be called beside the
	// session's writes. Engine.IO's own keepalive is its ping and pong
	// packets: a WebSocket ping is a client's own.
	return nc, func(payload []byte) {
		_ = ws.WriteControl(websocket.PongMessage, payload, time.Now().Add(writeWait))
	}
}

// upgradeIdle is the Engine.IO server's WebSocket upgrade
// (engineio.Config.Upgrade), for a session opened over WebSocket and for
// one upgrading from polling: through hijackWriter, as serveWS upgrades,
// so that the connection reads through an idleConn whose buffer is
// gorilla's (ReadBufferSize 0 makes gorilla take the hijacked reader) and
// an idle session's reader can wait on the socket (issue 15).
func upgradeIdle(up websocket.Upgrader, w http.ResponseWriter, r *http.Request) (*websocket.Conn, error) {
	up.ReadBufferSize = 0
	return up.Upgrade(&hijackWriter{ResponseWriter: w}, r, nil)
}
