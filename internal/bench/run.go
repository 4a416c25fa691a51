package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/subjects"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/rs/zerolog"
)

// runner holds one run's state. It is used by Run's goroutine; the
// measurements start and wait for their own goroutines.
type runner struct {
	cfg       Config
	log       zerolog.Logger
	p         *progress
	runID     string
	serverDir string
	emb       *embedded // nil with Config.NATSURL
	url       string

	// nc is the bench's own client connection, for requests and the
	// watermark subscriptions; conns are every connection opened since
	// openClients, closed by closeClients.
	nc      *nats.Conn
	conns   []*nats.Conn
	stateWM *watermarks
	auditWM *watermarks
}

// Run measures codi2 against the design document's targets and CODI v1, as
// cfg says, and returns the report. It starts an embedded server in
// cfg.DataDir (or a temporary directory) unless cfg.NATSURL is set, writes
// progress to cfg.Progress, and returns once every server, connection and
// goroutine it started has stopped. A missed target is a result in the
// report, not an error; an error means the run could not finish (ctx ended,
// a service did not answer, the data directory is not writable). Run is safe
// for concurrent use with different data directories.
func Run(ctx context.Context, cfg Config, log zerolog.Logger) (rep Report, err error) {
	if err := cfg.Validate(); err != nil {
		return Report{}, err
	}
	r := &runner{cfg: cfg, log: log.With().Str("component", "bench").Logger(), p: newProgress(cfg.Progress),
		runID: nuid.Next()}
	rep = Report{Started: time.Now(), Config: cfg, Mode: "embedded"}
	if cfg.NATSURL != "" {
		rep.Mode = "external"
	}

	dir := cfg.DataDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "codi2-bench-*"); err != nil {
			return rep, fmt.Errorf("bench: data directory: %w", err)
		}
		defer os.RemoveAll(dir)
	}
	r.serverDir = filepath.Join(dir, "codi2")
	if err := os.MkdirAll(r.serverDir, 0o750); err != nil {
		return rep, fmt.Errorf("bench: data directory: %w", err)
	}
	if rep.Machine, err = machine(dir); err != nil {
		return rep, err
	}

	r.url = cfg.NATSURL
	if r.url == "" {
		r.p.printf("starting an embedded codi2 in %s", r.serverDir)
		if r.emb, err = startEmbedded(ctx, r.serverDir, r.cfg.Store, "127.0.0.1:-1", r.log); err != nil {
			return rep, err
		}
		r.url = r.emb.url()
	}
	defer func() {
		r.closeClients()
		if r.emb != nil {
			err = errors.Join(err, r.emb.stop())
		}
	}()
	if err := r.openClients(); err != nil {
		return rep, err
	}
	if err := r.waitServices(ctx); err != nil {
		return rep, err
	}
	if err := r.seedWatermarks(ctx); err != nil {
		return rep, err
	}

	res, err := r.measure(ctx)
	if err != nil {
		return rep, err
	}
	r.p.printf("CODI v1 baseline in %s", filepath.Join(dir, "v1"))
	v1, err := r.runV1(ctx, filepath.Join(dir, "v1"))
	if err != nil {
		return rep, err
	}
	rep.Metrics = assemble(res, v1, rep.Machine, cfg)
	rep.Loss = res.loss
	rep.V1Runs = v1.runs(cfg.Writers)
	rep.Elapsed = time.Since(rep.Started)
	r.p.printf("done")
	return rep, nil
}

// results is what the codi2 measurements produced.
type results struct {
	message, rpc, stateUpdate, stateRead, auditWrite, auditFill, query, restart Metric
	loss                                                                        Loss
}

