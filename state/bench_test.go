package state_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/bus/bustest"
	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/kvtest"
	"github.com/codi2/codi2/internal/latency"
	"github.com/codi2/codi2/state"
	"github.com/codi2/codi2/subjects"
)

// BenchmarkState measures, in one run on one machine, the latency from
// publishing a command to seeing the committed watermark reach its PubAck
// sequence (the command is applied and fsynced), for one writer and for
// five, and the throughput of a burst of commands applied in batches; next
// to them, the two things every command pays: a raw JetStream publish (PubAck
// round trip) and a raw bbolt commit (one fsynced transaction).
//
//	go test -run XXX -bench State -benchtime 5000x ./state
func BenchmarkState(b *testing.B) {
	bs := bustest.Run(b)
	runService(b, bs, kvtest.NewBolt(b))

	nc := bustest.Connect(b, bs)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	require.NoError(b, err)
	wm := bustest.WatchWatermark(b, nc, subjects.StateCommitted)

	b.Run("raw-jetstream-publish", func(b *testing.B) {
		subj, _ := subjects.Msg("bench", "bench", "raw")
		measureLatency(b, 1, func(_, _ int) (time.Duration, error) {
			start := time.Now()
			_, err := js.Publish(context.Background(), subj, []byte(`{"op":"merge","fields":{"k":1}}`))
			return time.Since(start), err
		})
	})
	b.Run("raw-bbolt-commit", func(b *testing.B) {
		store := kvtest.NewBolt(b)
		val := make([]byte, 300)
		measureLatency(b, 1, func(_, i int) (time.Duration, error) {
			start := time.Now()
			err := store.Update(context.Background(), func(tx kv.Txn) error {
				return tx.Set(kv.Tuple{"bench", int64(i)}.Pack(), val)
			})
			return time.Since(start), err
		})
	})
	for _, writers := range []int{1, 5} {
		b.Run(fmt.Sprintf("publish-to-committed/writers=%d", writers), func(b *testing.B) {
			subjs := make([]string, writers)
			for w := range subjs {
				subjs[w], _ = subjects.StateCmd("bench", fmt.Sprintf("w%d", w), fmt.Sprintf("agent-%d", w))
			}
			measureLatency(b, writers, func(w, _ int) (time.Duration, error) {
				start := time.Now()
				ack, err := js.Publish(context.Background(), subjs[w], []byte(`{"op":"merge","fields":{"k":1}}`))
				if err != nil {
					return 0, err
				}
				if err := wm.Wait(ack.Sequence, 30*time.Second); err != nil {
					return 0, err
				}
				return time.Since(start), nil
			})
		})
	}
	b.Run("throughput/raw-jetstream-async", func(b *testing.B) {
		subj, _ := subjects.Msg("bench", "bench", "raw")
		burst(b, js, func(int) string { return subj }, nil)
	})
	b.Run("throughput/state-commands", func(b *testing.B) {
		subjs := make([]string, 100)
		for i := range subjs {
			subjs[i], _ = subjects.StateCmd("bench", fmt.Sprintf("t%d", i), "agent-1")
		}
		burst(b, js, func(i int) string { return subjs[i%len(subjs)] }, wm)
	})
}

// measureLatency runs op b.N times, split over writers goroutines that each
// run one op at a time (op gets the writer and its op's index), and reports the median and 99th percentile and the
// rate of ops.
func measureLatency(b *testing.B, writers int, op func(w, i int) (time.Duration, error)) {
	rec := latency.NewRecorder(b.N)
	errs := make(chan error, writers)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range writers {
		n := b.N / writers
		if w < b.N%writers {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, n)
			for i := range n {
				d, err := op(w, i)
				if err != nil {
					errs <- err
					return
				}
				local = append(local, d)
			}
			for _, d := range local {
				rec.Record(d)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	s := rec.Summary()
	b.ReportMetric(float64(s.P50.Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(s.P99.Nanoseconds())/1e3, "p99-µs")
	b.ReportMetric(latency.Throughput(b.N, elapsed), "ops/s")
}

// burst publishes b.N messages asynchronously and waits for every PubAck and,
// with wm, for the committed watermark to reach the last one; it reports the
// rate and, for state commands, the mean batch size.
func burst(b *testing.B, js jetstream.JetStream, subject func(i int) string, wm *bustest.Watermark) {
	payload := []byte(`{"op":"merge","fields":{"k":1}}`)
	var batches0 int
	if wm != nil {
		batches0 = wm.Count()
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	futs := make([]jetstream.PubAckFuture, 0, b.N)
	for i := range b.N {
		f, err := js.PublishAsync(subject(i), payload)
		require.NoError(b, err)
		futs = append(futs, f)
	}
	var last uint64
	for _, f := range futs {
		select {
		case ack := <-f.Ok():
			last = max(last, ack.Sequence)
		case err := <-f.Err():
			b.Fatal(err)
		}
	}
	if wm != nil {
		require.NoError(b, wm.Wait(last, 30*time.Second))
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(latency.Throughput(b.N, elapsed), "cmds/s")
	if wm != nil {
		b.ReportMetric(float64(b.N)/float64(max(wm.Count()-batches0, 1)), "cmds/batch")
	}
}

// BenchmarkClient_Apply measures Client.Apply, one command at a time, to
// its applied event, with the bytes allocated per command in the whole
// process (client, server and service): each call used to allocate a
// SubscribeSync channel of 65,536 slots, half a megabyte.
//
//	go test -run XXX -bench Client_Apply -benchmem ./state
func BenchmarkClient_Apply(b *testing.B) {
	bs := bustest.Run(b)
	runService(b, bs, kvtest.NewPebble(b))
	c, err := state.NewClient(bustest.Connect(b, bs), "agent-1")
	require.NoError(b, err)
	cmd := state.Command{Op: state.OpMerge, Fields: map[string]any{"k": 1}}
	_, err = c.Apply(context.Background(), "bench", "warm", cmd)
	require.NoError(b, err)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := c.Apply(context.Background(), "bench", "r1", cmd); err != nil {
			b.Fatal(err)
		}
	}
}

// runService runs a state service with the default configuration on store
// and bs until the benchmark ends.
func runService(b *testing.B, bs *bus.Bus, store kv.Store) {
	b.Helper()
	svcNC, err := bs.Connect("codi-state")
	require.NoError(b, err)
	b.Cleanup(svcNC.Close)
	svc, err := state.New(state.Config{}, svcNC, store, zerolog.Nop())
	require.NoError(b, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	b.Cleanup(func() {
		cancel()
		require.NoError(b, <-done)
	})
}
