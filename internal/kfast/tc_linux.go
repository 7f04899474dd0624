//go:build linux

package kfast

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// The classic attachment, for kernels without TCX (before 6.6, such as
// Debian 12's 6.1): a clsact qdisc on the interface and a bpf filter in
// direct-action mode on its ingress hook, made with rtnetlink as
// `tc qdisc add dev X clsact; tc filter add dev X ingress bpf da` would.
// Unlike a TCX link, such a filter is not tied to a file descriptor: it
// would outlive a process that dies without Close. The next Attach
// replaces it (same priority and handle), and the entries it would use
// lapse by their deadlines in any case.

const (
	tcHClsact      = 0xFFFFFFF1 // TC_H_CLSACT, the qdisc's parent
	tcHClsactQdisc = 0xFFFF0000 // the clsact qdisc's handle, ffff:
	tcHIngress     = 0xFFFFFFF2 // TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS)
	tcaBPFFD       = 6          // TCA_BPF_FD
	tcaBPFName     = 7          // TCA_BPF_NAME
	tcaBPFFlags    = 8          // TCA_BPF_FLAGS
	tcaBPFDirect   = 1          // TCA_BPF_FLAG_ACT_DIRECT
	sizeofTcMsg    = 20
	// Our filter's priority and handle on the ingress hook.
	filterPrio   = 1
	filterHandle = 0x1ce
)

// tcFilter is the program attached as a classic filter to one interface.
type tcFilter struct {
	r       *router
	ifindex int
	qdisc   bool // we created the clsact qdisc, so Close removes it
}

// attachClsact attaches prog to the ingress of ifindex as a classic tc
// filter, creating the clsact qdisc if the interface has none.
func attachClsact(r *router, ifindex int, prog *ebpf.Program) (*tcFilter, error) {
	f := &tcFilter{r: r, ifindex: ifindex}
	q := tcMsg(ifindex, tcHClsactQdisc, tcHClsact, 0)
	q = appendAttr(q, unix.TCA_KIND, []byte("clsact\x00"))
	switch err := r.exec(unix.RTM_NEWQDISC, unix.NLM_F_CREATE|unix.NLM_F_EXCL, q); {
	case err == nil:
		f.qdisc = true
	case errors.Is(err, unix.EEXIST):
		// Someone's clsact qdisc (or ours from before): share it.
	default:
		return nil, fmt.Errorf("clsact qdisc: %w", err)
	}
	var opts []byte
	fd := make([]byte, 4)
	binary.NativeEndian.PutUint32(fd, uint32(prog.FD()))
	opts = appendAttr(opts, tcaBPFFD, fd)
	opts = appendAttr(opts, tcaBPFName, []byte("icegate_relay\x00"))
	flags := make([]byte, 4)
	binary.NativeEndian.PutUint32(flags, tcaBPFDirect)
	opts = appendAttr(opts, tcaBPFFlags, flags)
	m := f.filterMsg()
	m = appendAttr(m, unix.TCA_OPTIONS|unix.NLA_F_NESTED, opts)
	// Without NLM_F_EXCL a filter of ours left behind is replaced.
	if err := r.exec(unix.RTM_NEWTFILTER, unix.NLM_F_CREATE, m); err != nil {
		if f.qdisc {
			_ = f.deleteQdisc()
		}
		return nil, fmt.Errorf("bpf filter: %w", err)
	}
	return f, nil
}

func (f *tcFilter) filterMsg() []byte {
	// tcm_info: the priority and the protocol (ETH_P_ALL, big-endian).
	info := uint32(filterPrio)<<16 | uint32(htons(unix.ETH_P_ALL))
	m := tcMsg(f.ifindex, filterHandle, tcHIngress, info)
	return appendAttr(m, unix.TCA_KIND, []byte("bpf\x00"))
}

// Close removes the filter, and the qdisc if Attach created it.
func (f *tcFilter) Close() error {
	err := f.r.exec(unix.RTM_DELTFILTER, 0, f.filterMsg())
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV) {
		err = nil // gone with its interface
	}
	if f.qdisc {
		if qerr := f.deleteQdisc(); qerr != nil && !errors.Is(qerr, unix.ENOENT) && !errors.Is(qerr, unix.EINVAL) && !errors.Is(qerr, unix.ENODEV) {
			err = errors.Join(err, qerr)
		}
	}
	return err
}

func (f *tcFilter) deleteQdisc() error {
	q := tcMsg(f.ifindex, tcHClsactQdisc, tcHClsact, 0)
	q = appendAttr(q, unix.TCA_KIND, []byte("clsact\x00"))
	return f.r.exec(unix.RTM_DELQDISC, 0, q)
}

func tcMsg(ifindex int, handle, parent, info uint32) []byte {
	b := make([]byte, sizeofTcMsg)
	b[0] = unix.AF_UNSPEC
	binary.NativeEndian.PutUint32(b[4:], uint32(int32(ifindex)))
	binary.NativeEndian.PutUint32(b[8:], handle)
	binary.NativeEndian.PutUint32(b[12:], parent)
	binary.NativeEndian.PutUint32(b[16:], info)
	return b
}

// appendAttr appends a netlink attribute, padded to 4 bytes.
func appendAttr(b []byte, typ uint16, data []byte) []byte {
	l := unix.SizeofRtAttr + len(data)
	h := make([]byte, unix.SizeofRtAttr)
	binary.NativeEndian.PutUint16(h[0:], uint16(l))
	binary.NativeEndian.PutUint16(h[2:], typ)
	b = append(append(b, h...), data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// exec sends one rtnetlink request and waits for its acknowledgement.
func (r *router) exec(typ, flags uint16, body []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seq++
	n := unix.NLMSG_HDRLEN + len(body)
	req := make([]byte, unix.NLMSG_HDRLEN, n)
	binary.NativeEndian.PutUint32(req[0:], uint32(n))
	binary.NativeEndian.PutUint16(req[4:], typ)
	binary.NativeEndian.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK|flags)
	binary.NativeEndian.PutUint32(req[8:], r.seq)
	req = append(req, body...)
	if err := unix.Sendto(r.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	for {
		m, _, err := unix.Recvfrom(r.fd, r.buf, 0)
		if err != nil {
			return err
		}
		msgs, err := syscall.ParseNetlinkMessage(r.buf[:m])
		if err != nil {
			return err
		}
		for _, msg := range msgs {
			if msg.Header.Seq != r.seq || msg.Header.Type != unix.NLMSG_ERROR {
				continue
			}
			if len(msg.Data) < 4 {
				return errors.New("short netlink acknowledgement")
			}
			if e := int32(binary.NativeEndian.Uint32(msg.Data)); e != 0 {
				return syscall.Errno(-e)
			}
			return nil
		}
	}
}
