package test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/internal/proctest"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCrash_Bus_AckedMessagesSurviveKill9 sends durable messages from five
// agents, kills the server with SIGKILL while they are sending, restarts it
// on the same data directory and checks that every message that got a
// PubAck is delivered to its recipient exactly once.
func TestCrash_Bus_AckedMessagesSurviveKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test")
	}
	srv := proctest.Start(t, proctest.Build(t), t.TempDir(), 0)

	const senders = 5
	var (
		mu    sync.Mutex
		acked = map[string]bool{}
		total atomic.Int64
	)
	loads := make([]func(context.Context, int), senders)
	for i := range senders {
		nc, err := nats.Connect(srv.URL, nats.NoReconnect())
		require.NoError(t, err)
		defer nc.Close()
		a, err := bus.NewAgent(fmt.Sprintf("agent-%d", i), nc)
		require.NoError(t, err)
		loads[i] = func(ctx context.Context, _ int) {
			for n := 0; ctx.Err() == nil; n++ {
				body := fmt.Sprintf("%s/%d", a.ID(), n)
				sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				_, err := a.Send(sctx, "inbox", "task.assign", []byte(body), bus.WithMsgID(body))
				cancel()
				if err != nil {
					return // the server is gone
				}
				mu.Lock()
				acked[body] = true
				mu.Unlock()
				total.Add(1)
			}
		}
	}
	srv = srv.KillUnderLoad(t, 1, 3000, func() int { return int(total.Load()) }, loads...)

	nc, err := nats.Connect(srv.URL)
	require.NoError(t, err)
	defer nc.Close()
	inbox, err := bus.NewAgent("inbox", nc)
	require.NoError(t, err)

	mu.Lock()
	want := len(acked)
	mu.Unlock()
	seen := map[string]int{}
	var seenMu sync.Mutex
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- inbox.Receive(ctx, bus.ReceiveConfig{}, func(_ context.Context, m bus.Message) error {
			seenMu.Lock()
			seen[string(m.Data)]++
			seenMu.Unlock()
			return nil
		})
	}()
	covered := func() bool {
		seenMu.Lock()
		defer seenMu.Unlock()
		for body := range acked {
			if seen[body] == 0 {
				return false
			}
		}
		return true
	}
	require.Eventually(t, covered, 60*time.Second, 10*time.Millisecond, "every PubAck'd message is delivered")
	cancel()
	require.NoError(t, <-done)

	seenMu.Lock()
	defer seenMu.Unlock()
	for body, n := range seen {
		assert.Equal(t, 1, n, "%s delivered once", body)
	}
	assert.GreaterOrEqual(t, len(seen), want, "acked %d, delivered %d (sent but unacked ones may be stored too)", want, len(seen))
	t.Logf("acked %d messages before kill -9, delivered %d after restart", want, len(seen))
	assert.Equal(t, 0, srv.Stop(10*time.Second), "SIGTERM exits 0")
}
