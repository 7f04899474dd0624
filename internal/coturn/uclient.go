package coturn

import (
	"errors"
	"regexp"
	"strconv"
	"strings"
)

// LineKind is what a line of turnutils_uclient's output reports.
type LineKind int

// The line kinds the tools read. Examples, from coturn 4.6.1:
//
//	3: : start_mclient: msz=10, tot_send_msgs=15950, tot_recv_msgs=15850, tot_send_bytes ~ 1595000, tot_recv_bytes ~ 1585000
//	18: : start_mclient: tot_send_msgs=200000, tot_recv_msgs=199961
//	18: : Total lost packets 39 (0.019500%), total send dropped 0 (0.000000%)
const (
	// OtherLine is any line that reports none of the counters below.
	OtherLine LineKind = iota
	// ProgressLine is the once-a-second progress line: messages sent to the
	// peer and echoes received so far.
	ProgressLine
	// TotalsLine is the final count of messages sent and echoes received,
	// part of the summary uclient prints when it is done.
	TotalsLine
	// LostLine is the final count of lost messages and their share of those
	// sent, the other part of the summary.
	LostLine
)

var (
	reProgress = regexp.MustCompile(`start_mclient: msz=\d+, tot_send_msgs=(\d+), tot_recv_msgs=(\d+),`)
	reTotals   = regexp.MustCompile(`start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)\s*$`)
	reLost     = regexp.MustCompile(`Total lost packets (\d+) \(([0-9.]+)%\)`)
)

// UclientLine is what one line of turnutils_uclient's output says.
type UclientLine struct {
	Kind       LineKind
	Sent, Recv int     // ProgressLine and TotalsLine
	Lost       int     // LostLine
	LostPct    float64 // LostLine: percent of the messages sent
}

// ParseUclientLine reads one line of turnutils_uclient's output.
func ParseUclientLine(line string) UclientLine {
	if m := reProgress.FindStringSubmatch(line); m != nil {
		return UclientLine{Kind: ProgressLine, Sent: atoi(m[1]), Recv: atoi(m[2])}
	}
	if m := reTotals.FindStringSubmatch(line); m != nil {
		return UclientLine{Kind: TotalsLine, Sent: atoi(m[1]), Recv: atoi(m[2])}
	}
	if m := reLost.FindStringSubmatch(line); m != nil {
		pct, _ := strconv.ParseFloat(m[2], 64)
		return UclientLine{Kind: LostLine, Lost: atoi(m[1]), LostPct: pct}
	}
	return UclientLine{}
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// UclientSummary is the summary turnutils_uclient prints when it is done.
type UclientSummary struct {
	Sent, Recv int     // messages sent to the peer, echoes received back
	Lost       int     // messages whose echo never came
	LostPct    float64 // Lost, in percent of Sent
}

// ParseUclientSummary reads the summary from uclient's whole output: the
// last totals line and the last lost line. Output without both is an error
// (uclient was stopped, or failed, before its summary).
func ParseUclientSummary(out string) (UclientSummary, error) {
	var s UclientSummary
	var totals, lost bool
	for _, line := range strings.Split(out, "\n") {
		switch l := ParseUclientLine(line); l.Kind {
		case TotalsLine:
			s.Sent, s.Recv, totals = l.Sent, l.Recv, true
		case LostLine:
			s.Lost, s.LostPct, lost = l.Lost, l.LostPct, true
		}
	}
	if !totals || !lost {
		return UclientSummary{}, errors.New("no summary (tot_send_msgs=..., Total lost packets ...) in the output")
	}
	return s, nil
}
