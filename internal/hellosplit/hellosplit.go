// Package hellosplit re-frames a TLS client's plaintext handshake records
// into small records before Go's crypto/tls reads them, so that a server
// connection does not keep a record buffer the size of the ClientHello for
// its whole life (issue 15).
//
// crypto/tls reads records into a bytes.Buffer (tls.Conn.rawInput) that
// keeps the capacity its largest record grew it to, plus 512 bytes of
// read-ahead room. The largest record an idle connection ever sees is
// usually the ClientHello: about 1.5 KiB from Go's client and 1.8-2 KiB
// from browsers (both carry an X25519MLKEM768 key share of 1,216 bytes),
// so every idle connection kept 2-2.5 KiB it had no further use for.
// RFC 8446 §5.1 (and RFC 5246 §6.2.1 for TLS 1.2) lets a sender fragment
// a handshake message over several records, and the handshake transcript
// covers the messages, not the records: re-framing the plaintext handshake
// records into records of at most Size bytes, each handed to crypto/tls in
// a Read of its own, changes nothing a peer can see and leaves crypto/tls
// a record buffer of about 600 bytes.
//
// Only records of the plaintext handshake are re-framed: from the
// connection's first record while they are handshake records (type 22).
// The first record of any other type (a ChangeCipherSpec, an alert,
// application data: TLS 1.2's Finished after the ChangeCipherSpec and
// everything of TLS 1.3 after the ClientHello is encrypted, and must not
// be touched) switches the connection to passing bytes through untouched
// for good, as does anything that does not look like a TLS record. It is
// no TLS implementation: it parses 5-byte record headers and nothing
// else.
package hellosplit

import (
	"errors"
	"io"
	"net"
)

// Size is the largest record body handed on: crypto/tls's first read
// grows its record buffer to 5+512 bytes (576 with the allocator's
// rounding), and a record that fits in it grows it no more.
const Size = 512

// TLS record layer constants (RFC 8446 §5.1).
const (
	headerLen         = 5
	typeHandshake     = 22
	maxPlaintextBytes = 1 << 14
)

// fragmentSize is the record body size the handshake message of m bytes
// is cut into: m halved until it is at most Size. crypto/tls gathers the
// message in a bytes.Buffer (tls.Conn.hand, also kept for life) that at
// least doubles when a write does not fit, so fragments of m/2^k leave
// it at m, where fragments of Size could leave it at up to twice that.
func fragmentSize(m int) int {
	f := m
	for f > Size {
		f = (f + 1) / 2
	}
	return max(f, 1)
}

// Listen wraps ln so that each connection it accepts re-frames its
// handshake records (Conn). Wrap the listener under tls.NewListener.
func Listen(ln net.Listener) net.Listener {
	return &listener{Listener: ln}
}

type listener struct{ net.Listener }

// Accept implements net.Listener.
func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &Conn{Conn: c}, nil
}

// Conn is a server-side connection whose plaintext handshake records are
// re-framed into records of at most Size bytes. Read is for one reader
// (crypto/tls), as a net.Conn's Read always is in practice; the other
// methods are the wrapped connection's.
type Conn struct {
	net.Conn
	pass bool   // past the plaintext handshake: Read is the connection's
	out  []byte // what Read hands on next: a record, or a header to pass on
	buf  []byte // out's storage, dropped once passing
	// ahead holds what the first read took past the first record's
	// header (see next), handed on before the connection is read again;
	// aheadBuf is its storage, dropped once passing.
	ahead    []byte
	aheadBuf []byte
	started  bool // the first record's header was read
	left     int  // bytes of the current handshake record not yet re-framed
	frag     int  // the fragment size, from the first handshake message
	hdr      [headerLen]byte
	err      error // a read error, kept: the stream cannot go on mid-record
}

