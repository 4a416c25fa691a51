package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/codi2/codi2/subjects"
)

// WatchSource is the audit source of the events a StreamWatch records, and
// WatchLostCategory their category.
const (
	WatchSource       = "codi-server"
	WatchLostCategory = "lost"
)

// DefaultWatchInterval is how often a StreamWatch looks at the streams.
const DefaultWatchInterval = time.Second

// StreamWatch keeps the contract streams present while the server runs. An
// operator's `nats stream rm CODI_MSG` leaves no service to notice it (the
// mail's consumers are the agents'), and every send would fail with "no
// responders" from then on; CODI_STATE and CODI_AUDIT have services that
// notice on their own (their Run recreates them and records the loss), and
// the watch recreating them first is harmless to those.
//
// The watch checks every stream of StreamConfigs each interval. A missing
// one is created again with its configuration and logged at error; for a
// stream in Announce (CODI_MSG, whose messages no service records) it also
// publishes an audit event naming the stream and the sequences its old
// generation held when last seen: subject codi.audit.log.codi-server.lost,
// payload {"stream","first_seq","last_seq","count","reason":"stream
// recreated"}, Nats-Msg-Id codi-server-lost-<stream>-<old creation time in
// Unix ns>. Problem reports a stream that is missing and could not be
// created, while that lasts.
//
// Create it with NewStreamWatch and run it with Run; its methods are safe
// for concurrent use.
type StreamWatch struct {
	js       jetstream.JetStream
	configs  []jetstream.StreamConfig
	announce map[string]bool
	interval time.Duration
	log      zerolog.Logger

	mu      sync.Mutex
	last    map[string]*jetstream.StreamInfo // the last info seen per stream
	pending map[string]*jetstream.StreamInfo // losses not yet recorded
	problem error
}

// NewStreamWatch returns a watch over the streams of cfg (validated)
// through js, announcing the loss of the streams named in announce (nil:
// StreamMsg). interval 0 means DefaultWatchInterval.
func NewStreamWatch(js jetstream.JetStream, cfg Config, interval time.Duration, log zerolog.Logger, announce ...string) *StreamWatch {
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	if announce == nil {
		announce = []string{StreamMsg}
	}
	w := &StreamWatch{
		js:       js,
		configs:  StreamConfigs(cfg),
		announce: map[string]bool{},
		interval: interval,
		log:      log.With().Str("component", "bus").Logger(),
		last:     map[string]*jetstream.StreamInfo{},
		pending:  map[string]*jetstream.StreamInfo{},
	}
	for _, n := range announce {
		w.announce[n] = true
	}
	return w
}

// Run checks the streams every interval until ctx is done, then returns
// nil. It starts no goroutine.
func (w *StreamWatch) Run(ctx context.Context) error {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		w.Check(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Problem returns why a contract stream is missing right now, or nil.
func (w *StreamWatch) Problem() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.problem
}

// Check looks at every stream once: what Run does each interval.
func (w *StreamWatch) Check(ctx context.Context) {
	var problems []error
	for _, sc := range w.configs {
		if err := w.check(ctx, sc); err != nil && ctx.Err() == nil {
			problems = append(problems, err)
		}
	}
	w.mu.Lock()
	w.problem = errors.Join(problems...)
	w.mu.Unlock()
}

func (w *StreamWatch) check(ctx context.Context, sc jetstream.StreamConfig) error {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	w.mu.Lock()
	old := w.last[sc.Name]
	w.mu.Unlock()
	if old != nil {
		sc = old.Config // the configuration it had, limits as the operator left them
	}
	s, created, err := RecreateStream(cctx, w.js, sc)
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, context.DeadlineExceeded) {
			w.log.Error().Err(err).Str("stream", sc.Name).Msg("stream missing and not recreated; retrying")
		}
		return err
	}
	info, err := s.Info(cctx)
	if err != nil {
		return wrapStream(sc.Name, err)
	}
	w.mu.Lock()
	w.last[sc.Name] = info
	if created && old != nil && w.announce[sc.Name] {
		w.pending[sc.Name] = old
	}
	gone := w.pending[sc.Name]
	w.mu.Unlock()
	if created {
		w.log.Error().Str("stream", sc.Name).Msg("stream was deleted under the running server: recreated it with its configuration")
	}
	if gone == nil {
		return nil
	}
	if err := w.announceLoss(cctx, gone); err != nil {
		return err // tried again at the next check
	}
	w.mu.Lock()
	delete(w.pending, sc.Name)
	w.mu.Unlock()
	return nil
}

// announceLoss records in the audit log that old's generation of its
// stream is gone, with the sequences it held when last seen.
func (w *StreamWatch) announceLoss(ctx context.Context, old *jetstream.StreamInfo) error {
	st := old.State
	lost := struct {
		Stream   string `json:"stream"`
		FirstSeq uint64 `json:"first_seq"`
		LastSeq  uint64 `json:"last_seq"`
		Count    uint64 `json:"count"`
		Reason   string `json:"reason"`
	}{old.Config.Name, st.FirstSeq, st.LastSeq, st.Msgs, "stream recreated"}
	data, err := json.Marshal(lost)
	if err != nil {
		return err
	}
	subj, err := subjects.AuditLog(WatchSource, WatchLostCategory)
	if err != nil {
		return err
	}
	id := "codi-server-lost-" + old.Config.Name + "-" + strconv.FormatInt(old.Created.UnixNano(), 10)
	if _, err := w.js.Publish(ctx, subj, data, jetstream.WithMsgID(id)); err != nil {
		w.log.Error().Err(err).Str("stream", old.Config.Name).RawJSON("lost", data).Msg("could not record the stream's loss in the audit log")
		return fmt.Errorf("bus: record loss of stream %s: %w", old.Config.Name, err)
	}
	w.log.Error().Str("stream", old.Config.Name).RawJSON("lost", data).Msg("messages lost with the deleted stream recorded in the audit log")
	return nil
}
