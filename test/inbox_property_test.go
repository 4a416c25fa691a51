package test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/internal/proctest"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestInbox_Property_ExactlyOnceInOrderUnderFaults is the randomized test of
// issue 10's kind: an agent's handler takes random times around AckWait and
// fails at random, an operator deletes its inbox consumer, and the server is
// killed with SIGKILL and restarted, all while mail arrives. Afterwards every
// acknowledged message was handled successfully exactly once, in stream
// order, and no message was handed over again after its handler returned
// nil.
func TestInbox_Property_ExactlyOnceInOrderUnderFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test")
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	const (
		perPhase = 50
		ackWait  = 300 * time.Millisecond
	)
	// The handler's plan for each (message, attempt), drawn up front so the
	// handler itself holds no shared random source.
	type step struct {
		d    time.Duration
		fail bool
	}
	plan := map[string][]step{}
	for i := range 2 * perPhase {
		var steps []step
		for range 4 {
			d := time.Duration(rng.IntN(3)) * time.Millisecond
			if rng.IntN(10) == 0 {
				d = ackWait/2 + time.Duration(rng.Int64N(int64(ackWait))) // around AckWait
			}
			steps = append(steps, step{d: d, fail: rng.IntN(5) == 0})
		}
		steps[3].fail = false
		plan[strconv.Itoa(i)] = steps
	}

	srv := proctest.Start(t, proctest.Build(t), t.TempDir(), 0)
	sender, err := bus.NewAgent("orchestrator", srv.Connect(t))
	require.NoError(t, err)
	var (
		mu       sync.Mutex
		acked    []uint64           // stream sequences of acknowledged sends, in order
		calls    = map[string]int{} // handler calls per message
		done     = map[string]bool{}
		handled  []uint64 // stream sequences handled with success, in order
		problems []string
	)
	send := func(from, to int) {
		for i := from; i < to; i++ {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			ack, err := sender.Send(ctx, "worker", "task.assign", []byte(strconv.Itoa(i)), bus.WithMsgID("task-"+strconv.Itoa(i)))
			cancel()
			require.NoError(t, err)
			mu.Lock()
			acked = append(acked, ack.Sequence)
			mu.Unlock()
		}
	}
	send(0, perPhase)

	worker, err := bus.NewAgent("worker", srv.Connect(t))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	recvErr := make(chan error, 1)
	cfg := bus.ReceiveConfig{AckWait: ackWait, RetryDelay: 10 * time.Millisecond, MaxRetryDelay: 50 * time.Millisecond, MaxDeliver: -1}
	go func() {
		recvErr <- worker.Receive(ctx, cfg, func(_ context.Context, m bus.Message) error {
			id := string(m.Data)
			mu.Lock()
			if done[id] {
				problems = append(problems, fmt.Sprintf("message %s (seq %d) handed over again after success", id, m.Seq))
			}
			n := calls[id]
			calls[id]++
			mu.Unlock()
			st := plan[id][min(n, 3)]
			time.Sleep(st.d) // the handler's work
			if st.fail {
				return fmt.Errorf("attempt %d of %s fails", n+1, id)
			}
			mu.Lock()
			done[id] = true
			handled = append(handled, m.Seq)
			mu.Unlock()
			return nil
		})
	}()
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(handled)
	}

	// An operator deletes the inbox consumer mid-run.
	require.Eventually(t, func() bool { return count() >= perPhase/3 }, 60*time.Second, 5*time.Millisecond)
	js, err := jetstream.New(srv.Connect(t))
	require.NoError(t, err)
	require.NoError(t, js.DeleteConsumer(context.Background(), bus.StreamMsg, bus.ConsumerName("worker")))

	// The server is killed mid-run and restarted on its data.
	require.Eventually(t, func() bool { return count() >= 2*perPhase/3 }, 60*time.Second, 5*time.Millisecond)
	srv.Kill()
	srv = proctest.Start(t, srv.Bin(), srv.DataDir, srv.Port())
	send(perPhase, 2*perPhase)

	require.Eventually(t, func() bool { return count() >= 2*perPhase }, 120*time.Second, 10*time.Millisecond,
		"handled %d of %d", count(), 2*perPhase)
	cancel()
	require.NoError(t, <-recvErr)

	mu.Lock()
	defer mu.Unlock()
	assert.Empty(t, problems)
	assert.Equal(t, acked, handled, "every acknowledged message handled once, in stream order")
	for id, n := range calls {
		assert.LessOrEqual(t, n, 4, "message %s: calls after its success", id)
	}
}
