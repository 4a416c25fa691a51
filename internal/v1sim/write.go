package v1sim

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/codi2/codi2/internal/latency"
)

// WriteResult is what one RunWrites run measured. It is a plain value, safe
// to share.
type WriteResult struct {
	// Path is the shared log file, for Verify, ScanState and QueryTimeRange.
	Path string
	// Mode is the mode that ran, after defaults.
	Mode Mode
	// Events counts appends that returned without error.
	Events int
	// Bytes is the length of those events' lines, newlines included. With
	// no error every byte is in the file once RunWrites returns.
	Bytes int64
	// Elapsed runs from releasing the writers until the last one has
	// flushed; opening and closing the file are outside it.
	Elapsed time.Duration
	// Throughput is Events per second over Elapsed.
	Throughput float64
	// Latency summarises the per-event append latency: the bufio Write call
	// in Buffered mode (the event is not in the file yet, let alone durable),
	// lock + write(2) + fsync(2) + unlock in LockedFsync mode.
	Latency latency.Summary
}

// RunWrites truncates the shared log in cfg.Dir and runs cfg.Writers
// concurrent writers, each appending cfg.EventsPerWriter events in cfg.Mode,
// and times every append. It returns after every writer has flushed and
// every descriptor is closed.
//
// If ctx ends or a writer fails, the other writers stop at their next event,
// flush what they buffered and RunWrites returns the partial result with the
// cause. Nothing is retried. RunWrites is safe for concurrent use with
// different Dirs; runs sharing a Dir truncate each other's log.
func RunWrites(ctx context.Context, cfg Config) (WriteResult, error) {
	if err := cfg.Validate(); err != nil {
		return WriteResult{}, err
	}
	cfg = cfg.WithDefaults()
	if cfg.Mode == LockedFsync && !flockSupported {
		return WriteResult{}, fmt.Errorf("%w: %v", ErrUnsupported, cfg.Mode)
	}
	path := filepath.Join(cfg.Dir, LogName)
	res := WriteResult{Path: path, Mode: cfg.Mode}

	// Start from an empty log so that Verify counts this run only.
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		return res, fmt.Errorf("v1sim: create log: %w", err)
	}
	writers := make([]*logWriter, 0, cfg.Writers)
	defer func() {
		for _, w := range writers {
			w.f.Close() // a no-op error after the close below
		}
	}()
	for id := range cfg.Writers {
		// One descriptor per writer, as v1's writers were separate
		// processes: O_APPEND offsets and flock(2) locks are per open file.
		f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return res, fmt.Errorf("v1sim: open writer %d: %w", id, err)
		}
		w := &logWriter{id: id, f: f}
		if cfg.Mode == Buffered {
			w.bw = bufio.NewWriterSize(f, BufferSize)
		}
		writers = append(writers, w)
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	pad := strings.Repeat("x", cfg.PayloadBytes)
	results := make([]writerResult, len(writers))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, w := range writers {
		wg.Go(func() {
			<-start
			results[i] = w.run(ctx, cfg.EventsPerWriter, pad)
			if results[i].err != nil {
				cancel(results[i].err)
			}
		})
	}
	// Release every writer at once so they contend from the first event.
	t0 := time.Now()
	close(start)
	wg.Wait()
	res.Elapsed = time.Since(t0)

	// Writers time into their own slices so that the recorder's mutex does
	// not add contention to the run being measured.
	rec := latency.NewRecorder(len(writers) * cfg.EventsPerWriter)
	var errs []error
	for _, r := range results {
		res.Events += r.events
		res.Bytes += r.bytes
		for _, d := range r.lat {
			rec.Record(d)
		}
		if r.err != nil && len(errs) == 0 {
			errs = append(errs, r.err) // the others repeat the cause
		}
	}
	res.Latency = rec.Summary()
	res.Throughput = latency.Throughput(res.Events, res.Elapsed)
	for _, w := range writers {
		if err := w.f.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close writer %d: %w", w.id, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return res, fmt.Errorf("v1sim: run %v: %w", cfg.Mode, err)
	}
	return res, nil
}

// logWriter is one simulated v1 writer process. It is used by one goroutine.
type logWriter struct {
	id int
	f  *os.File
	bw *bufio.Writer // Buffered mode only
}

// writerResult is what one writer did; lat holds one sample per event.
type writerResult struct {
	events int
	bytes  int64
	lat    []time.Duration
	err    error
}

// run appends events until done or ctx ends, then flushes.
func (w *logWriter) run(ctx context.Context, events int, pad string) writerResult {
	r := writerResult{lat: make([]time.Duration, 0, events)}
	done := ctx.Done()
	for n := range events {
		select {
		case <-done:
			r.err = context.Cause(ctx)
		default:
		}
		if r.err != nil {
			break
		}
		line, err := json.Marshal(newEvent(w.id, n, pad, time.Now()))
		if err != nil {
			r.err = fmt.Errorf("writer %d: encode event %d: %w", w.id, n, err)
			break
		}
		line = append(line, '\n')

		t0 := time.Now()
		err = w.append(line)
		d := time.Since(t0)
		if err != nil {
			r.err = fmt.Errorf("writer %d: append event %d: %w", w.id, n, err)
			return r // the buffer is poisoned; nothing more to flush
		}
		r.lat = append(r.lat, d)
		r.events++
		r.bytes += int64(len(line))
	}
	// v1 flushed on exit too, so a stopped writer still lands its tail.
	if w.bw != nil {
		if err := w.bw.Flush(); err != nil && r.err == nil {
			r.err = fmt.Errorf("writer %d: flush: %w", w.id, err)
		}
	}
	return r
}

// append writes one line in the writer's mode.
func (w *logWriter) append(line []byte) error {
	if w.bw != nil {
		// Flushes a full 4 KiB buffer with one write(2), usually cutting
		// line in two: the v1 bug.
		_, err := w.bw.Write(line)
		return err
	}
	return appendLocked(w.f, line)
}

// appendLocked appends line with one write(2) and fsyncs it, holding an
// exclusive flock(2) so no other descriptor appends in between.
func appendLocked(f *os.File, line []byte) (err error) {
	if err := flock(f, true); err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	defer func() {
		if uerr := flock(f, false); uerr != nil && err == nil {
			err = fmt.Errorf("unlock: %w", uerr)
		}
	}()
	if _, err := f.Write(line); err != nil {
		return err
	}
	return f.Sync()
}
