package udploop

import "sync/atomic"

// counters count an event loop's system calls and datagrams, so that an
// operator (and the benchmark) can see how many datagrams each call moves:
// the loop's whole point. Only the loop writes them.
type counters struct {
	wakeups    atomic.Uint64 // epoll_wait calls that returned ready sockets
	recvCalls  atomic.Uint64 // recvmmsg calls
	recvDgrams atomic.Uint64 // datagrams they read
	sendCalls  atomic.Uint64 // sendmmsg and sendmsg calls
	sendDgrams atomic.Uint64 // datagrams they sent

	trains      atomic.Uint64 // messages sent as UDP_SEGMENT trains
	trainDgrams atomic.Uint64 // datagrams in those trains

	pauses atomic.Uint64 // sockets taken out of epoll for a full queue (Loop.pause)
}

// Stats is a snapshot of a loop's counters since it started.
type Stats struct {
	Wakeups       uint64 // epoll_wait calls that returned ready sockets
	RecvCalls     uint64 // recvmmsg calls
	RecvDatagrams uint64 // datagrams they read
	SendCalls     uint64 // sendmmsg and sendmsg calls
	SendDatagrams uint64 // datagrams they sent

	Trains         uint64 // messages sent as UDP_SEGMENT trains
	TrainDatagrams uint64 // datagrams in those trains (part of SendDatagrams)

	Pauses uint64 // times a socket with SocketConfig.Pause stopped being read for a full queue
}

// Stats returns the loop's counters. It may be called at any time.
func (l *Loop) Stats() Stats {
	c := &l.stats
	return Stats{
		Wakeups: c.wakeups.Load(), RecvCalls: c.recvCalls.Load(), RecvDatagrams: c.recvDgrams.Load(),
		SendCalls: c.sendCalls.Load(), SendDatagrams: c.sendDgrams.Load(),
		Trains: c.trains.Load(), TrainDatagrams: c.trainDgrams.Load(), Pauses: c.pauses.Load(),
	}
}

// Add sums two snapshots (the loops of one server, say).
func (s Stats) Add(o Stats) Stats {
	return Stats{
		Wakeups: s.Wakeups + o.Wakeups, RecvCalls: s.RecvCalls + o.RecvCalls, RecvDatagrams: s.RecvDatagrams + o.RecvDatagrams,
		SendCalls: s.SendCalls + o.SendCalls, SendDatagrams: s.SendDatagrams + o.SendDatagrams,
		Trains: s.Trains + o.Trains, TrainDatagrams: s.TrainDatagrams + o.TrainDatagrams, Pauses: s.Pauses + o.Pauses,
	}
}
