package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/bus/bustest"
	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/boltkv"
	"github.com/codi2/codi2/internal/kv/kvtest"
	"github.com/codi2/codi2/internal/proctest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestService_Run_AppendsChain(t *testing.T) {
	h := newHarness(t, Config{})
	acks := h.logN(50, "agent-1", "file")
	h.waitCommitted(acks[len(acks)-1].Sequence)

	recs := h.wholeLog(50)
	assert.Equal(t, "agent-1", recs[0].Source)
	assert.Equal(t, "file", recs[0].Category)
	assert.Equal(t, "codi.audit.log.agent-1.file", recs[0].Subject)
	assert.JSONEq(t, `{"i":0}`, string(recs[0].Data))
	assert.Empty(t, recs[0].MsgID, "no Nats-Msg-Id unless asked for")

	res := h.verify(VerifyRequest{})
	assert.True(t, res.OK, "%+v", res)
	assert.Equal(t, uint64(50), res.Count)
	assert.Equal(t, recs[49].Hash, res.Head)

	st, err := h.client.Status(context.Background())
	require.NoError(t, err)
	assert.Equal(t, Status{StreamSeq: 50, Seq: 50, FirstSeq: 1, Count: 50, Bytes: st.Bytes, Head: recs[49].Hash}, st)
	var size int
	for _, r := range recs {
		size += len(r.Raw)
	}
	assert.Equal(t, uint64(size), st.Bytes)
}

