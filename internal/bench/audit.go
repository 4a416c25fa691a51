package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/codi2/codi2/internal/latency"
	"github.com/codi2/codi2/subjects"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Audit categories of the bench's events.
const (
	categoryLoad = "load"
	categoryFill = "fill"
)

// maxPending bounds each audit publisher's unacknowledged publishes.
const maxPending = 1024

// auditPub is one published audit event.
type auditPub struct {
	// start is when the event was published.
	start time.Time
	// seq is the CODI_AUDIT sequence of its PubAck; 0 when not acked.
	seq uint64
	// acked is when the PubAck was seen.
	acked time.Time
	// published is false when the publish call itself failed.
	published bool
}

// auditBatch is the outcome of publishAudit.
type auditBatch struct {
	category string
	pubs     []auditPub
	maxSeq   uint64
	acked    int
}

func (b *auditBatch) msgID(runID string, i int) string {
	return "bench-" + runID + "-" + b.category + "-" + strconv.Itoa(i)
}

// auditPayload is the JSON payload of event i, padded to about size bytes.
func auditPayload(i, size int) []byte {
	b := make([]byte, 0, size+48)
	b = append(b, `{"action":"TASK_ASSIGN","n":`...)
	b = strconv.AppendInt(b, int64(i), 10)
	b = append(b, `,"pad":"`...)
	b = append(b, strings.Repeat("x", max(0, size-len(b)-2))...)
	return append(b, `"}`...)
}

// publishAudit publishes n audit events in category from Config.Writers
// publishers, each on its own connection with up to maxPending publishes in
// flight. With rate > 0 the events are due at rate per second over all
// publishers, open-loop: the schedule does not wait for acks. With rate 0 they go as fast as the acks come back. It returns when every
// publish has been acknowledged or has failed.
func (r *runner) publishAudit(ctx context.Context, category string, n, rate int) (*auditBatch, error) {
	subj, err := subjects.AuditLog(r.auditSource(), category)
	if err != nil {
		return nil, err
	}
	b := &auditBatch{category: category, pubs: make([]auditPub, n)}
	w := r.cfg.Writers
	var done atomic.Int64
	stop := r.p.watch(category+" events acknowledged", n, func() int { return int(done.Load()) })
	defer stop()
	var interval time.Duration
	if rate > 0 {
		interval = time.Second / time.Duration(rate)
	}
	// Publishers and ack collectors keep their errors apart: they run at
	// once.
	errs, ackErrs := make([]error, w), make([]error, w)
	var wg sync.WaitGroup
	// Connect every publisher before starting any, so that a failure leaves
	// no goroutine behind.
	jss := make([]jetstream.JetStream, w)
	for p := range w {
		nc, err := r.connect("bench-audit-" + category + "-" + strconv.Itoa(p+1))
		if err != nil {
			return nil, err
		}
		if jss[p], err = jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(maxPending),
			jetstream.WithPublishAsyncTimeout(r.cfg.OpTimeout)); err != nil {
			return nil, err
		}
	}
	start := time.Now()
	for p := range w {
		js := jss[p]
		type future struct {
			i int
			f jetstream.PubAckFuture
		}
		futures := make(chan future, maxPending)
		wg.Go(func() {
			// Collect acks in publish order; each index belongs to one
			// publisher, so no lock is needed.
			for f := range futures {
				select {
				case ack := <-f.f.Ok():
					b.pubs[f.i].seq, b.pubs[f.i].acked = ack.Sequence, time.Now()
					done.Add(1)
				case err := <-f.f.Err():
					if ackErrs[p] == nil {
						ackErrs[p] = fmt.Errorf("bench: audit event %d: %w", f.i, err)
					}
				}
			}
		})
		wg.Go(func() {
			defer close(futures)
			for i := p; i < n; i += w {
				if ctx.Err() != nil {
					return
				}
				if interval > 0 {
					due := start.Add(time.Duration(i) * interval)
					if wait := time.Until(due); wait > 0 {
						time.Sleep(wait)
					}
				}
				m := &nats.Msg{Subject: subj, Data: auditPayload(i, r.cfg.PayloadBytes), Header: nats.Header{}}
				m.Header.Set(jetstream.MsgIDHeader, b.msgID(r.runID, i))
				// The clock starts at the publish: a late timer on a busy
				// machine is the bench's delay, not codi2's, while a
				// publish held back by unacknowledged ones is codi2's.
				b.pubs[i].start = time.Now()
				f, err := js.PublishMsgAsync(m, jetstream.WithStallWait(r.cfg.OpTimeout))
				if err != nil {
					errs[p] = fmt.Errorf("bench: publish audit event %d: %w", i, err)
					return
				}
				b.pubs[i].published = true
				futures <- future{i: i, f: f}
			}
		})
	}
	wg.Wait()
	stop()
	for i := range b.pubs {
		if s := b.pubs[i].seq; s > 0 {
			b.acked++
			b.maxSeq = max(b.maxSeq, s)
		}
	}
	if err := ctx.Err(); err != nil {
		return b, err
	}
	for _, err := range append(errs, ackErrs...) {
		if err != nil {
			return b, err
		}
	}
	return b, nil
}

