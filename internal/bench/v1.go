package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/codi2/codi2/internal/latency"
	"github.com/codi2/codi2/internal/v1sim"
)

// v1Results is what the v1 baseline measured, with internal/v1sim: real
// files, real write(2), flock(2) and fsync(2), and real full-log scans.
type v1Results struct {
	// log is the big log: Writers buffered writers appending QueryLogSize
	// events, the way v1 wrote. Its appends, integrity, time-range queries
	// and recovery scans are measured.
	log      v1sim.WriteResult
	logInteg v1sim.Integrity
	// locked is V1FsyncEvents appended under flock with an fsync each, the
	// correct but slow v1.
	locked      v1sim.WriteResult
	lockedInteg v1sim.Integrity
	// stateLog holds as many events as codi2 got state commands; stateScan
	// reads a task's current status from it.
	stateLog   v1sim.WriteResult
	stateInteg v1sim.Integrity
	stateScan  latency.Summary
	// query is QueryTimeRange over log; recovery is ScanState over log,
	// which is how a v1 reader rebuilt current state when it started.
	query           latency.Summary
	queryThroughput float64
	recovery        latency.Summary
}

// runV1 runs the v1 baseline in dir.
func (r *runner) runV1(ctx context.Context, dir string) (v1Results, error) {
	var v v1Results
	w := r.cfg.Writers
	perWriter := func(total int) int { return max(1, (total+w-1)/w) }

	mk := func(name string) (string, error) {
		d := filepath.Join(dir, name)
		return d, os.MkdirAll(d, 0o750)
	}
	logDir, err := mk("log")
	if err != nil {
		return v, err
	}
	logCfg := v1sim.Config{Dir: logDir, Writers: w, EventsPerWriter: perWriter(r.cfg.QueryLogSize),
		Mode: v1sim.Buffered, PayloadBytes: r.cfg.PayloadBytes}
	r.p.printf("v1: %d buffered writers append %d events to one log", w, w*logCfg.EventsPerWriter)
	logStart := time.Now()
	if v.log, err = v1sim.RunWrites(ctx, logCfg); err != nil {
		return v, err
	}
	logEnd := time.Now()
	if v.logInteg, err = v1sim.Verify(v.log.Path, logCfg); err != nil {
		return v, err
	}

	lockedDir, err := mk("locked")
	if err != nil {
		return v, err
	}
	lockedCfg := v1sim.Config{Dir: lockedDir, Writers: w, EventsPerWriter: perWriter(r.cfg.V1FsyncEvents),
		Mode: v1sim.LockedFsync, PayloadBytes: r.cfg.PayloadBytes}
	r.p.printf("v1: %d writers append %d events with flock + write + fsync", w, w*lockedCfg.EventsPerWriter)
	if v.locked, err = v1sim.RunWrites(ctx, lockedCfg); err != nil {
		return v, err
	}
	if v.lockedInteg, err = v1sim.Verify(v.locked.Path, lockedCfg); err != nil {
		return v, err
	}

	stateDir, err := mk("state")
	if err != nil {
		return v, err
	}
	stateCfg := v1sim.Config{Dir: stateDir, Writers: w, EventsPerWriter: perWriter(r.cfg.StateCommands),
		Mode: v1sim.Buffered, PayloadBytes: r.cfg.PayloadBytes}
	if v.stateLog, err = v1sim.RunWrites(ctx, stateCfg); err != nil {
		return v, err
	}
	if v.stateInteg, err = v1sim.Verify(v.stateLog.Path, stateCfg); err != nil {
		return v, err
	}
	r.p.printf("v1: %d state reads, each a scan of a %d-line log", r.cfg.V1Queries, v.stateInteg.Lines)
	if v.stateScan, err = scanStates(ctx, v.stateLog.Path, r.cfg.V1Queries); err != nil {
		return v, err
	}

	r.p.printf("v1: %d time-range queries and %d recovery scans of the %d-line log", r.cfg.V1Queries, r.cfg.V1Queries, v.logInteg.Lines)
	span := logEnd.Sub(logStart)
	window := time.Duration(float64(span) * float64(r.cfg.QueryWindow) / float64(max(1, v.log.Events)))
	rec := latency.NewRecorder(r.cfg.V1Queries)
	var total time.Duration
	for range r.cfg.V1Queries {
		if err := ctx.Err(); err != nil {
			return v, err
		}
		from := logStart.Add(time.Duration(rand.Int64N(int64(max(1, span-window)))))
		_, _, d, err := v1sim.QueryTimeRange(v.log.Path, from, from.Add(window))
		if err != nil {
			return v, err
		}
		rec.Record(d)
		total += d
	}
	v.query = rec.Summary()
	v.queryThroughput = latency.Throughput(v.query.Count, total)
	if v.recovery, err = scanStates(ctx, v.log.Path, r.cfg.V1Queries); err != nil {
		return v, err
	}
	return v, nil
}

// scanStates times n ScanState calls for random tasks on the log at path.
func scanStates(ctx context.Context, path string, n int) (latency.Summary, error) {
	rec := latency.NewRecorder(n)
	for range n {
		if err := ctx.Err(); err != nil {
			return latency.Summary{}, err
		}
		_, _, d, err := v1sim.ScanState(path, v1sim.TaskID(rand.IntN(v1sim.Tasks)))
		// A task without a parseable update is a full scan all the same.
		if err != nil && !errors.Is(err, v1sim.ErrNotFound) {
			return latency.Summary{}, fmt.Errorf("bench: v1 scan: %w", err)
		}
		rec.Record(d)
	}
	return rec.Summary(), nil
}

// runs returns the integrity of v's logs for the report.
func (v v1Results) runs(writers int) []V1Run {
	mk := func(name string, res v1sim.WriteResult, in v1sim.Integrity) V1Run {
		return V1Run{Name: name, Mode: res.Mode.String(), Writers: writers, Expected: in.Expected, Lines: in.Lines,
			Corrupted: in.Corrupted, Spliced: in.Spliced, Lost: in.Lost, LossRate: in.LossRate()}
	}
	return []V1Run{
		mk("query log", v.log, v.logInteg),
		mk("state log", v.stateLog, v.stateInteg),
		mk("fsync log", v.locked, v.lockedInteg),
	}
}