// TestService_Run_StreamOrder publishes from five concurrent publishers and
// checks that the log holds every event once, in stream order.
func TestService_Run_StreamOrder(t *testing.T) {
	h := newHarness(t, Config{MaxBatchEvents: 7, MaxBatchWait: time.Millisecond}) // many batches
	const publishers, each = 5, 60
	var (
		mu    sync.Mutex
		seqOf = map[string]uint64{}
		wg    sync.WaitGroup
		errs  = make(chan error, publishers)
	)
	for p := range publishers {
		wg.Go(func() {
			for i := range each {
				id := fmt.Sprintf("p%d-%d", p, i)
				ack, err := h.client.Log(context.Background(), fmt.Sprintf("agent-%d", p), "op", []byte(`{}`), WithMsgID(id))
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				seqOf[id] = ack.Sequence
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	h.waitCommitted(publishers * each)

	recs := h.all(Query{Limit: 100})
	require.Len(t, recs, publishers*each)
	assertChain(t, recs, 1, GenesisPrev)
	seen := map[string]bool{}
	var last uint64
	for _, r := range recs {
		assert.False(t, seen[r.MsgID], "%s twice", r.MsgID)
		seen[r.MsgID] = true
		assert.Greater(t, seqOf[r.MsgID], last, "record %d out of stream order", r.Seq)
		last = seqOf[r.MsgID]
		assert.False(t, r.Time.Before(recs[0].Time))
	}
}

func TestService_Run_PayloadEncodings(t *testing.T) {
	h := newHarness(t, Config{})
	tests := []struct {
		name     string
		payload  []byte
		wantData string // for JSON payloads: the stored data
	}{
		{name: "binary", payload: []byte{0xff, 0x00, 0x01, '\n', 0xfe}},
		{name: "empty", payload: []byte{}},
		{name: "text", payload: []byte("not json {")},
		{name: "invalid UTF-8 inside JSON", payload: []byte("\"\xff\"")},
		{name: "JSON with whitespace", payload: []byte("  {\"a\" : [1, 2],\n \"b\":\"x y\" }\n"), wantData: `{"a":[1,2],"b":"x y"}`},
		{name: "JSON kept as sent", payload: []byte(`{"b":1,"a":1.50,"h":"<&>","u":"\u00e9","b":2}`), wantData: `{"b":1,"a":1.50,"h":"<&>","u":"\u00e9","b":2}`},
		{name: "JSON scalar", payload: []byte(`42`), wantData: `42`},
	}
	ids := map[string]string{}
	var last uint64
	for _, tt := range tests {
		ack, err := h.client.Log(context.Background(), "agent-1", "blob", tt.payload, WithMsgID(tt.name))
		require.NoError(t, err)
		ids[tt.name] = tt.name
		last = ack.Sequence
	}
	h.waitCommitted(last)
	byID := map[string]Record{}
	for _, r := range h.all(Query{}) {
		byID[r.MsgID] = r
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, ok := byID[tt.name]
			require.True(t, ok)
			got, err := r.Payload()
			require.NoError(t, err)
			if tt.wantData == "" {
				assert.Equal(t, EncodingBase64, r.Encoding)
				assert.Equal(t, tt.payload, got, "byte-exact")
			} else {
				assert.Empty(t, r.Encoding)
				assert.Equal(t, tt.wantData, string(r.Data))
				assert.Equal(t, tt.wantData, string(got))
			}
		})
	}
	assert.True(t, h.verify(VerifyRequest{}).OK)
}

func TestService_Run_LargePayloads(t *testing.T) {
	// Verify reads records split over several values in views of one
	// record, and still joins their parts.
	h := newHarness(t, Config{VerifyBatch: 1})
	big := make([]byte, 300_000) // > 3 kv values once base64-encoded
	for i := range big {
		big[i] = byte(i * 7)
	}
	// Near the 1 MiB max payload: its record does not fit in one reply.
	huge := make([]byte, 1<<20-4096)
	for i := range huge {
		huge[i] = byte(i * 13)
	}
	bigJSON := []byte(`{"text":"` + string(slices.Repeat([]byte("abcdefgh"), 40_000)) + `"}`)
	h.logN(2, "agent-1", "small")
	var last uint64
	for i, p := range [][]byte{big, huge, bigJSON} {
		ack, err := h.client.Log(context.Background(), "agent-1", "large", p, WithMsgID(fmt.Sprint("large-", i)))
		require.NoError(t, err)
		last = ack.Sequence
	}
	h.logN(2, "agent-1", "small")
	h.waitCommitted(last + 2)

	recs := h.wholeLog(7)
	for i, want := range [][]byte{big, huge, bigJSON} {
		r := recs[2+i]
		got, err := r.Payload()
		require.NoError(t, err)
		assert.Equal(t, want, got, "payload %d stored whole", i)
	}
	large := h.all(Query{Category: "large"})
	require.Len(t, large, 3)
	assert.Equal(t, recs[3].Raw, large[1].Raw)
	// Newest first, the record in parts comes whole between the others.
	for _, q := range []Query{{Category: "large", NewestFirst: true}, {NewestFirst: true, Limit: 2}} {
		desc := h.allDesc(q)
		var got []uint64
		for _, r := range desc {
			got = append(got, r.Seq)
			assert.Equal(t, recs[r.Seq-1].Raw, r.Raw)
		}
		if q.Category == "large" {
			assert.Equal(t, []uint64{5, 4, 3}, got)
		} else {
			assert.Equal(t, []uint64{7, 6, 5, 4, 3, 2, 1}, got)
		}
	}
	res := h.verify(VerifyRequest{})
	assert.True(t, res.OK, "%+v", res)
	assert.Equal(t, uint64(7), res.Count)
}

// TestService_Run_MsgIDDedupe republishes a Nats-Msg-Id after JetStream's
// duplicate window has passed, as the state service may after a crash: the
// stream stores it twice, the log once.
func TestService_Run_MsgIDDedupe(t *testing.T) {
	h := newHarness(t, Config{}, bus.Config{DuplicateWindow: 100 * time.Millisecond})
	first, err := h.client.Log(context.Background(), "codi-state", "state", []byte(`{"seq":7}`), WithMsgID("state-7"))
	require.NoError(t, err)
	h.logN(3, "agent-1", "x")
	var again *jetstream.PubAck
	require.Eventually(t, func() bool {
		ack, err := h.client.Log(context.Background(), "codi-state", "state", []byte(`{"seq":7}`), WithMsgID("state-7"))
		if err != nil || ack.Duplicate {
			return false
		}
		again = ack
		return true
	}, 5*time.Second, 20*time.Millisecond, "the duplicate window never passed")
	require.Greater(t, again.Sequence, first.Sequence, "stored twice in the stream")
	h.waitCommitted(again.Sequence)

	recs := h.all(Query{Source: "codi-state"})
	require.Len(t, recs, 1)
	assert.Equal(t, "state-7", recs[0].MsgID)
	assert.Equal(t, uint64(1), recs[0].Seq)
	st := h.svc.Status()
	assert.Equal(t, uint64(4), st.Seq)
	assert.Equal(t, again.Sequence, st.StreamSeq)
	assert.True(t, h.verify(VerifyRequest{}).OK)
}

// TestService_Run_RedeliveryAfterRestart replays the whole stream into a
// restarted service, as after a crash between commit and ack: nothing is
// appended twice.
func TestService_Run_RedeliveryAfterRestart(t *testing.T) {
	h := newHarness(t, Config{})
	acks := h.logN(20, "agent-1", "x")
	h.waitCommitted(acks[19].Sequence)
	before := h.all(Query{})
	require.NoError(t, h.stop())

	// A new consumer starts from the first stream message again.
	require.NoError(t, h.js.DeleteConsumer(context.Background(), bus.StreamAudit, ConsumerName))
	h.start()
	cons, err := h.js.Consumer(context.Background(), bus.StreamAudit, ConsumerName)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		info, err := cons.Info(context.Background())
		return err == nil && info.AckFloor.Stream >= 20 && info.NumAckPending == 0
	}, 10*time.Second, 5*time.Millisecond, "redelivered events not acked")

	more := h.logN(1, "agent-1", "x")
	h.waitCommitted(more[0].Sequence)
	after := h.all(Query{})
	require.Len(t, after, 21)
	for i := range before {
		assert.Equal(t, before[i].Raw, after[i].Raw)
	}
	assertChain(t, after, 1, GenesisPrev)
}

