//go:build linux

package kfast

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// router asks the kernel which interface a datagram to an address leaves
// by (RTM_GETROUTE, like `ip route get`), on a netlink socket opened in
// the network namespace the Program was opened in: the program needs the
// egress interface for bpf_redirect_neigh, which then resolves the next
// hop and the neighbour itself. bpf_fib_lookup could do this per packet
// but refuses unless forwarding is enabled on the ingress interface, which
// a relay must not require.
type router struct {
	mu  sync.Mutex
	fd  int
	seq uint32
	buf []byte
}

func newRouter() (*router, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("kfast: netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("kfast: netlink bind: %w", err)
	}
	tv := unix.Timeval{Sec: 2}
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	return &router{fd: fd, buf: make([]byte, 8192)}, nil
}

func (r *router) close() { unix.Close(r.fd) }

// route returns the interface a unicast datagram from src (an address of
// this host) to dst leaves by, and the source address the kernel picks for
// it: src itself, or, when src is unspecified (a socket bound to the
// unspecified address), the route's preferred source, as for a datagram
// sent from such a socket. The source counts where policy routing chooses
// by it.
func (r *router) route(dst, src netip.Addr) (uint32, netip.Addr, error) {
	dst, src = dst.Unmap(), src.Unmap()
	withSrc := !src.IsUnspecified()
	family, bits := unix.AF_INET, 32
	if dst.Is6() {
		family, bits = unix.AF_INET6, 128
	}
	a, sa := dst.AsSlice(), src.AsSlice()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	// nlmsghdr (16) + rtmsg (12) + RTA_DST and RTA_SRC (4 + address each;
	// 4 and 16 bytes keep the attributes aligned).
	n := unix.NLMSG_HDRLEN + unix.SizeofRtMsg + unix.SizeofRtAttr + len(a)
	if withSrc {
		n += unix.SizeofRtAttr + len(sa)
	}
	req := make([]byte, n)
	binary.NativeEndian.PutUint32(req[0:], uint32(n))
	binary.NativeEndian.PutUint16(req[4:], unix.RTM_GETROUTE)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST)
	binary.NativeEndian.PutUint32(req[8:], r.seq)
	rt := req[unix.NLMSG_HDRLEN:]
	rt[0] = byte(family)
	rt[1] = byte(bits) // rtm_dst_len
	at := rt[unix.SizeofRtMsg:]
	binary.NativeEndian.PutUint16(at[0:], uint16(unix.SizeofRtAttr+len(a)))
	binary.NativeEndian.PutUint16(at[2:], unix.RTA_DST)
	copy(at[unix.SizeofRtAttr:], a)
	if withSrc {
		rt[2] = byte(bits) // rtm_src_len
		at = at[unix.SizeofRtAttr+len(a):]
		binary.NativeEndian.PutUint16(at[0:], uint16(unix.SizeofRtAttr+len(sa)))
		binary.NativeEndian.PutUint16(at[2:], unix.RTA_SRC)
		copy(at[unix.SizeofRtAttr:], sa)
	}
	if err := unix.Sendto(r.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, netip.Addr{}, fmt.Errorf("kfast: route to %s: %w", dst, err)
	}
	for {
		m, _, err := unix.Recvfrom(r.fd, r.buf, 0)
		if err != nil {
			return 0, netip.Addr{}, fmt.Errorf("kfast: route to %s: %w", dst, err)
		}
		msgs, err := syscall.ParseNetlinkMessage(r.buf[:m])
		if err != nil {
			return 0, netip.Addr{}, fmt.Errorf("kfast: route to %s: %w", dst, err)
		}
		for _, msg := range msgs {
			if msg.Header.Seq != r.seq {
				continue // a late answer to an earlier request
			}
			switch msg.Header.Type {
			case unix.NLMSG_ERROR:
				if len(msg.Data) >= 4 {
					if e := int32(binary.NativeEndian.Uint32(msg.Data)); e != 0 {
						return 0, netip.Addr{}, fmt.Errorf("%w to %s: %w", ErrNoRoute, dst, syscall.Errno(-e))
					}
				}
				return 0, netip.Addr{}, fmt.Errorf("%w to %s", ErrNoRoute, dst)
			case unix.RTM_NEWROUTE:
				oif, pref, err := parseRoute(msg.Data, dst)
				if err != nil {
					return 0, netip.Addr{}, err
				}
				if withSrc {
					return oif, src, nil
				}
				if !pref.IsValid() {
					return 0, netip.Addr{}, fmt.Errorf("%w to %s: no preferred source address", ErrNoRoute, dst)
				}
				return oif, pref, nil
			}
		}
	}
}

// parseRoute reads the output interface and the preferred source of a
// unicast route from an rtmsg and its attributes.
func parseRoute(b []byte, dst netip.Addr) (oif uint32, pref netip.Addr, err error) {
	if len(b) < unix.SizeofRtMsg {
		return 0, pref, fmt.Errorf("%w to %s: short answer", ErrNoRoute, dst)
	}
	if typ := b[7]; typ != unix.RTN_UNICAST { // rtm_type
		// RTN_LOCAL (an address of this host), blackhole, unreachable...
		return 0, pref, fmt.Errorf("%w to %s: route type %d is not unicast", ErrNoRoute, dst, typ)
	}
	for a := b[unix.SizeofRtMsg:]; len(a) >= unix.SizeofRtAttr; {
		l := int(binary.NativeEndian.Uint16(a[0:]))
		if l < unix.SizeofRtAttr || l > len(a) {
			break
		}
		v := a[unix.SizeofRtAttr:l]
		switch binary.NativeEndian.Uint16(a[2:]) {
		case unix.RTA_OIF:
			if len(v) >= 4 {
				oif = binary.NativeEndian.Uint32(v)
			}
		case unix.RTA_PREFSRC:
			if ip, ok := netip.AddrFromSlice(v); ok {
				pref = ip
			}
		}
		l = (l + unix.RTA_ALIGNTO - 1) &^ (unix.RTA_ALIGNTO - 1)
		if l > len(a) {
			break
		}
		a = a[l:]
	}
	if oif == 0 {
		return 0, pref, fmt.Errorf("%w to %s: no output interface", ErrNoRoute, dst)
	}
	return oif, pref, nil
}