// commitLatency waits until every acknowledged event of b is committed and
// returns the latency summary, from each event's start to the arrival of
// the first codi.audit.committed watermark that covers it, with its split at
// the PubAck, and the throughput from the first start to the last commit.
func (r *runner) commitLatency(ctx context.Context, b *auditBatch) (latency.Summary, *Split, float64, error) {
	wctx, cancel := context.WithTimeout(ctx, r.cfg.OpTimeout+time.Duration(len(b.pubs))*time.Millisecond)
	defer cancel()
	if _, err := r.auditWM.wait(wctx, b.maxSeq); err != nil {
		return latency.Summary{}, nil, 0, err
	}
	rec := latency.NewRecorder(b.acked)
	ackRec, commitRec := latency.NewRecorder(b.acked), latency.NewRecorder(b.acked)
	var first, last time.Time
	for _, p := range b.pubs {
		if p.seq == 0 {
			continue
		}
		at, _ := r.auditWM.committedAt(p.seq)
		rec.Record(at.Sub(p.start))
		ackRec.Record(p.acked.Sub(p.start))
		// The watermark can overtake the PubAck to the publisher.
		commitRec.Record(max(0, at.Sub(p.acked)))
		if first.IsZero() || p.start.Before(first) {
			first = p.start
		}
		if at.After(last) {
			last = at
		}
	}
	s := rec.Summary()
	return s, newSplit(ackRec, commitRec), latency.Throughput(s.Count, last.Sub(first)), nil
}

// measureAuditLoad publishes Config.AuditEvents at Config.AuditRate and
// measures publish to committed under that load.
func (r *runner) measureAuditLoad(ctx context.Context) (Metric, *auditBatch, error) {
	b, err := r.publishAudit(ctx, categoryLoad, r.cfg.AuditEvents, r.cfg.AuditRate)
	if err != nil {
		return Metric{}, b, err
	}
	s, split, tput, err := r.commitLatency(ctx, b)
	if err != nil {
		return Metric{}, b, err
	}
	m := newMetric(KeyAuditWrite, fmt.Sprintf("audit write @%s (publish → committed)", fmtRate(float64(r.cfg.AuditRate))), s, tput)
	m.Split = split
	m.Note = fmt.Sprintf("%d publishers offer %d events/s between them on a fixed schedule, with async publishes; latency runs from each publish to the codi.audit.committed watermark covering it", r.cfg.Writers, r.cfg.AuditRate)
	return m, b, nil
}

// fillAuditLog grows the audit log to Config.QueryLogSize records as fast as
// it will take them, and reports that as the audit ingest metric.
func (r *runner) fillAuditLog(ctx context.Context) (Metric, *auditBatch, error) {
	st, err := status(ctx, r.nc, subjects.AuditStatus, r.cfg.OpTimeout)
	if err != nil {
		return Metric{}, nil, err
	}
	n := max(r.cfg.QueryWindow+1, r.cfg.QueryLogSize-int(st.Seq))
	r.p.printf("audit fill: %d events to a log of %d records, as fast as they are acknowledged", n, st.Seq)
	b, err := r.publishAudit(ctx, categoryFill, n, 0)
	if err != nil {
		return Metric{}, b, err
	}
	s, split, tput, err := r.commitLatency(ctx, b)
	if err != nil {
		return Metric{}, b, err
	}
	m := newMetric(KeyAuditFill, "audit ingest, saturated", s, tput)
	m.Split = split
	m.Note = fmt.Sprintf("%d publishers with up to %d publishes in flight each, as fast as acked: throughput is the ceiling, latency is queueing", r.cfg.Writers, maxPending)
	return m, b, nil
}

// queryReply is the part of a codi.audit.query reply the bench reads.
type queryReply struct {
	Records []struct {
		Seq   uint64    `json:"seq"`
		Time  time.Time `json:"time"`
		MsgID string    `json:"msg_id"`
	} `json:"records"`
	NextAfterSeq uint64 `json:"next_after_seq"`
}