// measure runs the codi2 measurements in order.
func (r *runner) measure(ctx context.Context) (results, error) {
	var res results
	var err error
	r.p.printf("message one-way: %d durable messages, one at a time", r.cfg.Messages)
	if res.message, err = r.measureMessages(ctx); err != nil {
		return res, err
	}
	r.p.printf("rpc round trip: %d calls, one at a time", r.cfg.Messages)
	if res.rpc, err = r.measureRPC(ctx); err != nil {
		return res, err
	}
	r.p.printf("state update: %d commands from %d agents", r.cfg.StateCommands, r.cfg.Writers)
	var run *stateRun
	if res.stateUpdate, run, err = r.measureStateUpdates(ctx); err != nil {
		return res, err
	}
	r.p.printf("state read: %d gets from %d readers", r.cfg.StateReads, r.cfg.Writers)
	if res.stateRead, err = r.measureStateReads(ctx, run); err != nil {
		return res, err
	}
	r.p.printf("audit write under load: %d events at %d/s from %d publishers", r.cfg.AuditEvents, r.cfg.AuditRate, r.cfg.Writers)
	var load, fill *auditBatch
	if res.auditWrite, load, err = r.measureAuditLoad(ctx); err != nil {
		return res, err
	}
	if res.auditFill, fill, err = r.fillAuditLog(ctx); err != nil {
		return res, err
	}
	st, err := status(ctx, r.nc, subjects.AuditStatus, r.cfg.OpTimeout)
	if err != nil {
		return res, err
	}
	r.p.printf("time-range query: %d queries on a log of %d records", r.cfg.Queries, st.Seq)
	if res.query, err = r.measureQueries(ctx, st); err != nil {
		return res, err
	}
	if r.emb != nil {
		r.p.printf("restart → ready: %d restarts on the data written so far", r.cfg.Restarts)
	}
	if res.restart, err = r.measureRestarts(ctx); err != nil {
		return res, err
	}
	res.loss.AfterRestart = r.emb != nil
	r.p.printf("events lost: reading back every audit event and state record the bench wrote")
	if err := r.countAudit(ctx, &res.loss, load, fill); err != nil {
		return res, err
	}
	if err := r.countState(ctx, run, &res.loss); err != nil {
		return res, err
	}
	return res, nil
}

// openClients connects the bench's own client and follows both watermarks.
func (r *runner) openClients() error {
	nc, err := r.connect("bench")
	if err != nil {
		return err
	}
	r.nc = nc
	if r.stateWM, err = followWatermarks(nc, subjects.StateCommitted); err != nil {
		return err
	}
	r.auditWM, err = followWatermarks(nc, subjects.AuditCommitted)
	return err
}

// seedWatermarks starts both watermark trackers at the services' current
// watermarks, so that a wait for anything committed before the bench
// subscribed returns at once.
func (r *runner) seedWatermarks(ctx context.Context) error {
	for subj, w := range map[string]*watermarks{subjects.StateStatus: r.stateWM, subjects.AuditStatus: r.auditWM} {
		wm, err := status(ctx, r.nc, subj, r.cfg.OpTimeout)
		if err != nil {
			return err
		}
		w.advance(wm.StreamSeq, time.Now())
	}
	return nil
}

// closeClients closes every connection the bench opened.
func (r *runner) closeClients() {
	r.stateWM.close()
	r.auditWM.close()
	r.stateWM, r.auditWM = nil, nil
	for _, nc := range r.conns {
		nc.Close()
	}
	r.conns, r.nc = nil, nil
}

// connect opens a client connection to the server under test over TCP, as
// an agent would; closeClients closes it.
func (r *runner) connect(name string) (*nats.Conn, error) {
	nc, err := nats.Connect(r.url, nats.Name(name), nats.MaxReconnects(-1))
	if err != nil {
		return nil, fmt.Errorf("bench: connect %s: %w", r.url, err)
	}
	r.conns = append(r.conns, nc)
	return nc, nil
}

// waitServices waits until both services answer their status.
func (r *runner) waitServices(ctx context.Context) error {
	deadline := time.Now().Add(r.cfg.OpTimeout)
	for _, subj := range []string{subjects.StateStatus, subjects.AuditStatus} {
		for {
			_, err := status(ctx, r.nc, subj, 200*time.Millisecond)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%w: %s at %s: %v (is codi2 serve running there?)", ErrNoService, subj, r.url, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return nil
}

// agentID is the bench's agent id for role, unique to this run.
func (r *runner) agentID(role string) string { return "bench-" + r.runID + "-" + role }

// auditSource is the audit source token of this run's events.
func (r *runner) auditSource() string { return "bench-" + r.runID }

// purgeMessages removes the bench's messages to agent from CODI_MSG, so that
// runs against a long-lived server leave nothing behind. Failure is only
// logged: the messages expire with the stream's age limit anyway.
func (r *runner) purgeMessages(agent string) {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.OpTimeout)
	defer cancel()
	filter, err := subjects.MsgInbox(agent)
	if err == nil {
		var js jetstream.JetStream
		if js, err = jetstream.New(r.nc); err == nil {
			var s jetstream.Stream
			if s, err = js.Stream(ctx, bus.StreamMsg); err == nil {
				err = s.Purge(ctx, jetstream.WithPurgeSubject(filter))
			}
		}
	}
	if err != nil {
		r.log.Warn().Err(err).Str("agent", agent).Msg("purge bench messages")
	}
}