// TestService_Run_FillsHoles starts the service on a consumer whose
// deliveries have a hole (acked elsewhere, as if a delivery was lost after
// the server counted it; with AckAll the ack of 4 covers 1-4) and a message
// deleted from the stream: the hole is read from the stream, the deleted
// message is recorded as lost (issue 11, input 5).
func TestService_Run_FillsHoles(t *testing.T) {
	// One event per transaction: filled events and deliveries split chunks.
	h := newHarness(t, Config{MaxBatchBytes: 600})
	require.NoError(t, h.stop())
	acks := h.logN(10, "agent-1", "x")
	ctx := context.Background()
	cons, err := h.js.Consumer(ctx, bus.StreamAudit, ConsumerName)
	require.NoError(t, err)
	batch, err := cons.Fetch(5, jetstream.FetchMaxWait(time.Second))
	require.NoError(t, err)
	for m := range batch.Messages() {
		md, err := m.Metadata()
		require.NoError(t, err)
		if md.Sequence.Stream == 3 || md.Sequence.Stream == 4 {
			require.NoError(t, m.DoubleAck(ctx))
		} else {
			require.NoError(t, m.Nak())
		}
	}
	stream, err := h.js.Stream(ctx, bus.StreamAudit)
	require.NoError(t, err)
	require.NoError(t, stream.DeleteMsg(ctx, 6))

	h.start()
	h.waitCommitted(acks[9].Sequence)
	recs := h.wholeLog(10)
	var got []string
	for _, r := range recs {
		got = append(got, string(r.Data))
	}
	assert.Equal(t, []string{`{"i":0}`, `{"i":1}`, `{"i":2}`, `{"i":3}`, `{"i":4}`,
		`{"stream":"CODI_AUDIT","first_seq":6,"last_seq":6,"count":1}`, `{"i":6}`, `{"i":7}`, `{"i":8}`, `{"i":9}`}, got)
	assert.Equal(t, []string{LostSource, LostCategory}, []string{recs[5].Source, recs[5].Category})
}

// TestService_Run_Shutdown cancels the service under load: Run returns nil,
// and after a restart every acknowledged event is in the log once.
func TestService_Run_Shutdown(t *testing.T) {
	h := newHarness(t, Config{})
	acks := h.logN(100, "agent-1", "x")
	require.NoError(t, h.stop())
	h.start()
	h.waitCommitted(acks[99].Sequence)
	h.wholeLog(100)
}

func TestService_Run_Twice(t *testing.T) {
	h := newHarness(t, Config{})
	assert.ErrorIs(t, h.svc.Run(context.Background()), ErrRunning)
}

func TestService_Run_StreamTooLarge(t *testing.T) {
	b := bustest.Run(t, bus.Config{MaxPayload: 8 << 20})
	svc, err := New(Config{}, bustest.Connect(t, b), kvtest.NewBolt(t), bustest.Logger(t))
	require.NoError(t, err)
	assert.ErrorIs(t, svc.Run(context.Background()), ErrConfig)
}

