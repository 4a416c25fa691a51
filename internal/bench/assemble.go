package bench

import (
	"fmt"
)

// assemble judges the codi2 results against the design document's targets,
// attaches the v1 equivalents and returns the rows in table order.
func assemble(res results, v1 v1Results, m Machine, cfg Config) []Metric {
	shared := fmt.Sprintf("%d CPUs shared by the NATS server, both services and the bench", m.CPUs)
	if m.LoadAvg != "" {
		shared += fmt.Sprintf(" (1-minute load %s when the run started)", m.LoadAvg)
	}
	disk := fmt.Sprintf("this disk's fsync p50 is %s and p99 %s", fmtDur(m.FsyncP50), fmtDur(m.FsyncP99))
	lockedNote := "durable and never torn: the only v1 mode that loses nothing"
	locked := fmt.Sprintf("append: flock + write + fsync (%d writers)", cfg.Writers)

	msg := res.message
	msg.judge(targetMessage, "every message crosses the NATS server over TCP loopback (p50 "+fmtDur(msg.P50)+"); the tail is scheduling and GC on "+shared)
	msg.compare(locked, v1.locked.Latency, v1.locked.Throughput, lockedNote)
	msg.compare(fmt.Sprintf("append: 4 KiB buffered write (%d writers)", cfg.Writers), v1.log.Latency, v1.log.Throughput,
		"a copy into a buffer: not in the file yet, never fsynced, not delivered to anyone, and it tears lines (see integrity)")

	rpc := res.rpc
	rpc.judge(targetRPC, "two trips through the NATS server; the tail is scheduling and GC on "+shared)

	su := res.stateUpdate
	su.judge(targetState, "a command that arrives while a batch commits waits for that commit and then its own, each a store transaction ending in fsync ("+
		disk+"), and the rest of the tail is CPU contention on "+shared)
	su.compare(locked, v1.locked.Latency, v1.locked.Throughput, "")

	sr := res.stateRead
	sr.compare(fmt.Sprintf("ScanState: parse a %d-line log", v1.stateInteg.Lines), v1.stateScan, 0,
		"v1 read current state by parsing the whole log; a torn line can hide the last update")

	aw := res.auditWrite
	aw.judge(targetAudit, fmt.Sprintf("the audit service commits in batches: what arrives while one batch commits forms the next, and each batch is one store transaction that writes the records, their indexes and the chain head and ends in fsync (%s); at this rate the publishers, the NATS server and the consumer compete for %s",
		disk, shared))
	aw.compare(locked, v1.locked.Latency, v1.locked.Throughput,
		fmt.Sprintf("v1 writes as fast as its lock allows, %s; it could not carry codi2's offered %s at all", fmtRate(v1.locked.Throughput), fmtRate(float64(cfg.AuditRate))))

	af := res.auditFill
	af.compare(locked, v1.locked.Latency, v1.locked.Throughput,
		"throughput only: codi2's latency here is queueing at saturation, on purpose")
	af.V1[0].SpeedupP99 = 0

	q := res.query
	q.judge(targetQuery, "each query reads the time index and up to a page of records from bbolt and sends them as one JSON reply")
	q.compare(fmt.Sprintf("QueryTimeRange: parse a %d-line log", v1.logInteg.Lines), v1.query, v1.queryThroughput, "")

	rs := res.restart
	if rs.Result != Skipped {
		rs.judge(targetRestart, "JetStream recovers every stream file at start, so the time grows with the streams' size")
		rs.compare(fmt.Sprintf("rebuild state: parse the %d-line log", v1.logInteg.Lines), v1.recovery, 0,
			"a v1 reader learned current state at start by parsing the whole log")
	}

	lost := Metric{Key: KeyEventsLost, Name: "events lost (published → acked → committed → queried)",
		Count: res.loss.AuditAcked + res.loss.StateAcked, Result: Info}
	lost.judgeLoss(res.loss)
	in := v1.logInteg
	lost.Note = fmt.Sprintf("v1 with %d buffered writers lost %d of %d events (%.2f%%): %d lines corrupted, %d more spliced into wrong but parseable events",
		cfg.Writers, in.Lost, in.Expected, 100*in.LossRate(), in.Corrupted, in.Spliced)

	return []Metric{msg, rpc, su, sr, aw, af, q, rs, lost}
}
