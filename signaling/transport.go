package signaling

import (
	"errors"
	"strconv"
	"sync"
	"time"
)

// Transport is one client connection as the session code (session.go,
// handle.go, simple.go) sees it: frames in, frames out, a close with a code.
// No WebSocket type crosses it, so the session code does not care whether
// frames travel over gorilla/websocket (transport_ws.go, today) or another
// implementation later (issue 12, "The shape"; centrifuge's transport.go is
// the model).
//
// A connection has exactly one reader and one writer at a time: ReadFrame
// is only called from the reader goroutine (Server.ServeTransport's
// caller); WriteFrame, Ping and Close only from the connection's writer,
// a goroutine that runs while there is something to write (conn.writer),
// never two at once. ExpireWrites and RemoteAddr may be called from any
// goroutine.
//
// Keepalive is split the way the one-writer rule demands: the server's
// timer loop (timers.go) has the writer send Ping every ping interval, and
// the transport extends its read deadline whenever a frame or a pong
// arrives, so a client that answers neither is dropped.
type Transport interface {
	// ReadFrame blocks for the next data frame and returns it, reusing
	// buf's storage; with a nil buf, storage comes from getFrameBuf once
	// the frame arrives (so a connection waiting holds none), and the
	// caller gives it back with putFrameBuf. A frame longer than limit bytes is read to its end
	// and discarded, and ReadFrame returns its first limit bytes (where
	// the caller may find the message's id) with ErrFrameTooLarge; the
	// connection stays usable. A frame over the transport's own hard
	// limit ends the connection (close code 1009) with an error wrapping
	// ErrReadLimit. A close from the client is a *CloseError.
	ReadFrame(buf []byte, limit int) ([]byte, error)
	// WriteFrame sends head followed by body as one text frame, giving up
	// at deadline. head may be nil; it lets the caller prepend bytes
	// (the "seq" field) without copying body.
	WriteFrame(deadline time.Time, head, body []byte) error
	// Ping sends a keepalive probe, giving up at deadline.
	Ping(deadline time.Time) error
	// Close ends the connection. With code > 0 it first tells the client
	// why (a close frame with code and reason, within a second); with
	// code 0 it just drops the connection. Closing twice is harmless.
	Close(code int, reason string) error
	// ExpireWrites makes a write in progress fail at deadline, so a writer
	// stuck on a client that does not read can be stopped.
	ExpireWrites(deadline time.Time)
	// RemoteAddr is the client's address, for logs.
	RemoteAddr() string
}

// idleReader is a Transport whose reader can wait for input without
// reading it, so that an idle connection's goroutine waits with a small
// stack (issue 15; wsTransport with idleconn.go). The reader calls
// waitInput on its own goroutine and readIdle on a short-lived one, in
// turn; ReadFrame is not used.
type idleReader interface {
	// canWait reports whether this connection can: if not, the reader
	// uses ReadFrame.
	canWait() bool
	// waitInput blocks until input may have arrived, the read deadline
	// passed or the connection closed. It may return early.
	waitInput()
	// readIdle is ReadFrame with storage from getFrameBuf, except that
	// it returns errIdle, having read no frame, when the input was only
	// keepalive and nothing more is buffered.
	readIdle(limit int) ([]byte, error)
	// idle is the idleConn under the transport (once canWait).
	idle() *idleConn
}

// silenceNoter is a transport whose close differs when the client was
// silent past its read timeout (socket.io: engine.io's ping timeout): the
// timer loop tells it before it kills the connection (conn.due).
type silenceNoter interface {
	readTimedOut()
}

// Close codes the server sends (docs/signaling.md; RFC 6455 section 7.4.1
// for the 1xxx ones, 4xxx are this protocol's).
const (
	closeNormal          = 1000 // bye, or the reader ended
	closeGoingAway       = 1001 // server shutting down
	closePolicyViolation = 1008 // too slow: outbox full
	closeServiceRestart  = 1012 // the cluster lost the session: reconnect
	closeTryAgainLater   = 1013 // capacity
	closeReplaced        = 4000 // replaced by a resumed connection
	closeTokenExpired    = 4001 // the token expired and no fresh one came (auth)
	// 4100-4999 are the application's: the server API's disconnect
	// (api.go) closes with the code the backend gives.
)

// closeNoStatus is the code a close frame without a status code is
// reported with (RFC 6455 §7.1.5); never sent.
const closeNoStatus = 1005

// ErrFrameTooLarge is ReadFrame's answer to a frame over the caller's
// limit; the frame was discarded and the connection goes on.
var ErrFrameTooLarge = errors.New("signaling: frame larger than the limit")

// ErrReadLimit is wrapped by ReadFrame's error when a frame went over the
// transport's hard limit, which ends the connection.
var ErrReadLimit = errors.New("signaling: frame over the transport's hard read limit")

// CloseError is ReadFrame's error when the client closed the connection
// with a close code.
type CloseError struct {
	Code int
	Text string
}

// Error implements error.
func (e *CloseError) Error() string {
	return "signaling: client closed the connection: " + strconv.Itoa(e.Code) + " " + e.Text
}

// frameBufs holds read buffers between frames: an idle connection has
// none of its own (issue 15). They start at 1 KiB and grow with the
// frames read into them.
var frameBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// maxPooledFrame is the largest buffer kept in frameBufs: one grown by a
// rare big frame is left to the collector rather than kept for small
// ones.
const maxPooledFrame = 64 << 10

// getFrameBuf returns an empty buffer from the pool.
func getFrameBuf() []byte {
	return (*frameBufs.Get().(*[]byte))[:0]
}

// putFrameBuf gives b back to the pool; nil and oversized ones are
// dropped. b must not be used afterwards.
func putFrameBuf(b []byte) {
	if b == nil || cap(b) > maxPooledFrame {
		return
	}
	b = b[:0]
	frameBufs.Put(&b)
}