func TestNew_Errors(t *testing.T) {
	b := bustest.Run(t)
	nc := bustest.Connect(t, b)
	store := kvtest.NewBolt(t)
	tests := []struct {
		name  string
		cfg   Config
		nc    *nats.Conn
		store kv.Store
	}{
		{name: "nil conn", store: store},
		{name: "nil store", nc: nc},
		{name: "bad config", nc: nc, store: store, cfg: Config{MaxBatchEvents: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg, tt.nc, tt.store, bustest.Logger(t))
			assert.ErrorIs(t, err, ErrConfig)
		})
	}
}

func TestService_Run_MicroService(t *testing.T) {
	h := newHarness(t, Config{})
	subj, err := micro.ControlSubject(micro.InfoVerb, ServiceName, "")
	require.NoError(t, err)
	resp, err := h.nc.Request(subj, nil, 5*time.Second)
	require.NoError(t, err)
	assert.Contains(t, string(resp.Data), `"name":"codi-audit"`)
	for _, s := range []string{"codi.audit.query", "codi.audit.verify", "codi.audit.status"} {
		assert.Contains(t, string(resp.Data), `"subject":"`+s+`"`)
	}
}

func TestService_Run_StoreClosed(t *testing.T) {
	h := newHarness(t, Config{})
	require.NoError(t, h.store.Close())
	h.logN(1, "agent-1", "x")
	assert.ErrorIs(t, h.runErr(), kv.ErrClosed)
}

// TestService_Run_NonContractSubjects records events whose subjects the
// stream takes but the contract does not allow: nothing with a PubAck is
// dropped.
func TestService_Run_NonContractSubjects(t *testing.T) {
	h := newHarness(t, Config{})
	long := strings.Repeat("s", 300) // longer than a token may be
	var last uint64
	for _, subj := range []string{"codi.audit.log.only-source", "codi.audit.log." + long + ".cat.more", "codi.audit.log.a.b.c.d.e.f"} {
		ack, err := h.js.Publish(context.Background(), subj, []byte(`{}`))
		require.NoError(t, err)
		last = ack.Sequence
	}
	longID := strings.Repeat("i", 2000)
	ack, err := h.client.Log(context.Background(), "agent-1", "x", nil, WithMsgID(longID))
	require.NoError(t, err)
	h.waitCommitted(max(last, ack.Sequence))
	recs := h.all(Query{})
	require.Len(t, recs, 4)
	assert.Equal(t, []string{"only-source", ""}, []string{recs[0].Source, recs[0].Category})
	assert.Equal(t, []string{long, "cat"}, []string{recs[1].Source, recs[1].Category})
	assert.Equal(t, []string{"a", "b"}, []string{recs[2].Source, recs[2].Category})
	assert.Equal(t, longID, recs[3].MsgID)
	assert.Len(t, h.all(Query{Source: long}), 1)
	assert.True(t, h.verify(VerifyRequest{}).OK)
}

// TestService_Run_RetriesFailedCommit holds the store's single writer so
// that the service's commits time out, then lets go: the batch is retried,
// not acked meanwhile, and committed once.
func TestService_Run_RetriesFailedCommit(t *testing.T) {
	store, err := boltkv.Open(filepath.Join(t.TempDir(), "audit.db"), boltkv.Options{TxnTimeout: 50 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	var logs proctest.Buffer
	h := newHarnessWith(t, Config{}, store, zerolog.New(&logs))

	release := make(chan struct{})
	held := make(chan struct{})
	go func() {
		_ = store.Update(context.Background(), func(kv.Txn) error {
			close(held)
			<-release
			return nil
		})
	}()
	<-held
	acks := h.logN(3, "agent-1", "x")
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), `"message":"append"`) },
		10*time.Second, time.Millisecond, "no failed commit")
	assert.Zero(t, h.svc.Status().StreamSeq)
	close(release)
	h.waitCommitted(acks[2].Sequence)
	h.wholeLog(3)
}

