package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/codi2/codi2/internal/latency"
	"github.com/codi2/codi2/subjects"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// stateKind is the kind of the bench's records, apart from real tasks.
const stateKind = "bench-task"

// stateRun is what the state measurement wrote, for the reads and the loss
// count.
type stateRun struct {
	ids      []string // one record per writer
	commands []int    // commands published per writer
	acked    atomic.Int64
	applied  atomic.Int64
	rejected atomic.Int64
	lastSeq  atomic.Uint64
}

// stateCommand is the payload of the k-th command of an agent on its own
// record: a merge that claims revision k, as an agent claims a task.
func stateCommand(k int) []byte {
	b, _ := json.Marshal(map[string]any{
		"op":         "merge",
		"fields":     map[string]any{"status": "in_progress", "step": k},
		"expect_rev": k,
	})
	return b
}

// measureStateUpdates has Config.Writers agents each update its own record
// with expect_rev, one command at a time: publish the command on
// codi.state.cmd, then wait for the codi.state.committed watermark to reach
// its PubAck sequence. The latency is publish to watermark: the change is
// applied and durable in the store.
func (r *runner) measureStateUpdates(ctx context.Context) (Metric, *stateRun, error) {
	w := r.cfg.Writers
	run := &stateRun{ids: make([]string, w), commands: make([]int, w)}
	for i := range w {
		run.ids[i] = "bench-" + r.runID + "-" + strconv.Itoa(i+1)
		run.commands[i] = r.cfg.StateCommands / w
		if i < r.cfg.StateCommands%w {
			run.commands[i]++
		}
		evt, err := subjects.StateEvt(stateKind, run.ids[i])
		if err != nil {
			return Metric{}, nil, err
		}
		sub, err := r.nc.Subscribe(evt, func(m *nats.Msg) {
			var e struct {
				Status string `json:"status"`
			}
			if json.Unmarshal(m.Data, &e) == nil {
				switch e.Status {
				case "applied":
					run.applied.Add(1)
				case "rejected":
					run.rejected.Add(1)
				}
			}
		})
		if err != nil {
			return Metric{}, nil, err
		}
		_ = sub.SetPendingLimits(-1, -1)
		defer sub.Unsubscribe()
	}
	if err := r.nc.Flush(); err != nil {
		return Metric{}, nil, err
	}

	rec := latency.NewRecorder(r.cfg.StateCommands)
	ackRec, commitRec := latency.NewRecorder(r.cfg.StateCommands), latency.NewRecorder(r.cfg.StateCommands)
	var done atomic.Int64
	stop := r.p.watch("state commands", r.cfg.StateCommands, func() int { return int(done.Load()) })
	defer stop()
	// Connect every agent before starting any, so that a failure leaves no
	// goroutine behind.
	subjs, jss := make([]string, w), make([]jetstream.JetStream, w)
	for i := range w {
		nc, err := r.connect("bench-state-" + strconv.Itoa(i+1))
		if err != nil {
			return Metric{}, nil, err
		}
		if subjs[i], err = subjects.StateCmd(stateKind, run.ids[i], r.agentID("agent-"+strconv.Itoa(i+1))); err != nil {
			return Metric{}, nil, err
		}
		if jss[i], err = jetstream.New(nc); err != nil {
			return Metric{}, nil, err
		}
	}
	errs := make([]error, w)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range w {
		subj, js := subjs[i], jss[i]
		wg.Go(func() {
			// The first commands warm the connection and are not timed.
			untimed := min(10, run.commands[i]/10)
			lat := make([]time.Duration, 0, run.commands[i])
			acks := make([]time.Duration, 0, run.commands[i])
			for k := range run.commands[i] {
				octx, cancel := context.WithTimeout(ctx, r.cfg.OpTimeout)
				t0 := time.Now()
				ack, err := js.Publish(octx, subj, stateCommand(k),
					jetstream.WithMsgID(r.runID+"-state-"+strconv.Itoa(i)+"-"+strconv.Itoa(k)))
				var at time.Time
				acked := time.Now()
				if err == nil {
					run.acked.Add(1)
					storeMax(&run.lastSeq, ack.Sequence)
					at, err = r.stateWM.wait(octx, ack.Sequence)
				}
				cancel()
				if err != nil {
					errs[i] = fmt.Errorf("bench: state command %d of agent %d: %w", k, i+1, err)
					break
				}
				if k >= untimed {
					lat = append(lat, at.Sub(t0))
					acks = append(acks, acked.Sub(t0))
				}
				done.Add(1)
			}
			for j, d := range lat {
				rec.Record(d)
				ackRec.Record(acks[j])
				commitRec.Record(d - acks[j])
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	stop()
	for _, err := range errs {
		if err != nil {
			return Metric{}, nil, err
		}
	}
	s := rec.Summary()
	m := newMetric(KeyStateUpdate, "state update (publish → committed)", s, latency.Throughput(int(run.acked.Load()), elapsed))
	m.Split = newSplit(ackRec, commitRec)
	m.Note = fmt.Sprintf("%d agents each merge their own record with expect_rev, one command at a time, and wait for the codi.state.committed watermark", w)
	return m, run, nil
}

// storeMax raises a to v if v is larger.
func storeMax(a *atomic.Uint64, v uint64) {
	for {
		cur := a.Load()
		if v <= cur || a.CompareAndSwap(cur, v) {
			return
		}
	}
}

// measureStateReads times Config.StateReads gets of the records run wrote,
// from Config.Writers readers at once: what a dashboard or an agent does to
// learn a task's current status.
func (r *runner) measureStateReads(ctx context.Context, run *stateRun) (Metric, error) {
	w := r.cfg.Writers
	rec := latency.NewRecorder(r.cfg.StateReads)
	var done atomic.Int64
	stop := r.p.watch("state reads", r.cfg.StateReads, func() int { return int(done.Load()) })
	defer stop()
	ncs := make([]*nats.Conn, w)
	for i := range w {
		var err error
		if ncs[i], err = r.connect("bench-state-reader-" + strconv.Itoa(i+1)); err != nil {
			return Metric{}, err
		}
	}
	errs := make([]error, w)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range w {
		nc := ncs[i]
		n := r.cfg.StateReads / w
		if i < r.cfg.StateReads%w {
			n++
		}
		wg.Go(func() {
			lat := make([]time.Duration, 0, n)
			for k := range n {
				subj, err := subjects.StateGet(stateKind, run.ids[(i+k)%len(run.ids)])
				if err != nil {
					errs[i] = err
					break
				}
				octx, cancel := context.WithTimeout(ctx, r.cfg.OpTimeout)
				t0 := time.Now()
				_, err = request(octx, nc, subj, nil)
				d := time.Since(t0)
				cancel()
				if err != nil {
					errs[i] = err
					break
				}
				lat = append(lat, d)
				done.Add(1)
			}
			for _, d := range lat {
				rec.Record(d)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	stop()
	for _, err := range errs {
		if err != nil {
			return Metric{}, err
		}
	}
	s := rec.Summary()
	m := newMetric(KeyStateRead, "state read (get)", s, latency.Throughput(s.Count, elapsed))
	m.Note = fmt.Sprintf("codi.state.get of a record's current revision, %d readers at once; no design-document target", w)
	return m, nil
}

// countState reads every record run wrote, after its last command, and
// counts the applied commands: each agent's k-th command claimed revision k,
// so a record at revision n has applied all n commands, once each.
func (r *runner) countState(ctx context.Context, run *stateRun, l *Loss) error {
	l.StateAcked = int(run.acked.Load())
	l.StateRejected = int(run.rejected.Load())
	body, _ := json.Marshal(map[string]uint64{"min_seq": run.lastSeq.Load()})
	for i, id := range run.ids {
		subj, err := subjects.StateGet(stateKind, id)
		if err != nil {
			return err
		}
		var rec struct {
			Rev uint64 `json:"rev"`
		}
		octx, cancel := context.WithTimeout(ctx, r.cfg.OpTimeout)
		data, err := request(octx, r.nc, subj, body)
		cancel()
		if err == nil {
			err = json.Unmarshal(data, &rec)
		}
		if err != nil {
			return fmt.Errorf("bench: read back state record %s: %w", id, err)
		}
		l.StateApplied += int(rec.Rev)
		if lost := run.commands[i] - int(rec.Rev); lost > 0 {
			l.StateLost += lost
		}
	}
	return nil
}
