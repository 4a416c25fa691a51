package audit

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/bus/bustest"
	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/kvtest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// harness is a real bus, a real bbolt store, the service on its own TCP
// connection and a client on another.
type harness struct {
	t      testing.TB
	bus    *bus.Bus
	store  kv.Store
	cfg    Config
	log    zerolog.Logger
	svc    *Service
	client *Client
	nc     *nats.Conn // the client's connection
	js     jetstream.JetStream
	cancel context.CancelFunc
	done   chan error
}

func newHarness(t testing.TB, cfg Config, busCfg ...bus.Config) *harness {
	t.Helper()
	return newHarnessWith(t, cfg, kvtest.NewBolt(t), bustest.Logger(t), busCfg...)
}

// newHarnessWith is newHarness with the service's store and logger.
func newHarnessWith(t testing.TB, cfg Config, store kv.Store, log zerolog.Logger, busCfg ...bus.Config) *harness {
	t.Helper()
	h := &harness{t: t, bus: bustest.Run(t, busCfg...), store: store, cfg: cfg, log: log}
	h.nc = bustest.Connect(t, h.bus)
	var err error
	h.client, err = NewClient(h.nc)
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.client.Close() })
	h.js, err = jetstream.New(h.nc)
	require.NoError(t, err)
	h.start()
	return h
}

// start runs a new Service on the harness's store and waits until it is
// ready. The test's cleanup stops it.
func (h *harness) start() {
	h.t.Helper()
	nc := bustest.Connect(h.t, h.bus)
	svc, err := New(h.cfg, nc, h.store, h.log)
	require.NoError(h.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	select {
	case <-svc.Ready():
	case err := <-done:
		cancel()
		require.NoError(h.t, err, "Run returned before it was ready")
	case <-time.After(10 * time.Second):
		cancel()
		h.t.Fatal("service not ready after 10s")
	}
	h.svc, h.cancel, h.done = svc, cancel, done
	h.t.Cleanup(func() { h.stop() })
}

// stop cancels the running service and returns Run's error.
func (h *harness) stop() error {
	if h.cancel == nil {
		return nil
	}
	h.cancel()
	h.cancel = nil
	select {
	case err := <-h.done:
		return err
	case <-time.After(10 * time.Second):
		h.t.Error("Run did not return 10s after cancel")
		return nil
	}
}

// wholeLog reads the whole log, which must hold n records chained from
// seq 1.
func (h *harness) wholeLog(n int) []Record {
	h.t.Helper()
	recs := h.all(Query{})
	require.Len(h.t, recs, n)
	assertChain(h.t, recs, 1, GenesisPrev)
	return recs
}

// runErr waits for Run to stop on its own and returns its error.
func (h *harness) runErr() error {
	h.t.Helper()
	select {
	case err := <-h.done:
		h.cancel = nil
		return err
	case <-time.After(20 * time.Second):
		h.t.Fatal("Run still running after 20s")
		return nil
	}
}

func (h *harness) restart() {
	h.t.Helper()
	require.NoError(h.t, h.stop())
	h.start()
}

// logN publishes n JSON events from source/category and returns their
// PubAcks.
func (h *harness) logN(n int, source, category string) []*jetstream.PubAck {
	h.t.Helper()
	acks := make([]*jetstream.PubAck, n)
	for i := range acks {
		ack, err := h.client.Log(context.Background(), source, category, fmt.Appendf(nil, `{"i":%d}`, i))
		require.NoError(h.t, err)
		acks[i] = ack
	}
	return acks
}

// waitCommitted waits until the service has committed up to streamSeq.
func (h *harness) waitCommitted(streamSeq uint64) {
	h.t.Helper()
	require.Eventually(h.t, func() bool { return h.svc.Status().StreamSeq >= streamSeq },
		10*time.Second, time.Millisecond, "watermark did not reach %d: %+v", streamSeq, h.svc.Status())
}

// all reads every record q selects, page by page.
func (h *harness) all(q Query) []Record {
	h.t.Helper()
	var out []Record
	for {
		res, err := h.client.Query(context.Background(), q)
		require.NoError(h.t, err)
		out = append(out, res.Records...)
		if res.NextAfterSeq == 0 {
			return out
		}
		require.Greater(h.t, res.NextAfterSeq, q.AfterSeq)
		q.AfterSeq = res.NextAfterSeq
	}
}

// allDesc reads every record a newest-first q selects, page by page.
func (h *harness) allDesc(q Query) []Record {
	h.t.Helper()
	var out []Record
	for {
		res, err := h.client.Query(context.Background(), q)
		require.NoError(h.t, err)
		out = append(out, res.Records...)
		require.Zero(h.t, res.NextAfterSeq)
		if res.NextBeforeSeq == 0 {
			return out
		}
		if q.BeforeSeq != 0 {
			require.Less(h.t, res.NextBeforeSeq, q.BeforeSeq)
		}
		q.BeforeSeq = res.NextBeforeSeq
	}
}

func (h *harness) verify(req VerifyRequest) VerifyResult {
	h.t.Helper()
	res, err := h.client.Verify(context.Background(), req)
	require.NoError(h.t, err)
	return res
}

// assertChain checks that recs are a dense, correctly hashed chain.
func assertChain(t testing.TB, recs []Record, firstSeq uint64, firstPrev string) {
	t.Helper()
	prev := firstPrev
	for i, r := range recs {
		if !assert.Equal(t, firstSeq+uint64(i), r.Seq, "seq at %d", i) {
			return
		}
		gotPrev, hash, ok, err := CheckRecordHash(r.Raw)
		require.NoError(t, err)
		assert.True(t, ok, "record %d hash", r.Seq)
		assert.Equal(t, prev, gotPrev, "record %d prev", r.Seq)
		assert.Equal(t, prev, r.Prev, "record %d decoded prev", r.Seq)
		assert.Equal(t, hash, r.Hash)
		prev = r.Hash
	}
}

// retentionIdle reports whether no retention run is in progress or waiting
// for its event to be appended. It reads the store, so it sees
// what the writer has committed.
func (s *Service) retentionIdle() bool {
	idle := true
	_ = s.store.View(context.Background(), func(tx kv.ReadTxn) error {
		v, err := getOptional(tx, keyRetention)
		idle = err == nil && v == nil
		return nil
	})
	return idle
}