// TestService_Run_ShutdownUnderLoad stops the service while events stream
// in: whatever it had is committed and acked, the rest is delivered to the
// next run, and every event is in the log once.
func TestService_Run_ShutdownUnderLoad(t *testing.T) {
	h := newHarness(t, Config{MaxBatchEvents: 50})
	const n = 3000
	for i := range n {
		_, err := h.js.PublishAsync("codi.audit.log.agent-1.x", []byte(`{}`), jetstream.WithMsgID(fmt.Sprint("e-", i)))
		require.NoError(t, err)
		if i == n/3 {
			require.Eventually(t, func() bool { return h.svc.Status().StreamSeq > 0 }, 10*time.Second, time.Millisecond)
			require.NoError(t, h.stop())
		}
	}
	select {
	case <-h.js.PublishAsyncComplete():
	case <-time.After(10 * time.Second):
		t.Fatal("async publishes not acked")
	}
	h.start()
	h.waitCommitted(n)
	recs := h.all(Query{Limit: MaxQueryLimit})
	require.Len(t, recs, n)
	assertChain(t, recs, 1, GenesisPrev)
	seen := map[string]bool{}
	for _, r := range recs {
		assert.False(t, seen[r.MsgID])
		seen[r.MsgID] = true
	}
}

// TestService_Run_PurgedStream starts a fresh log on a stream whose first
// messages were purged by an operator: the log records them as lost, then
// goes on with the stream's first message.
func TestService_Run_PurgedStream(t *testing.T) {
	h := newHarness(t, Config{})
	require.NoError(t, h.stop())
	h.logN(5, "agent-1", "gone")
	stream, err := h.js.Stream(context.Background(), bus.StreamAudit)
	require.NoError(t, err)
	require.NoError(t, stream.Purge(context.Background()))
	acks := h.logN(3, "agent-1", "kept")
	h.start()
	h.waitCommitted(acks[2].Sequence)
	recs := h.all(Query{})
	require.Len(t, recs, 4)
	assert.Equal(t, LostCategory, recs[0].Category)
	assert.JSONEq(t, `{"stream":"CODI_AUDIT","first_seq":1,"last_seq":5,"count":5}`, string(recs[0].Data))
	assert.Equal(t, "kept", recs[1].Category)
	assertChain(t, recs, 1, GenesisPrev)
}

// TestService_Run_CorruptMeta refuses to start on a store whose meta keys
// do not decode, rather than guess.
func TestService_Run_CorruptMeta(t *testing.T) {
	tests := []struct {
		name string
		key  []byte
	}{
		{name: "applied", key: keyApplied},
		{name: "applied time", key: keyAppliedAt},
		{name: "head", key: keyHead},
		{name: "anchor", key: keyAnchor},
		{name: "retention", key: keyRetention},
	}
	b := bustest.Run(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := kvtest.NewBolt(t)
			require.NoError(t, store.Update(context.Background(), func(tx kv.Txn) error { return tx.Set(tt.key, []byte("{x")) }))
			svc, err := New(Config{}, bustest.Connect(t, b), store, bustest.Logger(t))
			require.NoError(t, err)
			assert.Error(t, svc.Run(context.Background()))
		})
	}
}

// A stop that comes while the service is still starting is a clean stop.
func TestService_Run_CancelledWhileStarting(t *testing.T) {
	b := bustest.Run(t)
	nc := bustest.Connect(t, b)
	svc, err := New(Config{}, nc, kvtest.NewBolt(t), bustest.Logger(t))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.NoError(t, svc.Run(ctx))
}

