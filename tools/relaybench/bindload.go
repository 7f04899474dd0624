package main

import (
	"context"
	"encoding/binary"
	"errors"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// bindingLoad drives STUN Binding requests at the server on port from
// `clients` UDP sockets, each its own client on 127.0.0.1 that keeps one
// request in flight, as a real STUN client does: when its response comes,
// it sends the next. The sockets are split over `workers` goroutines, each
// on its own thread with its own epoll set, reading and writing with plain
// system calls: Go's net package costs the load generator more CPU per
// request than the servers spend answering it, and on a machine where the
// load shares the cores with the server that would measure the generator.
// A request unanswered for bindingTimeout is counted as a timeout and sent
// again with a new transaction id. It runs for d.
func bindingLoad(ctx context.Context, port, clients, workers int, d time.Duration) (bindingResult, error) {
	workers = max(1, min(workers, clients))
	type result struct {
		responses, timeouts int64
		err                 error
	}
	results := make([]result, workers)
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for w := range workers {
		n := clients / workers
		if w < clients%workers {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[w]
			r.responses, r.timeouts, r.err = bindingWorker(ctx, port, n, uint32(w), deadline)
		}()
	}
	wg.Wait()
	var res bindingResult
	var errs []error
	for _, r := range results {
		res.responses += r.responses
		res.timeouts += r.timeouts
		errs = append(errs, r.err)
	}
	res.elapsed = time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return res, err
	}
	return res, ctx.Err()
}

// bindingClient is one socket of a worker and its request in flight.
type bindingClient struct {
	fd     int
	req    [20]byte
	sentAt time.Time
}

func bindingWorker(ctx context.Context, port, n int, worker uint32, deadline time.Time) (responses, timeouts int64, err error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return 0, 0, err
	}
	defer unix.Close(epfd)
	cs := make([]bindingClient, 0, n)
	defer func() {
		for _, c := range cs {
			_ = unix.Close(c.fd)
		}
	}()
	server := &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: port}
	for i := range n {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
		if err != nil {
			return 0, 0, err
		}
		cs = append(cs, bindingClient{fd: fd})
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			return 0, 0, err
		}
		// Connected: the socket takes only the server's datagrams, and the
		// kernel routes it once rather than per request.
		if err := unix.Connect(fd, server); err != nil {
			return 0, 0, err
		}
		c := &cs[i]
		// The transaction id is the client's number, then a sequence number
		// (see send).
		putBindingHeader(c.req[:])
		binary.BigEndian.PutUint32(c.req[8:], worker<<20|uint32(i))
		// The epoll data carries the client's index.
		if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(i)}); err != nil {
			return 0, 0, err
		}
	}
	now := time.Now()
	for i := range cs {
		cs[i].send(now)
	}
	events := make([]unix.EpollEvent, 256)
	buf := make([]byte, 1500)
	lastScan := now
	for ctx.Err() == nil {
		k, err := unix.EpollWait(epfd, events, 50)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return responses, timeouts, err
		}
		now = time.Now()
		if !now.Before(deadline) {
			break
		}
		for _, ev := range events[:max(k, 0)] {
			c := &cs[ev.Fd]
			m, err := unix.Read(c.fd, buf)
			if err != nil {
				continue // ECONNREFUSED after an ICMP error, or nothing after all
			}
			if !isBindingSuccess(buf[:m], c.req[:]) {
				continue // a late answer to a request already given up on
			}
			responses++
			c.send(now)
		}
		if now.Sub(lastScan) >= 100*time.Millisecond {
			lastScan = now
			for i := range cs {
				if now.Sub(cs[i].sentAt) >= bindingTimeout {
					timeouts++
					cs[i].send(now)
				}
			}
		}
	}
	return responses, timeouts, nil
}

// send sends the client's next request: the same header with the sequence
// number in the last 8 bytes of the transaction id moved on.
func (c *bindingClient) send(now time.Time) {
	binary.BigEndian.PutUint64(c.req[12:], binary.BigEndian.Uint64(c.req[12:])+1)
	c.sentAt = now
	_, _ = unix.Write(c.fd, c.req[:])
}
