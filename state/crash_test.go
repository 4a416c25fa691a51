package state_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/audit"
	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/internal/proctest"
	"github.com/codi2/codi2/state"
	"github.com/codi2/codi2/subjects"
)

// crashWriter is one agent of the crash test: it merges into its own task,
// one command at a time, and races the others for locks.
type crashWriter struct {
	agent, task string
	mu          sync.Mutex
	acked       int             // PubAck'd merges on task
	lastSeq     uint64          // highest PubAck sequence
	claims      map[string]bool // locks whose claim got a PubAck
}

func (w *crashWriter) run(ctx context.Context, js jetstream.JetStream, cycle int) {
	for k := 0; ctx.Err() == nil; k++ {
		subj, id := "", ""
		var payload []byte
		if k%10 == 9 {
			// Every writer claims the same lock at about the same time.
			id = fmt.Sprintf("lock-%d-%d", cycle, k/10)
			subj, _ = subjects.StateCmd("task", id, w.agent)
			payload = []byte(`{"op":"put","expect_rev":0,"ttl_ms":3600000,"fields":{"owner":"` + w.agent + `"}}`)
		} else {
			subj, _ = subjects.StateCmd("task", w.task, w.agent)
			payload = fmt.Appendf(nil, `{"op":"merge","fields":{"k":%d,"cycle":%d}}`, k, cycle)
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ack, err := js.Publish(pctx, subj, payload, jetstream.WithMsgID(fmt.Sprintf("%s-%d-%d", w.agent, cycle, k)))
		cancel()
		if err != nil {
			return // the server is gone: this cycle is over for this writer
		}
		w.mu.Lock()
		if id == "" {
			w.acked++
		} else {
			w.claims[id] = true
		}
		w.lastSeq = max(w.lastSeq, ack.Sequence)
		w.mu.Unlock()
	}
}

// The built binary is killed with SIGKILL twice in the middle of a load of
// five writers and restarted on the same data directory, on each store
// (bbolt, the default, and --store pebble, whose audit records are
// appended in each command's own transaction). Afterwards every PubAck'd
// command is applied exactly once, every stored lock claim has exactly one
// winner, the watermark reaches the last PubAck, and the audit log holds
// one record per command and verifies.
func TestServe_Crash_ExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test builds and kills the binary")
	}
	bin := proctest.Build(t)
	t.Run("bolt", func(t *testing.T) { testCrashExactlyOnce(t, bin) })
	t.Run("pebble", func(t *testing.T) { testCrashExactlyOnce(t, bin, "--store", "pebble") })
}

func testCrashExactlyOnce(t *testing.T, bin string, serveArgs ...string) {
	srv := proctest.Start(t, bin, t.TempDir(), 0, serveArgs...)

	nc := srv.Connect(t)
	js, err := jetstream.New(nc)
	require.NoError(t, err)

	writers := make([]*crashWriter, 5)
	for i := range writers {
		writers[i] = &crashWriter{agent: fmt.Sprintf("writer-%d", i), task: fmt.Sprintf("w%d", i), claims: map[string]bool{}}
	}
	ackedTotal := func() int {
		n := 0
		for _, w := range writers {
			w.mu.Lock()
			n += w.acked
			w.mu.Unlock()
		}
		return n
	}
	loads := make([]func(context.Context, int), len(writers))
	for i, w := range writers {
		loads[i] = func(ctx context.Context, cycle int) { w.run(ctx, js, cycle) }
	}
	srv = srv.KillUnderLoad(t, 2, 3000, ackedTotal, loads...)

	// The watermark reaches the end of the stream, hence every PubAck.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stream, err := js.Stream(ctx, bus.StreamState)
	require.NoError(t, err)
	info, err := stream.Info(ctx)
	require.NoError(t, err)
	last := info.State.LastSeq
	var lastAcked uint64
	for _, w := range writers {
		lastAcked = max(lastAcked, w.lastSeq)
	}
	require.GreaterOrEqual(t, last, lastAcked)
	c, err := state.NewClient(nc, "checker")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		n, err := c.Status(ctx)
		return err == nil && n >= last
	}, 20*time.Second, 10*time.Millisecond)

	// Each writer's record has one revision per stored command: none lost,
	// none applied twice; at least one per PubAck.
	for _, w := range writers {
		info, err := stream.Info(ctx, jetstream.WithSubjectFilter("codi.state.cmd.task."+w.task+".>"))
		require.NoError(t, err)
		stored := uint64(0)
		for _, n := range info.State.Subjects {
			stored += n
		}
		rec, err := c.Get(ctx, "task", w.task, last)
		require.NoError(t, err)
		assert.Equal(t, stored, rec.Rev, "%s: rev vs commands in the stream", w.task)
		assert.GreaterOrEqual(t, rec.Rev, uint64(w.acked), "%s: rev vs PubAcks", w.task)
	}

	// Every acknowledged claim's lock exists once, with a single winner.
	locks := map[string]bool{}
	for _, w := range writers {
		for id := range w.claims {
			locks[id] = true
		}
	}
	require.NotEmpty(t, locks)
	for id := range locks {
		rec, err := c.Get(ctx, "task", id, 0)
		if assert.NoError(t, err, id) {
			assert.Equal(t, uint64(1), rec.Rev, id)
			assert.NotNil(t, rec.ExpiresAt, id)
		}
	}

	// One audit record per command in the log, none twice (on bbolt
	// published from the outbox after each crash; on pebble appended in the
	// command's transaction), and the chain verifies.
	ac, err := audit.NewClient(nc)
	require.NoError(t, err)
	var msgIDs map[string]int
	require.Eventually(t, func() bool {
		msgIDs = map[string]int{}
		for q := (audit.Query{Source: "codi-state", Limit: audit.MaxQueryLimit}); ; {
			res, err := ac.Query(ctx, q)
			if err != nil {
				return false
			}
			for _, r := range res.Records {
				msgIDs[r.MsgID]++
			}
			if res.NextAfterSeq == 0 {
				break
			}
			q.AfterSeq = res.NextAfterSeq
		}
		return len(msgIDs) >= int(info.State.Msgs)
	}, 20*time.Second, 20*time.Millisecond, "audit records vs commands")
	assert.Len(t, msgIDs, int(info.State.Msgs), "audit records vs commands")
	for id, n := range msgIDs {
		assert.Equal(t, 1, n, "audit record %s", id)
	}
	v, err := ac.Verify(ctx, audit.VerifyRequest{})
	require.NoError(t, err)
	assert.True(t, v.OK, "%+v", v)

	assert.Equal(t, 0, srv.Stop(20*time.Second), srv.Logs())
}