// query sends one codi.audit.query and returns the reply and its latency.
func (r *runner) query(ctx context.Context, q map[string]any) (queryReply, time.Duration, error) {
	body, err := json.Marshal(q)
	if err != nil {
		return queryReply{}, 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.OpTimeout)
	defer cancel()
	t0 := time.Now()
	data, err := request(ctx, r.nc, subjects.AuditQuery, body)
	d := time.Since(t0)
	if err != nil {
		return queryReply{}, d, err
	}
	var rep queryReply
	if err := json.Unmarshal(data, &rep); err != nil {
		return queryReply{}, d, fmt.Errorf("bench: query reply: %w", err)
	}
	return rep, d, nil
}

// recordTime returns the time of the audit record at seq.
func (r *runner) recordTime(ctx context.Context, seq uint64) (time.Time, error) {
	rep, _, err := r.query(ctx, map[string]any{"after_seq": seq - 1, "limit": 1})
	if err != nil {
		return time.Time{}, err
	}
	if len(rep.Records) == 0 || rep.Records[0].Seq != seq {
		return time.Time{}, fmt.Errorf("bench: audit record %d not found", seq)
	}
	return rep.Records[0].Time, nil
}

// measureQueries times Config.Queries codi.audit.query requests, one at a
// time, each for the time range of Config.QueryWindow consecutive records
// at a random place in the log, with that as the page limit: a dashboard
// asking what happened in a span of time. The range is found from the
// records' own times with untimed requests first.
func (r *runner) measureQueries(ctx context.Context, st watermark) (Metric, error) {
	win := uint64(r.cfg.QueryWindow)
	if st.Seq <= win {
		return Metric{}, fmt.Errorf("%w: the audit log has %d records, a query window %d", ErrConfig, st.Seq, win)
	}
	rec := latency.NewRecorder(r.cfg.Queries)
	var records int
	var total time.Duration
	for range r.cfg.Queries {
		first := 1 + rand.Uint64N(st.Seq-win)
		from, err := r.recordTime(ctx, first)
		if err != nil {
			return Metric{}, err
		}
		to, err := r.recordTime(ctx, first+win)
		if err != nil {
			return Metric{}, err
		}
		rep, d, err := r.query(ctx, map[string]any{
			"from":  from.Format(time.RFC3339Nano),
			"to":    to.Format(time.RFC3339Nano),
			"limit": win,
		})
		if err != nil {
			return Metric{}, err
		}
		records += len(rep.Records)
		rec.Record(d)
		total += d
	}
	s := rec.Summary()
	m := newMetric(KeyTimeRangeQuery, fmt.Sprintf("time-range query (%s-record log)", fmtCount(st.Seq)), s, latency.Throughput(s.Count, total))
	m.Note = fmt.Sprintf("codi.audit.query from/to spanning %d records at a random place in the log, limit %d, one at a time; %d records per reply on average",
		win, win, records/max(1, s.Count))
	return m, nil
}

// countAudit reads back, through codi.audit.query, every event the bench
// published in the batches and counts what came back once and more than
// once.
func (r *runner) countAudit(ctx context.Context, l *Loss, batches ...*auditBatch) error {
	want := make(map[string]int) // msg id -> copies seen
	st, err := status(ctx, r.nc, subjects.AuditStatus, r.cfg.OpTimeout)
	if err != nil {
		return err
	}
	committed := st.StreamSeq
	for _, b := range batches {
		if b == nil {
			continue
		}
		for i, p := range b.pubs {
			if p.published {
				l.AuditPublished++
			}
			if p.seq == 0 {
				continue
			}
			l.AuditAcked++
			if p.seq <= committed {
				l.AuditCommitted++
			}
			want[b.msgID(r.runID, i)] = 0
		}
	}
	var after uint64
	for {
		rep, _, err := r.query(ctx, map[string]any{"source": r.auditSource(), "after_seq": after, "limit": 10_000})
		if err != nil {
			return err
		}
		for _, rec := range rep.Records {
			if n, ok := want[rec.MsgID]; ok {
				want[rec.MsgID] = n + 1
			}
		}
		if rep.NextAfterSeq == 0 || len(rep.Records) == 0 {
			break
		}
		after = rep.NextAfterSeq
	}
	for _, n := range want {
		switch {
		case n == 0:
			l.AuditLost++
		case n > 1:
			l.AuditDuplicate += n - 1
		}
		if n > 0 {
			l.AuditQueried++
		}
	}
	return nil
}

// fmtCount prints a count as 100k or 1M.
func fmtCount(n uint64) string {
	switch {
	case n >= 1_000_000 && n%100_000 == 0:
		return strconv.FormatFloat(float64(n)/1e6, 'f', -1, 64) + "M"
	case n >= 1000 && n%1000 == 0:
		return strconv.FormatUint(n/1000, 10) + "k"
	default:
		return strconv.FormatUint(n, 10)
	}
}