// TestService_Run_ReplacesExplicitAckConsumer starts the service on a
// codi-audit consumer with per-message acks, as an earlier version made it,
// that has not acked what the store already holds: the service replaces it
// with one starting after the store's watermark, and the log has every event
// once.
func TestService_Run_ReplacesExplicitAckConsumer(t *testing.T) {
	h := newHarness(t, Config{})
	first := h.logN(5, "agent-1", "x")
	h.waitCommitted(first[4].Sequence)
	require.NoError(t, h.stop())
	ctx := context.Background()
	require.NoError(t, h.js.DeleteConsumer(ctx, bus.StreamAudit, ConsumerName))
	_, err := h.js.CreateOrUpdateConsumer(ctx, bus.StreamAudit, jetstream.ConsumerConfig{
		Durable: ConsumerName, AckPolicy: jetstream.AckExplicitPolicy, DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	require.NoError(t, err)
	more := h.logN(5, "agent-1", "x")

	h.start()
	h.waitCommitted(more[4].Sequence)
	h.wholeLog(10) // nothing redelivered twice, nothing skipped
	cons, err := h.js.Consumer(ctx, bus.StreamAudit, ConsumerName)
	require.NoError(t, err)
	assert.Equal(t, jetstream.AckAllPolicy, cons.CachedInfo().Config.AckPolicy)
}

// TestService_Run_ConsumerDeleted deletes codi-audit under a running
// service, as an operator's `nats consumer rm` would: the service notices,
// recreates it after its watermark and goes on appending, each event once.
func TestService_Run_ConsumerDeleted(t *testing.T) {
	h := newHarness(t, Config{})
	acks := h.logN(5, "agent-1", "before")
	h.waitCommitted(acks[4].Sequence)

	require.NoError(t, h.js.DeleteConsumer(context.Background(), bus.StreamAudit, ConsumerName))
	more := h.logN(5, "agent-1", "after")
	h.waitCommitted(more[4].Sequence)
	recs := h.wholeLog(10)
	for i, r := range recs {
		assert.Equal(t, []string{"before", "after"}[i/5], r.Category, "record %d", r.Seq)
	}
	// The new consumer starts after the watermark. (Its delivered count may
	// go on from the old one's: a consumer created right after the delete
	// of one of the same name can pick up its state files.)
	cons, err := h.js.Consumer(context.Background(), bus.StreamAudit, ConsumerName)
	require.NoError(t, err)
	info, err := cons.Info(context.Background())
	require.NoError(t, err)
	assert.Equal(t, jetstream.DeliverByStartSequencePolicy, info.Config.DeliverPolicy)
	assert.Equal(t, uint64(6), info.Config.OptStartSeq)
	assert.Zero(t, info.NumRedelivered)
}

// A restart finds the consumer made again by sequence (as after an
// operator deleted it) and keeps it: no replacement. It used to be deleted
// and made again at every start, with a warning, because a consumer's start
// cannot be updated.
func TestService_Start_KeepsConsumerStartingBySequence(t *testing.T) {
	var logs proctest.Buffer
	h := newHarnessWith(t, Config{}, kvtest.NewBolt(t), zerolog.New(&logs).Level(zerolog.WarnLevel))
	acks := h.logN(3, "agent-1", "x")
	h.waitCommitted(acks[2].Sequence)
	require.NoError(t, h.stop())
	ctx := context.Background()
	require.NoError(t, h.js.DeleteConsumer(ctx, bus.StreamAudit, ConsumerName))
	// nats-server removes a deleted consumer's files in the background; a
	// consumer of the same name made before that loses its own.
	dir := filepath.Join(h.bus.Config().DataDir, "jetstream", "$G", "streams", bus.StreamAudit, "obs", ConsumerName)
	require.Eventually(t, func() bool { _, err := os.Stat(dir); return os.IsNotExist(err) }, 10*time.Second, 5*time.Millisecond)
	cc := jetstream.ConsumerConfig{Durable: ConsumerName, AckPolicy: jetstream.AckAllPolicy,
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: acks[2].Sequence + 1}
	cons, err := h.js.CreateConsumer(ctx, bus.StreamAudit, cc)
	require.NoError(t, err)
	created := cons.CachedInfo().Created
	h.start()
	last := h.logN(1, "agent-1", "z")
	h.waitCommitted(last[0].Sequence)
	assert.Len(t, h.wholeLog(4), 4)
	cons, err = h.js.Consumer(ctx, bus.StreamAudit, ConsumerName)
	require.NoError(t, err)
	assert.Equal(t, created, cons.CachedInfo().Created, "the same consumer")
	assert.NotContains(t, logs.String(), "replacing the consumer")
}

// TestService_Run_StreamDeleted deletes CODI_AUDIT under a running service
// (issue 11, input 4): the service creates it again with the configuration
// it had, records in the log that the stream was recreated and what it
// lost (nothing was pending here), and appends the new stream's events.
func TestService_Run_StreamDeleted(t *testing.T) {
	h := newHarness(t, Config{})
	acks := h.logN(3, "agent-1", "x")
	h.waitCommitted(acks[2].Sequence)
	ctx := context.Background()
	old, err := h.js.Stream(ctx, bus.StreamAudit)
	require.NoError(t, err)
	require.NoError(t, h.js.DeleteStream(ctx, bus.StreamAudit))

	var stream jetstream.Stream
	require.Eventually(t, func() bool {
		stream, err = h.js.Stream(ctx, bus.StreamAudit)
		return err == nil
	}, 15*time.Second, 20*time.Millisecond, "the service recreates the stream")
	assert.Equal(t, old.CachedInfo().Config.Subjects, stream.CachedInfo().Config.Subjects)
	require.Eventually(t, func() bool { return h.svc.Problem() == nil && h.svc.Status().Seq == 4 }, 10*time.Second, 10*time.Millisecond)
	assert.Zero(t, h.svc.Status().StreamSeq, "the watermark follows the new stream")

	more := h.logN(2, "agent-1", "y")
	require.Equal(t, uint64(2), more[1].Sequence)
	h.waitCommitted(more[1].Sequence)
	recs := h.wholeLog(6)
	assert.Equal(t, LostCategory, recs[3].Category)
	assert.JSONEq(t, `{"stream":"CODI_AUDIT","first_seq":4,"last_seq":3,"count":0,"reason":"stream recreated"}`, string(recs[3].Data))
	assert.Equal(t, "y", recs[5].Category)
	assert.True(t, h.verify(VerifyRequest{}).OK)
}

// TestService_Run_ConsumerRecreateRetried deletes codi-audit while the
// stream cannot take another consumer: the service retries recreating it
// until it can, then goes on appending.
func TestService_Run_ConsumerRecreateRetried(t *testing.T) {
	h := newHarness(t, Config{})
	acks := h.logN(3, "agent-1", "before")
	h.waitCommitted(acks[2].Sequence)

	squat := bustest.SquatConsumer(t, h.js, bus.StreamAudit, ConsumerName)
	more := h.logN(3, "agent-1", "after")
	// The service cannot get its consumer back while the squatter holds
	// the only place.
	squat.WaitRefused(3)
	assert.Equal(t, acks[2].Sequence, h.svc.Status().StreamSeq)
	squat.Release()
	h.waitCommitted(more[2].Sequence)
	h.wholeLog(6)
}

// TestService_Run_StopWhileRecreating stops the service while it waits to
// recreate its consumer: Run returns at once, without an error.
func TestService_Run_StopWhileRecreating(t *testing.T) {
	h := newHarness(t, Config{})
	acks := h.logN(3, "agent-1", "x")
	h.waitCommitted(acks[2].Sequence)
	bustest.SquatConsumer(t, h.js, bus.StreamAudit, ConsumerName).WaitRefused(1)
	start := time.Now()
	require.NoError(t, h.stop())
	assert.Less(t, time.Since(start), 5*time.Second)
	assert.Equal(t, acks[2].Sequence, h.svc.Status().StreamSeq)
}

// TestService_Run_StreamRecreated starts the service on a CODI_AUDIT that
// was deleted and created again while it was stopped, so that its sequence
// numbers start over, and has grown past the log's watermark: the new
// stream's events are appended after the old ones, none taken for a
// redelivery and skipped.
func TestService_Run_StreamRecreated(t *testing.T) {
	h := newHarness(t, Config{})
	ctx := context.Background()
	acks := h.logN(5, "agent-1", "old")
	h.waitCommitted(acks[4].Sequence)
	require.NoError(t, h.stop())

	require.NoError(t, h.js.DeleteStream(ctx, bus.StreamAudit))
	_, err := h.js.CreateStream(ctx, bus.StreamConfigs(h.bus.Config())[2])
	require.NoError(t, err)
	// More events than the watermark, stored before the service is back:
	// the new stream has grown past it.
	early := h.logN(7, "agent-1", "new")
	require.Equal(t, uint64(7), early[6].Sequence)
	h.start()
	late := h.logN(2, "agent-1", "new")
	require.Eventually(t, func() bool { return h.svc.Status().Seq == 14 }, 10*time.Second, time.Millisecond,
		"log did not reach 14 records: %+v", h.svc.Status())
	recs := h.all(Query{})
	require.Len(t, recs, 14)
	for i, r := range recs {
		want := "old"
		if i >= 5 {
			want = "new"
		}
		assert.Equal(t, want, r.Category, "record %d", r.Seq)
	}
	assertChain(t, recs, 1, GenesisPrev)
	// The watermark speaks of the new stream's sequence numbers.
	assert.Equal(t, late[1].Sequence, h.svc.Status().StreamSeq)
}

// TestService_Run_StreamLostItsTail starts the service on a stream that
// lost messages the log had committed (what a power loss can do to a
// stream that is not fsynced on every message): the stream hands out those
// sequence numbers again, and the events that get them are appended, not
// taken for redeliveries, whether the stream ends below the watermark or
// has grown back to it. The loss is simulated from the log's side, by a
// watermark three events past the stream's end.
func TestService_Run_StreamLostItsTail(t *testing.T) {
	for _, c := range []struct {
		fresh  int
		legacy bool // a log written before the applied time was kept
	}{{2, false}, {3, false}, {3, true}} {
		fresh := c.fresh
		t.Run(fmt.Sprintf("%d new events, legacy %v", fresh, c.legacy), func(t *testing.T) {
			h := newHarness(t, Config{})
			acks := h.logN(5, "agent-1", "old")
			h.waitCommitted(acks[4].Sequence)
			require.NoError(t, h.stop())
			require.NoError(t, h.store.Update(context.Background(), func(tx kv.Txn) error {
				if c.legacy {
					if err := tx.Clear(keyAppliedAt); err != nil {
						return err
					}
				}
				return tx.Set(keyApplied, []byte("8"))
			}))
			// A deleted message among the old ones is stepped over.
			stream, err := h.js.Stream(context.Background(), bus.StreamAudit)
			require.NoError(t, err)
			require.NoError(t, stream.DeleteMsg(context.Background(), 4))

			news := h.logN(fresh, "agent-1", "new") // stream seqs from 6, at most 8
			last := news[fresh-1].Sequence
			h.start()
			h.waitCommitted(last)
			require.Eventually(t, func() bool { return h.svc.Status().Seq == uint64(5+fresh) }, 10*time.Second, time.Millisecond)
			recs := h.all(Query{})
			require.Len(t, recs, 5+fresh)
			for _, r := range recs[5:] {
				assert.Equal(t, "new", r.Category)
			}
			assertChain(t, recs, 1, GenesisPrev)
			assert.Equal(t, last, h.svc.Status().StreamSeq)
		})
	}
}

// TestService_Run_RecordsPurgedRange is issue 11's input 5 on CODI_AUDIT:
// acknowledged events purged from the stream before the log read them are
// not skipped in silence: the log records the range as lost, in its place,
// and goes on with the events after it.
func TestService_Run_RecordsPurgedRange(t *testing.T) {
	h := newHarness(t, Config{})
	acks := h.logN(3, "agent-1", "x")
	h.waitCommitted(acks[2].Sequence)
	require.NoError(t, h.stop())
	acks = h.logN(5, "agent-1", "y") // stream seqs 4-8
	ctx := context.Background()
	stream, err := h.js.Stream(ctx, bus.StreamAudit)
	require.NoError(t, err)
	require.NoError(t, stream.Purge(ctx, jetstream.WithPurgeSequence(acks[3].Sequence))) // removes 1-6
	last := h.logN(1, "agent-1", "z")[0]

	h.start()
	h.waitCommitted(last.Sequence)
	recs := h.wholeLog(7)
	assert.Equal(t, LostCategory, recs[3].Category)
	var lost Lost
	require.NoError(t, json.Unmarshal(recs[3].Data, &lost))
	assert.Equal(t, Lost{Stream: bus.StreamAudit, FirstSeq: 4, LastSeq: 6, Count: 3}, lost)
	assert.Equal(t, []string{"y", "y", "z"}, []string{recs[4].Category, recs[5].Category, recs[6].Category})
	assert.True(t, h.verify(VerifyRequest{}).OK)
}

// TestService_Run_RecordsPurgedTail: events purged from the end of
// CODI_AUDIT before the log read them are never delivered; the idle writer
// notices, records the range in the log and moves the watermark to the
// stream's end.
func TestService_Run_RecordsPurgedTail(t *testing.T) {
	h := newHarness(t, Config{})
	acks := h.logN(2, "agent-1", "x")
	h.waitCommitted(acks[1].Sequence)
	require.NoError(t, h.stop())
	acks = h.logN(3, "agent-1", "y") // stream seqs 3-5
	ctx := context.Background()
	stream, err := h.js.Stream(ctx, bus.StreamAudit)
	require.NoError(t, err)
	require.NoError(t, stream.Purge(ctx))
	h.start()
	h.waitCommitted(acks[2].Sequence)
	recs := h.wholeLog(3)
	assert.Equal(t, LostCategory, recs[2].Category)
	assert.JSONEq(t, `{"stream":"CODI_AUDIT","first_seq":3,"last_seq":5,"count":3}`, string(recs[2].Data))
}
