package turn

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// loopStats counts an event loop's system calls and datagrams, so that an
// operator (and the benchmark) can see how many datagrams each call moves:
// the loop's whole point. Only the loop writes them.
type loopStats struct {
	wakeups    atomic.Uint64 // epoll_wait calls that returned ready sockets
	recvCalls  atomic.Uint64 // recvmmsg calls
	recvDgrams atomic.Uint64 // datagrams they read
	sendCalls  atomic.Uint64 // sendmmsg and sendmsg calls
	sendDgrams atomic.Uint64 // datagrams they sent

	trains      atomic.Uint64 // messages sent as UDP_SEGMENT trains
	trainDgrams atomic.Uint64 // datagrams in those trains

	pauses atomic.Uint64 // relay sockets taken out of epoll for a full slow queue (ioLoop.pause)
}

// loopCollector exports the loops' counters, summed over the loops.
type loopCollector struct {
	stats []*loopStats

	syscalls, datagrams, pauses *prometheus.Desc
}

func newLoopCollector(stats []*loopStats) *loopCollector {
	return &loopCollector{
		stats: stats,
		syscalls: prometheus.NewDesc("icegate_loop_syscalls_total",
			"System calls made by the UDP event loops, by call (wakeup: epoll_wait returning ready sockets).",
			[]string{"call"}, nil),
		datagrams: prometheus.NewDesc("icegate_loop_datagrams_total",
			"Datagrams moved by the UDP event loops' batched calls, by direction (out_segmented: the part of out that left in UDP_SEGMENT trains).",
			[]string{"direction"}, nil),
		pauses: prometheus.NewDesc("icegate_loop_relay_pauses_total",
			"Times the UDP event loops stopped reading a relay socket of a TCP, TLS or DTLS client's allocation until pion caught up (flow control: the data waits in the socket's kernel buffer, nothing is dropped).",
			nil, nil),
	}
}

func (c *loopCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.syscalls
	ch <- c.datagrams
	ch <- c.pauses
}

func (c *loopCollector) Collect(ch chan<- prometheus.Metric) {
	var sum [7]uint64
	for _, s := range c.stats {
		sum[0] += s.wakeups.Load()
		sum[1] += s.recvCalls.Load()
		sum[2] += s.recvDgrams.Load()
		sum[3] += s.sendCalls.Load()
		sum[4] += s.sendDgrams.Load()
		sum[5] += s.trainDgrams.Load()
		sum[6] += s.pauses.Load()
	}
	ch <- prometheus.MustNewConstMetric(c.syscalls, prometheus.CounterValue, float64(sum[0]), "wakeup")
	ch <- prometheus.MustNewConstMetric(c.syscalls, prometheus.CounterValue, float64(sum[1]), "recv")
	ch <- prometheus.MustNewConstMetric(c.syscalls, prometheus.CounterValue, float64(sum[3]), "send")
	ch <- prometheus.MustNewConstMetric(c.datagrams, prometheus.CounterValue, float64(sum[2]), "in")
	ch <- prometheus.MustNewConstMetric(c.datagrams, prometheus.CounterValue, float64(sum[4]), "out")
	ch <- prometheus.MustNewConstMetric(c.datagrams, prometheus.CounterValue, float64(sum[5]), "out_segmented")
	ch <- prometheus.MustNewConstMetric(c.pauses, prometheus.CounterValue, float64(sum[6]))
}