// Read implements net.Conn.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if len(c.out) == 0 {
		if c.pass {
			return c.Conn.Read(p)
		}
		if err := c.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.out)
	c.out = c.out[n:]
	if len(c.out) == 0 && c.pass {
		c.out, c.buf = nil, nil
	}
	return n, nil
}

// next fills out with the next record to hand on, or with the header of
// the first record that is not re-framed (and switches to passing).
func (c *Conn) next() error {
	if c.err != nil {
		return c.err
	}
	if c.buf == nil {
		c.buf = make([]byte, headerLen+Size)
	}
	if c.left == 0 {
		if !c.started {
			// The first read takes what the connection has, up to a
			// record of Size, as crypto/tls's own first read would:
			// what is not TLS at all (plain HTTP) is then read whole,
			// as without this package, and net/http's answer to it
			// ("Client sent an HTTP request to an HTTPS server") is
			// not lost to a reset, which closing a socket with unread
			// input sends (RFC 1122 §4.2.2.13).
			c.aheadBuf = make([]byte, headerLen+Size)
			n, err := io.ReadAtLeast(c.Conn, c.aheadBuf, headerLen)
			if err != nil {
				c.aheadBuf = nil
				if n == 0 {
					return err // nothing lost
				}
				return c.fail(err)
			}
			c.started = true
			copy(c.hdr[:], c.aheadBuf)
			c.ahead = c.aheadBuf[headerLen:n]
		} else if n, err := c.readFull(c.hdr[:]); err != nil {
			if n == 0 {
				return err // at a record boundary: nothing lost
			}
			return c.fail(err)
		}
		n := int(c.hdr[3])<<8 | int(c.hdr[4])
		if c.hdr[0] != typeHandshake || n == 0 || n > maxPlaintextBytes {
			// Not ours to re-frame (or not TLS at all): crypto/tls
			// judges it, from these very bytes, and what was read
			// past them.
			c.pass = true
			c.out = append(append(c.buf[:0], c.hdr[:]...), c.ahead...)
			c.ahead, c.aheadBuf = nil, nil
			return nil
		}
		c.left = n
	}
	got := 0
	if c.frag == 0 {
		// The first handshake message's length (its 4-byte header,
		// RFC 8446 §4) sets the fragment size.
		c.frag = Size
		if c.left >= 4 {
			if _, err := c.readFull(c.buf[headerLen : headerLen+4]); err != nil {
				return c.fail(err)
			}
			got = 4
			m := 4 + (int(c.buf[headerLen+1])<<16 | int(c.buf[headerLen+2])<<8 | int(c.buf[headerLen+3]))
			c.frag = max(fragmentSize(m), 4)
		}
	}
	n := min(c.left, c.frag)
	rec := c.buf[:headerLen+n]
	copy(rec, c.hdr[:3])
	rec[3], rec[4] = byte(n>>8), byte(n)
	if _, err := c.readFull(rec[headerLen+got:]); err != nil {
		return c.fail(err)
	}
	c.left -= n
	c.out = rec
	return nil
}

// readFull fills p from ahead, then from the connection.
func (c *Conn) readFull(p []byte) (int, error) {
	n := copy(p, c.ahead)
	c.ahead = c.ahead[n:]
	if len(c.ahead) == 0 {
		c.ahead, c.aheadBuf = nil, nil
	}
	if n == len(p) {
		return n, nil
	}
	m, err := io.ReadFull(c.Conn, p[n:])
	return n + m, err
}

// fail keeps err for every later Read: bytes of a record were consumed,
// so the stream cannot go on.
func (c *Conn) fail(err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	c.err = err
	return err
}

// Passing reports whether the connection is past the plaintext handshake
// with nothing of its own left to hand on: from then on Read is the
// wrapped connection's, and the socket alone shows what is there to read.
func (c *Conn) Passing() bool {
	return c.pass && len(c.out) == 0 && c.err == nil
}

// NetConn returns the wrapped connection.
func (c *Conn) NetConn() net.Conn {
	return c.Conn
}
