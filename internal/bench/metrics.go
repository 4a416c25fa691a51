package bench

import (
	"fmt"
	"time"

	"github.com/codi2/codi2/internal/latency"
)

// Metric keys, stable for --json consumers.
const (
	KeyMessageOneWay  = "message_one_way"
	KeyRPCRoundTrip   = "rpc_round_trip"
	KeyStateUpdate    = "state_update"
	KeyStateRead      = "state_read"
	KeyAuditWrite     = "audit_write"
	KeyAuditFill      = "audit_fill"
	KeyTimeRangeQuery = "time_range_query"
	KeyRestart        = "restart_to_ready"
	KeyEventsLost     = "events_lost"
)

// The design document's targets (ADR-028, section 7, Success Metrics).
var (
	targetMessage = Target{Stat: StatP99, Below: 100 * time.Microsecond, Text: "p99 < 0.1ms"}
	// A round trip is two messages, so twice the message target.
	targetRPC     = Target{Stat: StatP99, Below: 200 * time.Microsecond, Text: "p99 < 0.2ms"}
	targetState   = Target{Stat: StatP99, Below: 5 * time.Millisecond, Text: "p99 < 5ms"}
	targetAudit   = Target{Stat: StatP99, Below: 10 * time.Millisecond, Text: "p99 < 10ms"}
	targetQuery   = Target{Stat: StatP99, Below: 50 * time.Millisecond, Text: "p99 < 50ms"}
	targetRestart = Target{Stat: StatMax, Below: 5 * time.Second, Text: "max < 5s"}
	targetLost    = Target{Stat: StatLost, Text: "0 lost"}
)

// newMetric fills a metric's statistics from s and throughput.
func newMetric(key, name string, s latency.Summary, throughput float64) Metric {
	return Metric{Key: key, Name: name, Count: s.Count, P50: s.P50, P99: s.P99, P999: s.P999,
		Max: s.Max, Throughput: throughput, Result: Info}
}

// judge sets m's target and result. why is the likely reason, printed when
// the target is missed.
func (m *Metric) judge(t Target, why string) {
	m.Target = &t
	var got time.Duration
	switch t.Stat {
	case StatLost:
		return // judged by judgeLoss
	case StatMax:
		got = m.Max
	default:
		got = m.P99
	}
	if m.Count > 0 && got < t.Below {
		m.Result = Pass
		return
	}
	m.Result = Fail
	if m.Count == 0 {
		m.Miss = "no samples"
		return
	}
	m.Miss = fmt.Sprintf("%s %s is %s over the %s target (%.1fx)", t.Stat, fmtDur(got),
		fmtDur(got-t.Below), fmtDur(t.Below), float64(got)/float64(t.Below))
	if why != "" {
		m.Miss += ": " + why
	}
	if m.Split != nil {
		m.Miss += " (" + m.Split.String() + ")"
	}
}

// judgeLoss sets the events-lost row from l.
func (m *Metric) judgeLoss(l Loss) {
	t := targetLost
	m.Target = &t
	if l.Lost() == 0 && l.AuditAcked > 0 && l.StateRejected == 0 {
		m.Result = Pass
		return
	}
	m.Result = Fail
	m.Miss = fmt.Sprintf("audit lost %d and duplicated %d of %d acknowledged; state lost %d of %d acknowledged, %d rejected",
		l.AuditLost, l.AuditDuplicate, l.AuditAcked, l.StateLost, l.StateAcked, l.StateRejected)
}

// newSplit summarises the two parts of durable writes' latencies.
func newSplit(ack, commit *latency.Recorder) *Split {
	a, c := ack.Summary(), commit.Summary()
	return &Split{AckP50: a.P50, AckP99: a.P99, CommitP50: c.P50, CommitP99: c.P99}
}

// compare adds a v1 equivalent to m and computes the speed-ups.
func (m *Metric) compare(what string, s latency.Summary, throughput float64, note string) {
	v := V1Compare{What: what, Count: s.Count, P50: s.P50, P99: s.P99, P999: s.P999, Throughput: throughput, Note: note}
	if m.P99 > 0 && s.P99 > 0 {
		v.SpeedupP99 = float64(s.P99) / float64(m.P99)
	}
	if m.Throughput > 0 && throughput > 0 {
		v.SpeedupThroughput = m.Throughput / throughput
	}
	m.V1 = append(m.V1, v)
}
