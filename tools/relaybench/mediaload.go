package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/pion/stun/v4"
	"golang.org/x/sys/unix"
)

// The media-rate load: many allocations, each sending one message of a
// fixed size every period (1000 bytes every 20 ms is what one leg of a video
// call looks like) through a channel to an echo peer, for a fixed time. At
// that rate a relay's event loop wakes for one or two packets at a time, so
// what it costs per packet is its fixed cost per wake-up and per system call,
// which the saturating loads (uclient at -z 0, bursts of 50 per client) hide
// behind batching.
//
// uclient cannot make this load: it drives at most a few dozen allocations
// per process (its connect phase idles m × 100 ms) and parallel uclients
// collide with 437s. So the load is generated here, in the style of
// bindingLoad: the allocations are made with the Go TURN client of load.go,
// then each one's socket is handed to one of a few worker threads that
// sleep in epoll until the next send is due or an echo arrives, on plain
// system calls, so that the generator costs no more than a server does per
// packet.

// mediaParams is one media-rate load.
type mediaParams struct {
	allocations int
	size        int           // ChannelData payload, bytes
	period      time.Duration // between two messages of one allocation
	duration    time.Duration // sends are due from 0 to duration
	workers     int           // generator threads
}

// offered is the messages per second the load offers (each relayed twice:
// to the peer and back).
func (p mediaParams) offered() float64 {
	return float64(p.allocations) / p.period.Seconds()
}

// mediaPayloadMin is the payload's header: the send time (ns since the start
// of the run), the client's index and its sequence number.
const mediaPayloadMin = 16

// mediaDrain is how long the generator keeps reading echoes after the last
// send was due. An echo later than that counts as lost; on loopback a round
// trip takes well under a millisecond.
const mediaDrain = time.Second

// mediaLate is how late a send may be and still be made: a send due more
// than a period ago is skipped and counted, not made in a burst with the
// next one. Catching up in bursts would change the load (and, bunched
// together, the packets would be relayed in larger batches than the load
// says) while hiding that the generator fell behind.
func mediaLate(period time.Duration) time.Duration { return period }

// pacer is a worker's send schedule. Each of its clients has a phase in
// [0, period): client i's k-th message is due at phases[i] + k·period, and
// sends due at or after end are not made. With the phases sorted, the
// sends come due in the order (k, i), so the next one is always phases[i]
// of the current round: no heap, no timer per client.
type pacer struct {
	phases      []time.Duration // sorted ascending, each in [0, period)
	period, end time.Duration
	i           int   // client of the next send
	k           int64 // round (period number) of the next send
}

// spreadPhases returns the phases of the clients g ≡ w (mod workers) out of
// n, spread evenly over the period across all workers: client g's phase is
// g·period/n. Independent calls have unrelated phases; spreading them evenly
// is the arrival pattern that gives a relay the least to batch, which is the
// point of this load.
func spreadPhases(n, workers, w int, period time.Duration) []time.Duration {
	var phases []time.Duration
	for g := w; g < n; g += workers {
		phases = append(phases, time.Duration(int64(g)*int64(period)/int64(n)))
	}
	return phases
}

// due returns when the next send is due, and false when there is none left.
func (p *pacer) due() (time.Duration, bool) {
	if len(p.phases) == 0 {
		return 0, false
	}
	t := p.phases[p.i] + time.Duration(p.k)*p.period
	return t, t < p.end
}

// take returns the client of the next send if it is due at now, and how
// late it is: send is true when it should be made, false when it is more
// than mediaLate overdue and is skipped. ok is false when nothing is due yet
// (or nothing is left).
func (p *pacer) take(now time.Duration) (client int, late time.Duration, send, ok bool) {
	t, left := p.due()
	if !left || t > now {
		return 0, 0, false, false
	}
	client = p.i
	p.i++
	if p.i == len(p.phases) {
		p.i = 0
		p.k++
	}
	late = now - t
	return client, late, late <= mediaLate(p.period), true
}

// sendsBefore is how many sends a client with the given phase makes in a
// run of the given duration: k = 0, 1, ... while phase + k·period < end.
func sendsBefore(phase, period, end time.Duration) int64 {
	if phase >= end {
		return 0
	}
	return int64((end-phase-1)/period) + 1
}

// mediaClient is one allocation of the media load, on a raw socket
// connected to the server.
type mediaClient struct {
	fd      int
	index   uint32 // across all workers, for the payload
	channel uint16
	seq     uint32
}

// putMediaPacket writes ChannelData (RFC 8656 §12.4) for the client's next
// message into b, which is 4+size bytes: the header, then the send time,
// the client's index and the sequence number; the rest of the payload is
// whatever b held (the worker's buffer is zeroed once).
func putMediaPacket(b []byte, channel uint16, sentAt time.Duration, index, seq uint32) {
	binary.BigEndian.PutUint16(b[0:], channel)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)-4))
	binary.BigEndian.PutUint64(b[4:], uint64(sentAt))
	binary.BigEndian.PutUint32(b[12:], index)
	binary.BigEndian.PutUint32(b[16:], seq)
}

