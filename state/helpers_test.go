package state_test

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/audit"
	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/bus/bustest"
	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/kvtest"
	"github.com/codi2/codi2/state"
	"github.com/codi2/codi2/subjects"
)

// env is a real bus, a real bbolt store and a TCP client connection.
type env struct {
	t     *testing.T
	b     *bus.Bus
	nc    *nats.Conn
	js    jetstream.JetStream
	store kv.Store
}

func newEnv(t *testing.T) *env {
	t.Helper()
	b := bustest.Run(t)
	nc := bustest.Connect(t, b)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return &env{t: t, b: b, nc: nc, js: js, store: kvtest.NewBolt(t)}
}

// running is a Service whose Run is in progress.
type running struct {
	svc    *state.Service
	cancel context.CancelFunc
	done   chan error
	nc     *nats.Conn
}

// start runs a Service on its own in-process connection and the env's store.
func (e *env) start(cfg state.Config) *running {
	return e.startOn(e.store, cfg)
}

func (e *env) startOn(store kv.Store, cfg state.Config) *running {
	e.t.Helper()
	nc, err := e.b.Connect("codi-state")
	require.NoError(e.t, err)
	svc, err := state.New(cfg, nc, store, bustest.Logger(e.t))
	require.NoError(e.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{svc: svc, cancel: cancel, done: make(chan error, 1), nc: nc}
	go func() { r.done <- svc.Run(ctx) }()
	e.t.Cleanup(func() { r.stop(e.t) })
	// Ready once the micro service answers.
	require.Eventually(e.t, func() bool {
		_, err := nc.Request(subjects.StateStatus, nil, 200*time.Millisecond)
		return err == nil
	}, 10*time.Second, 5*time.Millisecond)
	return r
}

// stop cancels Run and waits for it to return nil. Idempotent.
func (r *running) stop(t *testing.T) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		require.NoError(t, err)
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	r.nc.Close()
}

// runToFailure runs a Service on store whose Run the test makes fail; read
// its error with runErr. The test's end cancels a Run still going.
func (e *env) runToFailure(store kv.Store) <-chan error {
	e.t.Helper()
	nc, err := e.b.Connect("codi-state")
	require.NoError(e.t, err)
	e.t.Cleanup(nc.Close)
	svc, err := state.New(fastConfig(), nc, store, bustest.Logger(e.t))
	require.NoError(e.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	e.t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	return done
}

// runErr waits for the error of a Run that must fail on its own.
func runErr(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not fail")
		return nil
	}
}

func (e *env) client(agent string) *state.Client {
	e.t.Helper()
	c, err := state.NewClient(e.nc, agent)
	require.NoError(e.t, err)
	return c
}

// publish stores a raw command on subject and returns its stream sequence.
func (e *env) publish(subject, payload string) uint64 {
	e.t.Helper()
	ack, err := e.js.Publish(context.Background(), subject, []byte(payload))
	require.NoError(e.t, err)
	return ack.Sequence
}

func cmdSubject(t *testing.T, kind, id, actor string) string {
	t.Helper()
	s, err := subjects.StateCmd(kind, id, actor)
	require.NoError(t, err)
	return s
}

// waitApplied waits until the service's watermark reaches seq.
func (e *env) waitApplied(seq uint64) {
	e.t.Helper()
	c := e.client("observer")
	require.Eventually(e.t, func() bool {
		n, err := c.Status(context.Background())
		return err == nil && n >= seq
	}, 10*time.Second, 2*time.Millisecond)
}

// events collects every state event from now on.
type events struct {
	mu  sync.Mutex
	evs []recvEvent
}

type recvEvent struct {
	subject string
	ev      state.Event
	raw     map[string]any
}

