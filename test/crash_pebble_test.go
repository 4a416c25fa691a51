package test

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

// TestCrash_Pebble_StateExactlyOnce is the pebble variant of state's
// TestServe_Crash_ExactlyOnce: `codi2 serve --store pebble` is killed with
// SIGKILL twice under five writers (merges into their own task, and a
// shared lock claimed by all every tenth command) and restarted on the
// same data directory. Afterwards every PubAck'd command is applied
// exactly once, every lock has one winner, the watermark reaches the last
// PubAck, and the audit log, appended in each command's own transaction,
// holds exactly one record per command.
func TestCrash_Pebble_StateExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test builds and kills the binary")
	}
	srv := proctest.Start(t, proctest.Build(t), t.TempDir(), 0, "--store", "pebble")
	nc := srv.Connect(t)
	js, err := jetstream.New(nc)
	require.NoError(t, err)

	type writer struct {
		agent, task string
		mu          sync.Mutex
		acked       int
		lastSeq     uint64
		claims      map[string]bool
	}
	writers := make([]*writer, 5)
	for i := range writers {
		writers[i] = &writer{agent: fmt.Sprintf("writer-%d", i), task: fmt.Sprintf("w%d", i), claims: map[string]bool{}}
	}
	loads := make([]func(context.Context, int), len(writers))
	for i, w := range writers {
		loads[i] = func(ctx context.Context, cycle int) {
			for k := 0; ctx.Err() == nil; k++ {
				id := w.task
				payload := fmt.Appendf(nil, `{"op":"merge","fields":{"k":%d,"cycle":%d}}`, k, cycle)
				if k%10 == 9 {
					id = fmt.Sprintf("lock-%d-%d", cycle, k/10)
					payload = []byte(`{"op":"put","expect_rev":0,"ttl_ms":3600000,"fields":{"owner":"` + w.agent + `"}}`)
				}
				subj, _ := subjects.StateCmd("task", id, w.agent)
				pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				ack, err := js.Publish(pctx, subj, payload, jetstream.WithMsgID(fmt.Sprintf("%s-%d-%d", w.agent, cycle, k)))
				cancel()
				if err != nil {
					return // the server is gone: this cycle is over
				}
				w.mu.Lock()
				if id == w.task {
					w.acked++
				} else {
					w.claims[id] = true
				}
				w.lastSeq = max(w.lastSeq, ack.Sequence)
				w.mu.Unlock()
			}
		}
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
	srv = srv.KillUnderLoad(t, 2, 3000, ackedTotal, loads...)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stream, err := js.Stream(ctx, bus.StreamState)
	require.NoError(t, err)
	info, err := stream.Info(ctx)
	require.NoError(t, err)
	last := info.State.LastSeq
	c, err := state.NewClient(nc, "checker")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		n, err := c.Status(ctx)
		return err == nil && n >= last
	}, 20*time.Second, 10*time.Millisecond)

	for _, w := range writers {
		require.GreaterOrEqual(t, last, w.lastSeq)
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
		for id := range w.claims {
			rec, err := c.Get(ctx, "task", id, 0)
			if assert.NoError(t, err, id) {
				assert.Equal(t, uint64(1), rec.Rev, id)
			}
		}
	}

	// One audit record per command in the stream, none twice.
	ac, err := audit.NewClient(nc)
	require.NoError(t, err)
	msgIDs := map[string]int{}
	for q := (audit.Query{Source: "codi-state", Limit: audit.MaxQueryLimit}); ; {
		res, err := ac.Query(ctx, q)
		require.NoError(t, err)
		for _, r := range res.Records {
			msgIDs[r.MsgID]++
		}
		if res.NextAfterSeq == 0 {
			break
		}
		q.AfterSeq = res.NextAfterSeq
	}
	assert.Len(t, msgIDs, int(info.State.Msgs), "audit records vs commands")
	for id, n := range msgIDs {
		assert.Equal(t, 1, n, "audit record %s", id)
	}
	v, err := ac.Verify(ctx, audit.VerifyRequest{})
	require.NoError(t, err)
	assert.True(t, v.OK, "%+v", v)

	assert.Equal(t, 0, srv.Stop(20*time.Second), srv.Logs())
}
