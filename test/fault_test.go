package test

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/codi2/codi2/audit"
	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/internal/proctest"
	"github.com/codi2/codi2/state"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// faultLedger records what the loads had acknowledged: stream sequence by
// item, per stream.
type faultLedger struct {
	mu    sync.Mutex
	audit map[string]uint64 // Nats-Msg-Id -> CODI_AUDIT seq
	state map[string]uint64 // task id -> CODI_STATE seq
	mail  map[string]uint64 // Nats-Msg-Id -> CODI_MSG seq
	total atomic.Int64
}

func (l *faultLedger) add(m map[string]uint64, key string, seq uint64) {
	l.mu.Lock()
	m[key] = seq
	l.mu.Unlock()
	l.total.Add(1)
}

// TestFault_OperatorActionsUnderLoad is issue 11's fault injection: while
// agents send mail, state commands and audit events, an operator (seeded at
// random) deletes the services' consumers, purges ranges of CODI_AUDIT and
// CODI_STATE, restarts the server and kills it with SIGKILL. Afterwards
// every acknowledged item is present exactly once, or a "lost" audit event
// names the range it was in; the log verifies; nothing is there twice.
func TestFault_OperatorActionsUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("fault injection: builds and kills codi2 serve")
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	srv := proctest.Start(t, proctest.Build(t), t.TempDir(), 0)
	led := &faultLedger{audit: map[string]uint64{}, state: map[string]uint64{}, mail: map[string]uint64{}}

	nc := srv.Connect(t)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ac, err := audit.NewClient(nc)
	require.NoError(t, err)
	defer ac.Close()
	sender, err := bus.NewAgent("fi-orch", nc)
	require.NoError(t, err)
	var n atomic.Int64
	loads := []func(ctx context.Context, cycle int){
		func(ctx context.Context, _ int) { // audit events
			for ctx.Err() == nil {
				id := "fi-a-" + strconv.FormatInt(n.Add(1), 10)
				sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				ack, err := ac.Log(sctx, "fi-agent", "note", []byte(`{"n":1}`), audit.WithMsgID(id))
				cancel()
				if err == nil {
					led.add(led.audit, id, ack.Sequence)
				}
			}
		},
		func(ctx context.Context, _ int) { // state commands, one record each
			for ctx.Err() == nil {
				id := "fi-" + strconv.FormatInt(n.Add(1), 10)
				m := &nats.Msg{Subject: "codi.state.cmd.task." + id + ".fi-agent", Data: []byte(`{"op":"put","fields":{"x":1}}`), Header: nats.Header{}}
				m.Header.Set(jetstream.MsgIDHeader, id)
				sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				ack, err := js.PublishMsg(sctx, m)
				cancel()
				if err == nil {
					led.add(led.state, id, ack.Sequence)
				}
			}
		},
		func(ctx context.Context, _ int) { // mail
			for ctx.Err() == nil {
				id := "fi-m-" + strconv.FormatInt(n.Add(1), 10)
				sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				ack, err := sender.Send(sctx, "fi-inbox", "task", []byte(id), bus.WithMsgID(id))
				cancel()
				if err == nil {
					led.add(led.mail, id, ack.Sequence)
				}
			}
		},
	}
	actions := []string{"delete codi-state", "delete codi-audit", "purge CODI_AUDIT", "purge CODI_STATE", "restart", "kill -9"}
	rng.Shuffle(len(actions), func(i, j int) { actions[i], actions[j] = actions[j], actions[i] })
	for _, action := range actions {
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for _, load := range loads {
			wg.Go(func() { load(ctx, 0) })
		}
		target := led.total.Load() + 300
		require.Eventually(t, func() bool { return led.total.Load() >= target }, 60*time.Second, time.Millisecond)
		t.Logf("%s with %d items acknowledged", action, led.total.Load())
		octx, ocancel := context.WithTimeout(context.Background(), 10*time.Second)
		switch action {
		case "delete codi-state":
			require.NoError(t, js.DeleteConsumer(octx, bus.StreamState, state.DefaultConsumer))
		case "delete codi-audit":
			require.NoError(t, js.DeleteConsumer(octx, bus.StreamAudit, audit.ConsumerName))
		case "purge CODI_AUDIT", "purge CODI_STATE":
			name := bus.StreamAudit
			if action == "purge CODI_STATE" {
				name = bus.StreamState
			}
			s, err := js.Stream(octx, name)
			require.NoError(t, err)
			burst(t, js, led, name, &n)
			// The whole stream, right after a burst: what the service had
			// not applied yet is lost, and must be said to be.
			require.NoError(t, s.Purge(octx))
		case "restart":
			cancel()
			wg.Wait()
			require.Equal(t, 0, srv.Stop(30*time.Second), srv.Logs())
			srv = proctest.Start(t, srv.Bin(), srv.DataDir, srv.Port())
		case "kill -9":
			srv.Kill()
			cancel()
			wg.Wait()
			srv = proctest.Start(t, srv.Bin(), srv.DataDir, srv.Port())
		}
		ocancel()
		cancel()
		wg.Wait()
	}

	// Let both services catch up with their streams.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sc, err := state.NewClient(nc, "fi-check")
	require.NoError(t, err)
	for name, caughtUp := range map[string]func(last uint64) bool{
		bus.StreamState: func(last uint64) bool { seq, err := sc.Status(ctx); return err == nil && seq >= last },
		bus.StreamAudit: func(last uint64) bool { st, err := ac.Status(ctx); return err == nil && st.StreamSeq >= last },
	} {
		s, err := js.Stream(ctx, name)
		require.NoError(t, err)
		info, err := s.Info(ctx)
		require.NoError(t, err)
		require.Eventually(t, func() bool { return caughtUp(info.State.LastSeq) }, 60*time.Second, 20*time.Millisecond, name)
	}

	// The log: every event, and the lost ranges of both services.
	type span struct{ first, last uint64 }
	var (
		lost map[string][]span
		seen map[string]int
	)
	readLog := func() {
		lost, seen = map[string][]span{}, map[string]int{}
		q := audit.Query{Limit: audit.MaxQueryLimit}
		for {
			page, err := ac.Query(ctx, q)
			require.NoError(t, err)
			for _, r := range page.Records {
				switch {
				case r.Category == "lost":
					var l struct {
						Stream   string
						FirstSeq uint64 `json:"first_seq"`
						LastSeq  uint64 `json:"last_seq"`
					}
					require.NoError(t, json.Unmarshal(r.Data, &l))
					lost[l.Stream] = append(lost[l.Stream], span{l.FirstSeq, l.LastSeq})
				case r.Source == "fi-agent":
					seen[r.MsgID]++
				}
			}
			if page.NextAfterSeq == 0 {
				return
			}
			q.AfterSeq = page.NextAfterSeq
		}
	}
	// The state service records a lost tail in its store with the
	// watermark, then publishes its audit event: the watermark can be
	// caught up a moment before the log has the event. Wait for the log to
	// name every command the store does not have (or give up and report).
	led.mu.Lock()
	absent := map[string]uint64{}
	for id, seq := range led.state {
		if _, err := sc.Get(ctx, "task", id, 0); err != nil {
			absent[id] = seq
		}
	}
	led.mu.Unlock()
	named := func() bool {
		readLog()
		for _, seq := range absent {
			found := false
			for _, sp := range lost[bus.StreamState] {
				found = found || sp.first <= seq && seq <= sp.last
			}
			if !found {
				return false
			}
		}
		return true
	}
	assert.Eventually(t, named, 30*time.Second, 200*time.Millisecond, "the log names every state command the store lacks (the checks below say which)")
	accounted := func(stream string, seq uint64) bool {
		for _, s := range lost[stream] {
			if s.first <= seq && seq <= s.last {
				return true
			}
		}
		return false
	}
	led.mu.Lock()
	defer led.mu.Unlock()
	var missing, lostAudit int
	for id, seq := range led.audit {
		switch {
		case seen[id] == 1:
		case seen[id] > 1:
			t.Errorf("audit event %s (seq %d) is in the log %d times", id, seq, seen[id])
		case accounted(bus.StreamAudit, seq):
			lostAudit++
		default:
			missing++
			t.Errorf("audit event %s (CODI_AUDIT seq %d) is missing and no lost event names it", id, seq)
		}
	}
	var lostState int
	for id, seq := range led.state {
		_, err := sc.Get(ctx, "task", id, 0)
		switch {
		case err == nil:
		case accounted(bus.StreamState, seq):
			lostState++
		default:
			missing++
			t.Errorf("state command for task %s (CODI_STATE seq %d): %v, and no lost event names it", id, seq, err)
		}
	}
	inbox, err := bus.NewAgent("fi-inbox", nc)
	require.NoError(t, err)
	got := map[string]int{}
	require.NoError(t, inbox.Receive(ctx, bus.ReceiveConfig{UntilIdle: true}, func(_ context.Context, m bus.Message) error {
		got[string(m.Data)]++
		return nil
	}))
	for id := range led.mail {
		if got[id] != 1 {
			t.Errorf("message %s delivered %d times", id, got[id])
		}
	}
	t.Logf("acknowledged: %d audit events (%d in lost ranges), %d state commands (%d in lost ranges), %d messages; lost ranges %v",
		len(led.audit), lostAudit, len(led.state), lostState, len(led.mail), lost)
	assert.Zero(t, missing)

	res, err := ac.Verify(ctx, audit.VerifyRequest{})
	require.NoError(t, err)
	assert.True(t, res.OK, "verify: %+v", res)
	// Every loss is accounted for and the services have caught up: the
	// server is ready again (/readyz reports a stream or service problem
	// while it lasts).
	require.Eventually(t, func() bool {
		resp, err := http.Get(srv.HTTP(t) + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 30*time.Second, 50*time.Millisecond, "/readyz")
}

// burst publishes 500 items at once on stream's subjects and records their
// PubAcks, so that a purge right after catches some the service has not
// applied.
func burst(t *testing.T, js jetstream.JetStream, led *faultLedger, stream string, n *atomic.Int64) {
	t.Helper()
	type item struct {
		key string
		f   jetstream.PubAckFuture
	}
	var items []item
	for range 500 {
		k := strconv.FormatInt(n.Add(1), 10)
		var m *nats.Msg
		if stream == bus.StreamAudit {
			k = "fi-a-" + k
			m = &nats.Msg{Subject: "codi.audit.log.fi-agent.note", Data: []byte(`{"burst":1}`), Header: nats.Header{}}
		} else {
			k = "fi-" + k
			m = &nats.Msg{Subject: "codi.state.cmd.task." + k + ".fi-agent", Data: []byte(`{"op":"put","fields":{"x":1}}`), Header: nats.Header{}}
		}
		m.Header.Set(jetstream.MsgIDHeader, k)
		f, err := js.PublishMsgAsync(m)
		require.NoError(t, err)
		items = append(items, item{k, f})
	}
	for _, it := range items {
		select {
		case ack := <-it.f.Ok():
			if stream == bus.StreamAudit {
				led.add(led.audit, it.key, ack.Sequence)
			} else {
				led.add(led.state, it.key, ack.Sequence)
			}
		case err := <-it.f.Err():
			t.Fatalf("burst: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("burst: no PubAck")
		}
	}
}
