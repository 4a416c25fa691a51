package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/codi2/codi2/audit"
	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/state"
)

// Readiness is what /readyz reports: whether the server takes work and
// keeps up with it, and if not, why.
type Readiness struct {
	// Ready is true when Problems is empty.
	Ready bool `json:"ready"`
	// Phase is "starting", "running" or "stopping".
	Phase string `json:"phase"`
	// Problems name each condition that makes the server not ready, in a
	// sentence each: a stream missing, a service not consuming or lagging,
	// a stream that cannot write.
	Problems []string `json:"problems,omitempty"`
}

// Readiness checks, in this order: the phase (running), the connection to
// NATS, the three streams (present, and writable as far as the bus knows),
// what the services and the stream watch report (Problem),
// the free space of the data directory's disk (at least 4 MiB), and for
// each service that it is running, that its durable consumer
// exists and that the oldest message it has not applied was stored less
// than Config.ReadyMaxLag ago. It reads stream and consumer info from the
// server, bounded by ctx. Safe for concurrent use.
func (s *Server) Readiness(ctx context.Context) Readiness {
	r := Readiness{Phase: s.phase.Load().(string)}
	if r.Phase != phaseRunning {
		r.Problems = append(r.Problems, "codi2 is "+r.Phase)
	}
	if !s.bus.Conn().IsConnected() {
		r.Problems = append(r.Problems, "not connected to NATS")
	}
	js := s.bus.JetStream()
	streams := map[string]jetstream.Stream{}
	for _, name := range []string{bus.StreamMsg, bus.StreamState, bus.StreamAudit} {
		st, err := js.Stream(ctx, name)
		if err != nil {
			r.Problems = append(r.Problems, fmt.Sprintf("stream %s: %v", name, err))
			continue
		}
		streams[name] = st
	}
	r.Problems = append(r.Problems, s.bus.StorageProblems()...)
	if err := s.Problem(); err != nil {
		// A stream deleted and not yet recreated, a service not consuming.
		r.Problems = append(r.Problems, strings.Split(err.Error(), "\n")...)
	}
	if p := diskProblem(s.cfg.DataDir); p != "" {
		r.Problems = append(r.Problems, p)
	}
	select {
	case <-s.failed:
		r.Problems = append(r.Problems, "a service failed")
	default:
	}
	// The audit service's own watermark, not Status: with a shared log
	// Status reads the chain's head from the store.
	auditApplied, _ := s.audit.Watermark()
	services := []struct {
		name, stream, consumer string
		applied                uint64
	}{
		{state.ServiceName, s.cfg.State.Stream, s.cfg.State.Consumer, s.state.Watermark()},
		{audit.ServiceName, bus.StreamAudit, audit.ConsumerName, auditApplied},
	}
	for _, svc := range services {
		if st := streams[svc.stream]; st != nil {
			if p := s.lagProblem(ctx, st, svc.name, svc.consumer, svc.applied); p != "" {
				r.Problems = append(r.Problems, p)
			}
		}
	}
	r.Ready = len(r.Problems) == 0
	return r
}

// minFree is the free space below which the disk holding the data
// directory is reported: a stream write or a store commit is about to fail,
// or already fails (the services retry their commits).
const minFree = 4 << 20

// diskProblem describes a data directory whose disk is (nearly) full, or
// returns "".
func diskProblem(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return fmt.Sprintf("data directory %s: %v", dir, err)
	}
	if free := int64(st.Bavail) * st.Bsize; free < minFree {
		return fmt.Sprintf("the disk holding %s has %s free (less than %s): writes fail or are about to",
			dir, bus.FormatBytes(free), bus.FormatBytes(minFree))
	}
	return ""
}

// lagProblem describes what keeps service from being ready on stream, or
// returns "".
func (s *Server) lagProblem(ctx context.Context, st jetstream.Stream, service, consumer string, applied uint64) string {
	if _, err := st.Consumer(ctx, consumer); err != nil {
		return fmt.Sprintf("%s: consumer %s: %v", service, consumer, err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		return fmt.Sprintf("%s: stream info: %v", service, err)
	}
	last := info.State.LastSeq
	if applied >= last {
		return ""
	}
	next := max(applied+1, info.State.FirstSeq)
	msg, err := st.GetMsg(ctx, next)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return "" // a gap; the service skips it
	case err != nil:
		return fmt.Sprintf("%s: message %d: %v", service, next, err)
	}
	if waited := time.Since(msg.Time); waited > s.cfg.ReadyMaxLag {
		return fmt.Sprintf("%s is %d messages behind: the oldest was stored %s ago (limit %s)",
			service, last-applied, waited.Round(time.Millisecond), s.cfg.ReadyMaxLag)
	}
	return ""
}