// parseMediaEcho returns the send time in an echoed message, if b is
// ChannelData on the client's channel carrying one of the client's own
// messages of the expected size.
func parseMediaEcho(b []byte, channel uint16, index uint32, size int) (time.Duration, bool) {
	if len(b) < 4+mediaPayloadMin || binary.BigEndian.Uint16(b) != channel ||
		int(binary.BigEndian.Uint16(b[2:])) != size || len(b) < 4+size ||
		binary.BigEndian.Uint32(b[12:]) != index {
		return 0, false
	}
	return time.Duration(binary.BigEndian.Uint64(b[4:])), true
}

// mediaResult is one media-rate run, all workers together.
type mediaResult struct {
	sent, recv int64    // messages sent, echoes received in time
	skipped    int64    // sends more than a period overdue, not made
	late       int64    // sends made more than 1 ms after they were due
	sendErrs   int64    // sends the kernel refused (ECONNREFUSED, ENOBUFS)
	rtts       []uint32 // round trips in µs, sorted
	elapsed    time.Duration
}

// relayed counts relayed packets as the uclient loads do: each message
// crossed the relay to the peer once, each echo came back once.
func (r mediaResult) relayed() int64 { return r.sent + r.recv }

func (r mediaResult) lossPct() float64 { return lossPct(int(r.sent), int(r.recv)) }

// skippedPct is the share of the schedule's sends skipped, in percent.
func (r mediaResult) skippedPct() float64 {
	if r.sent+r.skipped == 0 {
		return 0
	}
	return 100 * float64(r.skipped) / float64(r.sent+r.skipped)
}

// percentile returns the nearest-rank q-quantile (0 < q ≤ 1) of sorted, in
// ms; NaN when there are none.
func percentile(sorted []uint32, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	i = max(0, min(i, len(sorted)-1))
	return float64(sorted[i]) / 1000
}

// setupMedia makes n allocations on the server, each with a channel
// bound to the echo peer at peerAt (which also installs the permission,
// RFC 8656 §12), using workers goroutines, and returns their sockets. A
// failed allocation is tried again on a fresh socket, up to three times;
// failures are counted. The caller closes the clients (closeMedia).
func setupMedia(ctx context.Context, server, peerAt netip.AddrPort, n, workers int) ([]mediaClient, map[string]int64, error) {
	clients := make([]mediaClient, n)
	for i := range clients {
		clients[i].fd = -1
	}
	var mu sync.Mutex
	failures := map[string]int64{}
	var errs []error
	var next atomic.Int64
	var wg sync.WaitGroup
	peer := peerAddress{IP: net.IP(peerAt.Addr().AsSlice()), Port: int(peerAt.Port())}
	for range max(1, workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				// Channel numbers within RFC 8656 §12's 0x4000-0x4FFF (every
				// allocation has its own channels; the spread only shows a
				// mix-up between allocations as a wrong channel).
				ch := uint16(0x4000 + i%0x1000)
				var fd int
				var err error
				for range 3 {
					fd, err = bindOne(server, peer, ch)
					if err == nil {
						break
					}
					mu.Lock()
					failures[failureKey(err)]++
					mu.Unlock()
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("allocation %d: %w", i, err))
					mu.Unlock()
					return
				}
				clients[i] = mediaClient{fd: fd, index: uint32(i), channel: ch}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		closeMedia(clients)
		return nil, failures, err
	}
	if ctx.Err() != nil {
		closeMedia(clients)
		return nil, failures, ctx.Err()
	}
	return clients, failures, nil
}

