package bench

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/codi2/codi2/internal/latency"
	"github.com/codi2/codi2/subjects"
	"github.com/nats-io/nats.go"
)

// measureRestarts stops the embedded server and starts it again on its data,
// Config.Restarts times, timing each start until both services answer their
// status with the watermarks they had before the stop. The stop is not
// timed: it is the time from a (re)start to serving that the design's
// recovery target is about.
func (r *runner) measureRestarts(ctx context.Context) (Metric, error) {
	if r.emb == nil {
		m := Metric{Key: KeyRestart, Name: "restart → ready", Result: Skipped,
			Note: "needs the embedded server; with --nats-url the bench does not own the server it measures"}
		t := targetRestart
		m.Target = &t
		return m, nil
	}
	before := map[string]uint64{}
	for _, subj := range []string{subjects.StateStatus, subjects.AuditStatus} {
		wm, err := status(ctx, r.nc, subj, r.cfg.OpTimeout)
		if err != nil {
			return Metric{}, err
		}
		before[subj] = wm.StreamSeq
	}
	u, err := url.Parse(r.emb.url())
	if err != nil {
		return Metric{}, err
	}
	listen := u.Host // keep the port, as a restarted server would

	r.closeClients()
	rec := latency.NewRecorder(r.cfg.Restarts)
	for i := range r.cfg.Restarts {
		if err := r.emb.stop(); err != nil {
			return Metric{}, fmt.Errorf("bench: stop before restart %d: %w", i+1, err)
		}
		r.emb = nil
		t0 := time.Now()
		emb, err := startEmbedded(ctx, r.serverDir, r.cfg.Store, listen, r.log)
		if err != nil {
			return Metric{}, fmt.Errorf("bench: restart %d: %w", i+1, err)
		}
		r.emb = emb
		if err := r.waitReady(ctx, before); err != nil {
			return Metric{}, fmt.Errorf("bench: restart %d: %w", i+1, err)
		}
		d := time.Since(t0)
		rec.Record(d)
		r.p.printf("  restart %d: ready in %s", i+1, fmtDur(d))
	}
	if err := r.openClients(); err != nil {
		return Metric{}, err
	}
	if err := r.seedWatermarks(ctx); err != nil {
		return Metric{}, err
	}
	s := rec.Summary()
	m := newMetric(KeyRestart, "restart → ready", s, 0)
	m.Note = "embedded NATS with JetStream recovery of the streams, both stores opened, state and audit services answering status at their pre-stop watermarks"
	return m, nil
}

// waitReady connects to the restarted server and polls both services'
// status until each answers with at least the watermark in want.
func (r *runner) waitReady(ctx context.Context, want map[string]uint64) error {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.OpTimeout)
	defer cancel()
	nc, err := nats.Connect(r.emb.url(), nats.Name("bench-restart"), nats.NoReconnect())
	if err != nil {
		return err
	}
	defer nc.Close()
	for subj, seq := range want {
		for {
			wm, err := status(ctx, nc, subj, 100*time.Millisecond)
			if err == nil && wm.StreamSeq >= seq {
				break
			}
			if ctx.Err() != nil {
				return fmt.Errorf("%s not ready (want watermark %d): %w", subj, seq, errors.Join(err, ctx.Err()))
			}
			time.Sleep(time.Millisecond)
		}
	}
	return nil
}
