package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/codi2/codi2/bus"
	"github.com/nats-io/nats.go"
)

// The bench speaks the wire contract (CONTRACT.md) with plain nats.go, as an
// agent or a dashboard would, so it measures what they would see and works
// against any codi2 behind a NATS URL.

// watermark is the body of codi.state.committed, codi.audit.committed and of
// the status replies.
type watermark struct {
	StreamSeq uint64 `json:"stream_seq"`
	Seq       uint64 `json:"seq"`
}

// watermarks follows a commit watermark subject and remembers when each
// watermark arrived, so that the commit time of any stream sequence can be
// looked up after the fact: an event's PubAck can reach its publisher after
// the watermark that covers it. It is safe for concurrent use.
type watermarks struct {
	sub *nats.Subscription

	mu      sync.Mutex
	hist    []mark        // increasing StreamSeq
	changed chan struct{} // closed and replaced on every advance
}

type mark struct {
	seq uint64
	at  time.Time
}

// followWatermarks subscribes to subject on nc. The subscription is live on
// return. Unsubscribe with close.
func followWatermarks(nc *nats.Conn, subject string) (*watermarks, error) {
	w := &watermarks{changed: make(chan struct{})}
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
		at := time.Now()
		var wm watermark
		if json.Unmarshal(m.Data, &wm) != nil {
			return
		}
		w.advance(wm.StreamSeq, at)
	})
	if err != nil {
		return nil, fmt.Errorf("bench: subscribe %s: %w", subject, err)
	}
	// A large backlog of watermarks must not be dropped as a slow consumer.
	_ = sub.SetPendingLimits(-1, -1)
	if err := nc.Flush(); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("bench: subscribe %s: %w", subject, err)
	}
	w.sub = sub
	return w, nil
}

// advance records watermark seq seen at at; a watermark that does not advance
// is ignored.
func (w *watermarks) advance(seq uint64, at time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if n := len(w.hist); n > 0 && w.hist[n-1].seq >= seq {
		return
	}
	w.hist = append(w.hist, mark{seq: seq, at: at})
	close(w.changed)
	w.changed = make(chan struct{})
}

// current returns the highest watermark seen.
func (w *watermarks) current() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if n := len(w.hist); n > 0 {
		return w.hist[n-1].seq
	}
	return 0
}

// committedAt returns when the first watermark at or past seq arrived.
func (w *watermarks) committedAt(seq uint64) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	i := sort.Search(len(w.hist), func(i int) bool { return w.hist[i].seq >= seq })
	if i == len(w.hist) {
		return time.Time{}, false
	}
	return w.hist[i].at, true
}

// wait blocks until a watermark at or past seq has arrived and returns when
// it did.
func (w *watermarks) wait(ctx context.Context, seq uint64) (time.Time, error) {
	for {
		w.mu.Lock()
		ch := w.changed
		w.mu.Unlock()
		if at, ok := w.committedAt(seq); ok {
			return at, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("bench: waiting for watermark %d (at %d): %w", seq, w.current(), context.Cause(ctx))
		}
	}
}

func (w *watermarks) close() {
	if w != nil && w.sub != nil {
		_ = w.sub.Unsubscribe()
	}
}

// errService wraps a micro-convention error reply.
var errService = errors.New("bench: service error")

// request sends body to subject and returns the reply data, turning a
// micro-convention error reply (Nats-Service-Error) into an error.
func request(ctx context.Context, nc *nats.Conn, subject string, body []byte) ([]byte, error) {
	m, err := nc.RequestWithContext(ctx, subject, body)
	if err != nil {
		return nil, fmt.Errorf("bench: request %s: %w", subject, err)
	}
	if msg := m.Header.Get(bus.ErrorHeader); msg != "" {
		return nil, fmt.Errorf("%w: %s: %s %s", errService, subject, m.Header.Get(bus.ErrorCodeHeader), msg)
	}
	return m.Data, nil
}

// status asks a service's status subject for its watermark.
func status(ctx context.Context, nc *nats.Conn, subject string, timeout time.Duration) (watermark, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	data, err := request(ctx, nc, subject, nil)
	if err != nil {
		return watermark{}, err
	}
	var wm watermark
	if err := json.Unmarshal(data, &wm); err != nil {
		return watermark{}, fmt.Errorf("bench: reply of %s: %w", subject, err)
	}
	return wm, nil
}