// bindOne allocates on a fresh socket, binds ch to peer, and returns a
// non-blocking duplicate of the socket's descriptor for the workers (the Go
// connection is closed; the socket, its 5-tuple and so the allocation
// live on in the duplicate).
func bindOne(server netip.AddrPort, peer peerAddress, ch uint16) (int, error) {
	c, err := newTurnClient(server)
	if err != nil {
		return -1, err
	}
	defer c.close()
	if err := c.allocate(); err != nil {
		return -1, err
	}
	if err := c.channelBind(peer, ch); err != nil {
		return -1, err
	}
	rc, err := c.conn.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var dupErr error
	if err := rc.Control(func(s uintptr) { fd, dupErr = unix.Dup(int(s)) }); err != nil {
		return -1, err
	}
	if dupErr != nil {
		return -1, dupErr
	}
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// channelBind binds channel ch to peer (RFC 8656 §12.1): CHANNEL-NUMBER is
// the number followed by two bytes RFFU (§18.1).
func (c *turnClient) channelBind(peer peerAddress, ch uint16) error {
	v := []byte{byte(ch >> 8), byte(ch), 0, 0}
	_, err := c.request(stun.MethodChannelBind, stun.RawAttribute{Type: stun.AttrChannelNumber, Value: v}, peer)
	return err
}

// closeMedia closes the clients' sockets, which ends their allocations
// with the server (they expire there).
func closeMedia(clients []mediaClient) {
	for _, c := range clients {
		if c.fd >= 0 {
			_ = unix.Close(c.fd)
		}
	}
}

// runMedia runs the load over clients: the sockets are split over
// p.workers threads, client i going to worker i mod workers with the phase
// spreadPhases gives it. It returns when every send was made and the drain
// is over, or when every echo has come back, whichever is first.
func runMedia(ctx context.Context, clients []mediaClient, p mediaParams) (mediaResult, error) {
	if p.size < mediaPayloadMin || p.size > 1400 {
		return mediaResult{}, fmt.Errorf("media message size %d: want %d to 1400 bytes", p.size, mediaPayloadMin)
	}
	if p.period <= 0 || p.duration <= 0 {
		return mediaResult{}, fmt.Errorf("media period %v and duration %v must be positive", p.period, p.duration)
	}
	workers := max(1, min(p.workers, len(clients)))
	// A worker blocks in epoll_pwait2 as an ordinary system call. With no
	// idle P, the runtime's monitor takes the P from a thread blocked over
	// 20 µs and hands it to another, and the thread has to get one back
	// when it returns: two futex wake-ups per wait, which at this rate cost
	// the generator a fifth of its CPU. With a spare P per worker the
	// monitor leaves a P alone for 10 ms. Restored when the load is over.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + workers))
	type result struct {
		mediaResult
		err error
	}
	results := make([]result, workers)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		var mine []mediaClient
		for i := w; i < len(clients); i += workers {
			mine = append(mine, clients[i])
		}
		pc := &pacer{phases: spreadPhases(len(clients), workers, w, p.period), period: p.period, end: p.duration}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[w]
			r.mediaResult, r.err = mediaWorker(ctx, mine, pc, p.size, start)
		}()
	}
	wg.Wait()
	var res mediaResult
	var errs []error
	for _, r := range results {
		res.sent += r.sent
		res.recv += r.recv
		res.skipped += r.skipped
		res.late += r.late
		res.sendErrs += r.sendErrs
		res.rtts = append(res.rtts, r.rtts...)
		errs = append(errs, r.err)
	}
	slices.Sort(res.rtts)
	res.elapsed = time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return res, err
	}
	return res, ctx.Err()
}

// epollWaitNS is epoll_pwait2 (Linux 5.11): epoll_wait with a timeout in
// nanoseconds, so the worker can sleep until the next send is due without
// a timer descriptor to arm on every wake-up (epoll_wait's millisecond
// timeout would pace in 1 ms ticks, bunching sends together).
func epollWaitNS(epfd int, events []unix.EpollEvent, wait time.Duration) (int, error) {
	ts := unix.NsecToTimespec(int64(max(wait, 0)))
	n, _, e := unix.Syscall6(unix.SYS_EPOLL_PWAIT2, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])),
		uintptr(len(events)), uintptr(unsafe.Pointer(&ts)), 0, 0)
	if e != 0 {
		if e == unix.ENOSYS {
			return 0, errors.New("epoll_pwait2: the media-rate load needs Linux 5.11 or later")
		}
		return 0, e
	}
	return int(n), nil
}

// mediaWorker paces its clients' sends with pc and reads their echoes, on
// its own thread with its own epoll set. Times are since start.
func mediaWorker(ctx context.Context, cs []mediaClient, pc *pacer, size int, start time.Time) (res mediaResult, err error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return res, err
	}
	defer unix.Close(epfd)
	var expected int64
	for i := range cs {
		// The epoll data carries the client's index.
		if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, cs[i].fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(i)}); err != nil {
			return res, err
		}
		expected += sendsBefore(pc.phases[i], pc.period, pc.end)
	}
	res.rtts = make([]uint32, 0, expected)
	out := make([]byte, 4+size)
	in := make([]byte, 2048)
	events := make([]unix.EpollEvent, 256)
	drainEnd := pc.end + mediaDrain
	for ctx.Err() == nil {
		now := time.Since(start)
		for {
			i, late, send, ok := pc.take(now)
			if !ok {
				break
			}
			c := &cs[i]
			if !send {
				res.skipped++
				c.seq++
				continue
			}
			if late > time.Millisecond {
				res.late++
			}
			putMediaPacket(out, c.channel, now, c.index, c.seq)
			c.seq++
			if _, err := unix.Write(c.fd, out); err != nil {
				res.sendErrs++
				continue
			}
			res.sent++
		}
		next, left := pc.due()
		if !left {
			if res.recv >= res.sent || now >= drainEnd {
				break
			}
			next = drainEnd
		}
		// The 100 ms cap only bounds how long a cancel takes to be seen.
		k, err := epollWaitNS(epfd, events, min(next-time.Since(start), 100*time.Millisecond))
		if err != nil && !errors.Is(err, unix.EINTR) {
			return res, err
		}
		now = time.Since(start)
		for _, ev := range events[:max(k, 0)] {
			c := &cs[ev.Fd]
			m, err := unix.Read(c.fd, in)
			if err != nil {
				continue // ECONNREFUSED after an ICMP error, or nothing after all
			}
			sentAt, ok := parseMediaEcho(in[:m], c.channel, c.index, size)
			if !ok {
				continue
			}
			res.recv++
			res.rtts = append(res.rtts, uint32(min((now-sentAt)/time.Microsecond, math.MaxUint32)))
		}
	}
	return res, nil
}