func (e *env) watchEvents() *events {
	e.t.Helper()
	w := &events{}
	sub, err := e.nc.Subscribe(subjects.StateEvtWildcard, func(m *nats.Msg) {
		var ev state.Event
		var raw map[string]any
		_ = json.Unmarshal(m.Data, &ev)
		_ = json.Unmarshal(m.Data, &raw)
		w.mu.Lock()
		w.evs = append(w.evs, recvEvent{subject: m.Subject, ev: ev, raw: raw})
		w.mu.Unlock()
	})
	require.NoError(e.t, err)
	require.NoError(e.t, e.nc.Flush())
	e.t.Cleanup(func() { _ = sub.Unsubscribe() })
	return w
}

func (w *events) all() []recvEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]recvEvent(nil), w.evs...)
}

// waitSeq waits for the non-expiry event of seq and returns it.
func (w *events) waitSeq(t *testing.T, seq uint64) recvEvent {
	t.Helper()
	var got recvEvent
	require.Eventually(t, func() bool {
		for _, e := range w.all() {
			if e.ev.Seq == seq && e.ev.Op != state.OpExpire {
				got = e
				return true
			}
		}
		return false
	}, 5*time.Second, time.Millisecond, "no event for seq %d", seq)
	return got
}

// auditEvent is an audit message the service published.
type auditEvent struct {
	subject string
	msgID   string
	body    map[string]any
}

// audits reads every audit event the state service published to
// CODI_AUDIT, the entries of bulk messages one by one.
func (e *env) audits() []auditEvent {
	e.t.Helper()
	ctx := context.Background()
	cons, err := e.js.OrderedConsumer(ctx, bus.StreamAudit, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"codi.audit.log.codi-state.>"},
	})
	require.NoError(e.t, err)
	info, err := cons.Info(ctx)
	require.NoError(e.t, err)
	n := int(info.NumPending)
	var out []auditEvent
	for len(out) < n {
		batch, err := cons.Fetch(n-len(out), jetstream.FetchMaxWait(2*time.Second))
		require.NoError(e.t, err)
		got := 0
		for m := range batch.Messages() {
			got++
			entries := []audit.BulkEntry{{Subject: m.Subject(), MsgID: m.Headers().Get(jetstream.MsgIDHeader), Data: m.Data()}}
			if m.Headers().Get(audit.BulkHeader) != "" {
				entries, err = audit.ParseBulk(state.Actor, m.Data())
				require.NoError(e.t, err)
			}
			for _, en := range entries {
				var body map[string]any
				require.NoError(e.t, json.Unmarshal(en.Data, &body))
				out = append(out, auditEvent{subject: en.Subject, msgID: en.MsgID, body: body})
			}
		}
		require.NoError(e.t, batch.Error())
		if got == 0 {
			break
		}
	}
	return out
}

// auditByID indexes audit events by Nats-Msg-Id, failing on duplicates.
func (e *env) auditByID() map[string]auditEvent {
	e.t.Helper()
	out := map[string]auditEvent{}
	for _, a := range e.audits() {
		_, dup := out[a.msgID]
		require.False(e.t, dup, "audit event %s recorded twice", a.msgID)
		out[a.msgID] = a
	}
	return out
}

func fastConfig() state.Config {
	return state.Config{
		LeaseSweepInterval: 50 * time.Millisecond,
		OutboxIdleFlush:    50 * time.Millisecond,
		MaxGetWait:         2 * time.Second,
		ShutdownTimeout:    5 * time.Second,
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// mustField returns the raw JSON of one top-level field of data.
func mustField(t *testing.T, data []byte, name string) json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(data, &m), string(data))
	v, ok := m[name]
	require.True(t, ok, "no field %q in %s", name, data)
	return v
}

// generation is the generation token the service derives from CODI_STATE as
// it is now (its creation time), for a store that has applied nothing
// before it.
func (e *env) generation() string {
	e.t.Helper()
	s, err := e.js.Stream(context.Background(), bus.StreamState)
	require.NoError(e.t, err)
	return strconv.FormatInt(s.CachedInfo().Created.UnixNano(), 10)
}

// cmdID is the audit Nats-Msg-Id of the command at seq in the current
// stream generation.
func (e *env) cmdID(seq uint64) string {
	return "state-" + e.generation() + "-" + strconv.FormatUint(seq, 10)
}
