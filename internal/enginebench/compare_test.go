package enginebench

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"

	"github.com/codi2/codi2/audit"
	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/bus/bustest"
	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/kvtest"
	"github.com/codi2/codi2/internal/latency"
	"github.com/codi2/codi2/internal/server"
	"github.com/codi2/codi2/internal/servertest"
	"github.com/codi2/codi2/state"
	"github.com/codi2/codi2/subjects"
)

// writerCounts are the concurrent writers of the update cases.
var writerCounts = []int{1, 5, 20}

// racers is how many agents race for each record in the claim cases.
const racers = 5

// syncOps is how many operations (rounds for the claim race) the fsync
// count runs under strace, after the timed run.
const syncOps = 300

// BenchmarkCompare measures, in one run, the update of one record per
// writer through each system, and the contended claim race:
//
//   - codi2: a merge command published to CODI_STATE on a whole codi2
//     server (servertest.Start: embedded NATS with serve's defaults, the
//     state and audit services on their bbolt files), timed from publish
//     to the codi.state.committed watermark reaching its PubAck sequence;
//     the claim race is state.Client.Claim;
//   - codi2-inline-audit: the same on a second whole server with
//     server.Config.InlineAudit (one bbolt file; each outcome's audit
//     record appended in the command's transaction, no second commit);
//   - codi2-pebble: the same on a third whole server with Store pebble
//     (one pebble database, audit records appended in the command's
//     transaction, one write-ahead-log fsync per commit group);
//   - kv-default: jetstream.KeyValue.Update on a file bucket of a server
//     with the default sync interval; the claim race is Create;
//   - kv-sync-always: the same on a server with sync_always (nats-server
//     sets it per server, so this is a second embedded server in the
//     same process);
//   - bbolt: one fsynced boltkv transaction with one Set (the commit the
//     state service pays per batch); bbolt-batch: bbolt's own DB.Batch,
//     which merges concurrent writers into one commit;
//   - pebble: one Set with pebble.Sync (its WAL merges concurrent syncs).
//
// Each case reports p50-µs, p99-µs and ops/s; every case starts with the
// codi2 servers' audit services caught up. After all timed runs, each
// case runs syncOps more operations with strace attached to count fsync
// plus fdatasync calls of the whole process per operation (syncs/op, -1
// when strace cannot attach); the table logged at the end (-v) has every
// case's figures and its ratios against kv-sync-always. Run it alone on
// the machine:
//
//	go test -run XXX -bench Compare -benchtime 1000x -v ./internal/enginebench
func BenchmarkCompare(b *testing.B) {
	res := newResults()
	srv := servertest.Start(b, false)
	codi := bustest.Connect(b, srv.Bus())
	codiJS, err := jetstream.New(codi)
	require.NoError(b, err)
	wm := bustest.WatchWatermark(b, codi, subjects.StateCommitted)
	inline, err := server.Start(context.Background(), server.Config{DataDir: b.TempDir(), NATSListen: "127.0.0.1:-1", InlineAudit: true},
		zerolog.Nop())
	require.NoError(b, err)
	b.Cleanup(func() { _ = inline.Stop() })
	inlineNC := bustest.Connect(b, inline.Bus())
	inlineJS, err := jetstream.New(inlineNC)
	require.NoError(b, err)
	inlineWM := bustest.WatchWatermark(b, inlineNC, subjects.StateCommitted)
	peb, err := server.Start(context.Background(), server.Config{DataDir: b.TempDir(), NATSListen: "127.0.0.1:-1", Store: server.StorePebble},
		zerolog.Nop())
	require.NoError(b, err)
	b.Cleanup(func() { _ = peb.Stop() })
	pebNC := bustest.Connect(b, peb.Bus())
	pebJS, err := jetstream.New(pebNC)
	require.NoError(b, err)
	pebWM := bustest.WatchWatermark(b, pebNC, subjects.StateCommitted)
	// Every case starts with the codi2 servers' audit services caught up,
	// so that one case's audit backlog does not commit during the next.
	res.settle = func(b *testing.B) {
		for _, nc := range []*nats.Conn{codi, inlineNC, pebNC} {
			waitAuditCaughtUp(b, nc)
		}
	}

	syncBus := bustest.Run(b, bus.Config{SyncAlways: true})
	syncNC := bustest.Connect(b, syncBus)
	kvDefault := newBucket(b, codiJS, "bench_default")
	syncJS, err := jetstream.New(syncNC)
	require.NoError(b, err)
	kvSync := newBucket(b, syncJS, "bench_sync")

	for _, writers := range writerCounts {
		group := fmt.Sprintf("update/writers=%d", writers)
		res.run(b, group+"/codi2", writers, stateUpdates(codiJS, wm, writers))
		res.run(b, group+"/codi2-inline-audit", writers, stateUpdates(inlineJS, inlineWM, writers))
		res.run(b, group+"/codi2-pebble", writers, stateUpdates(pebJS, pebWM, writers))
		res.run(b, group+"/codi2-pebble-applied", writers, stateApplies(pebNC, writers))
		res.run(b, group+"/kv-default", writers, kvUpdates(kvDefault, writers))
		res.run(b, group+"/kv-sync-always", writers, kvUpdates(kvSync, writers))
		res.run(b, group+"/bbolt", writers, func(b *testing.B) opFunc {
			store := kvtest.NewBolt(b)
			val := make([]byte, 300)
			return func(w, i int) error {
				return store.Update(context.Background(), func(tx kv.Txn) error {
					return tx.Set(kv.Tuple{"bench", int64(w), int64(i)}.Pack(), val)
				})
			}
		})
		res.run(b, group+"/bbolt-batch", writers, func(b *testing.B) opFunc {
			db, err := bolt.Open(filepath.Join(b.TempDir(), "batch.db"), 0o600, nil)
			require.NoError(b, err)
			b.Cleanup(func() { _ = db.Close() })
			val := make([]byte, 300)
			return func(w, i int) error {
				return db.Batch(func(tx *bolt.Tx) error {
					bk, err := tx.CreateBucketIfNotExists([]byte("bench"))
					if err != nil {
						return err
					}
					return bk.Put(kv.Tuple{int64(w), int64(i)}.Pack(), val)
				})
			}
		})
		res.run(b, group+"/pebble", writers, func(b *testing.B) opFunc {
			db, err := pebble.Open(b.TempDir(), &pebble.Options{Logger: quiet{}})
			require.NoError(b, err)
			b.Cleanup(func() { _ = db.Close() })
			val := make([]byte, 300)
			return func(w, i int) error {
				return db.Set(kv.Tuple{int64(w), int64(i)}.Pack(), val, pebble.Sync)
			}
		})
	}

	group := fmt.Sprintf("claim-race/racers=%d", racers)
	res.race(b, group+"/codi2", claims(codi))
	res.race(b, group+"/codi2-inline-audit", claims(inlineNC))
	res.race(b, group+"/codi2-pebble", claims(pebNC))
	res.race(b, group+"/kv-create-default", kvCreates(kvDefault))
	res.race(b, group+"/kv-create-sync-always", kvCreates(kvSync))
	res.countSyncsAll(b)
	res.logRatios(b)
}

// stateUpdates has each writer merge into its own record: publish the
// command, then wait for the committed watermark to reach its PubAck.
func stateUpdates(js jetstream.JetStream, wm *bustest.Watermark, writers int) func(b *testing.B) opFunc {
	return func(*testing.B) opFunc {
		subjs := make([]string, writers)
		run := time.Now().UnixNano()
		for w := range subjs {
			subjs[w], _ = subjects.StateCmd("bench", fmt.Sprintf("u%d-w%d", run, w), fmt.Sprintf("agent-%d", w))
		}
		payload := []byte(`{"op":"merge","fields":{"k":1}}`)
		return func(w, _ int) error {
			ack, err := js.Publish(context.Background(), subjs[w], payload)
			if err != nil {
				return err
			}
			return wm.Wait(ack.Sequence, 30*time.Second)
		}
	}
}

// stateApplies has each writer merge into its own record with
// state.Client.Apply: publish the command, then wait for its applied event
// (the answer; on pebble it comes before the fsync, the committed
// watermark after it).
func stateApplies(nc *nats.Conn, writers int) func(b *testing.B) opFunc {
	return func(b *testing.B) opFunc {
		clients := make([]*state.Client, writers)
		ids := make([]string, writers)
		run := time.Now().UnixNano()
		for w := range clients {
			var err error
			clients[w], err = state.NewClient(nc, fmt.Sprintf("agent-%d", w))
			require.NoError(b, err)
			ids[w] = fmt.Sprintf("a%d-w%d", run, w)
		}
		cmd := state.Command{Op: state.OpMerge, Fields: map[string]any{"k": 1}}
		return func(w, _ int) error {
			_, err := clients[w].Apply(context.Background(), "bench", ids[w], cmd)
			return err
		}
	}
}

// opFunc runs one operation of writer w (its i-th).
type opFunc func(w, i int) error

// raceFunc runs racer r's attempt in round and says whether it won.
type raceFunc func(r, round int) (won bool, err error)

func newBucket(b *testing.B, js jetstream.JetStream, name string) jetstream.KeyValue {
	b.Helper()
	kvb, err := js.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: name, Storage: jetstream.FileStorage})
	require.NoError(b, err)
	return kvb
}

// kvUpdates has each writer Update its own key at the revision it last
// wrote (the KV equivalent of a merge with expect_rev).
func kvUpdates(kvb jetstream.KeyValue, writers int) func(b *testing.B) opFunc {
	return func(b *testing.B) opFunc {
		keys := make([]string, writers)
		revs := make([]uint64, writers)
		for w := range keys {
			keys[w] = fmt.Sprintf("w%d-%d", w, time.Now().UnixNano())
			rev, err := kvb.Create(context.Background(), keys[w], []byte(`{"k":0}`))
			require.NoError(b, err)
			revs[w] = rev
		}
		return func(w, _ int) error {
			rev, err := kvb.Update(context.Background(), keys[w], []byte(`{"k":1}`), revs[w])
			revs[w] = rev
			return err
		}
	}
}

// claims has each racer Claim the round's record with state.Client.
func claims(nc *nats.Conn) func(b *testing.B) raceFunc {
	return func(b *testing.B) raceFunc {
		clients := make([]*state.Client, racers)
		for r := range clients {
			var err error
			clients[r], err = state.NewClient(nc, fmt.Sprintf("agent-%d", r))
			require.NoError(b, err)
		}
		prefix := fmt.Sprintf("race-%d", time.Now().UnixNano())
		return func(r, round int) (bool, error) {
			_, err := clients[r].Claim(context.Background(), "bench", fmt.Sprintf("%s-%d", prefix, round), time.Hour, nil)
			if errors.Is(err, state.ErrConflict) {
				return false, nil
			}
			return err == nil, err
		}
	}
}

func kvCreates(kvb jetstream.KeyValue) func(b *testing.B) raceFunc {
	return func(b *testing.B) raceFunc {
		prefix := fmt.Sprintf("race-%d", time.Now().UnixNano())
		return func(_, round int) (bool, error) {
			_, err := kvb.Create(context.Background(), fmt.Sprintf("%s-%d", prefix, round), []byte(`{"holder":"x"}`))
			if errors.Is(err, jetstream.ErrKeyExists) {
				return false, nil
			}
			return err == nil, err
		}
	}
}

// results keeps each case's figures for the ratios logged at the end.
type results struct {
	mu     sync.Mutex
	got    map[string]figures
	counts map[string]func() float64 // each case's fsync count, run at the end
	settle func(b *testing.B)        // run before each case; nil for none
}

type figures struct {
	p50, p99 time.Duration
	rate     float64
	syncs    float64 // -1: not counted
}

func newResults() *results {
	return &results{got: map[string]figures{}, counts: map[string]func() float64{}}
}

// run measures one update case: b.N operations split over writers, each
// writer one at a time; then syncOps more under strace.
func (r *results) run(b *testing.B, name string, writers int, setup func(b *testing.B) opFunc) {
	parent := b
	b.Run(name, func(b *testing.B) {
		if r.settle != nil {
			r.settle(b)
		}
		// The case's resources live until the fsync counts at the end.
		op := setup(parent)
		next := make([]int, writers)
		timed := func(w int) (time.Duration, error) {
			start := time.Now()
			err := op(w, next[w])
			next[w]++
			return time.Since(start), err
		}
		rec := latency.NewRecorder(b.N)
		b.ResetTimer()
		elapsed, err := spread(b.N, writers, func(w int) error {
			d, err := timed(w)
			rec.Record(d)
			return err
		})
		b.StopTimer()
		require.NoError(b, err)
		f := figures{rate: latency.Throughput(b.N, elapsed), syncs: -1}
		s := rec.Summary()
		f.p50, f.p99 = s.P50, s.P99
		r.report(b, name, f, func() float64 {
			return countSyncs(parent, syncOps, func() error {
				_, err := spread(syncOps, writers, func(w int) error { _, err := timed(w); return err })
				return err
			})
		})
	})
}

// race measures the claim race: b.N rounds, in each racers agents try
// to take one new record at once; exactly one must win. Latency is each
// attempt's, the rate is attempts per second.
func (r *results) race(b *testing.B, name string, setup func(b *testing.B) raceFunc) {
	parent := b
	b.Run(name, func(b *testing.B) {
		if r.settle != nil {
			r.settle(b)
		}
		try := setup(parent)
		round := 0
		rounds := func(n int, rec *latency.Recorder) error {
			for range n {
				var (
					wg   sync.WaitGroup
					mu   sync.Mutex
					wins int
					errs []error
				)
				start := make(chan struct{})
				for a := range racers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						<-start
						t0 := time.Now()
						won, err := try(a, round)
						d := time.Since(t0)
						mu.Lock()
						defer mu.Unlock()
						if won {
							wins++
						}
						if err != nil {
							errs = append(errs, err)
						}
						if rec != nil {
							rec.Record(d)
						}
					}()
				}
				close(start)
				wg.Wait()
				round++
				if err := errors.Join(errs...); err != nil {
					return err
				}
				if wins != 1 {
					return fmt.Errorf("round %d: %d winners", round, wins)
				}
			}
			return nil
		}
		rec := latency.NewRecorder(b.N * racers)
		b.ResetTimer()
		start := time.Now()
		err := rounds(b.N, rec)
		elapsed := time.Since(start)
		b.StopTimer()
		require.NoError(b, err)
		f := figures{rate: latency.Throughput(b.N*racers, elapsed), syncs: -1}
		s := rec.Summary()
		f.p50, f.p99 = s.P50, s.P99
		r.report(b, name, f, func() float64 {
			n := countSyncs(parent, syncOps/racers, func() error { return rounds(syncOps/racers, nil) })
			if n < 0 {
				return n
			}
			return n / racers // per attempt
		})
	})
}

// report reports a case's timed figures and keeps count, which counts its
// fsyncs per operation, for countSyncsAll (the count of the case's last
// run, the one with the full b.N).
func (r *results) report(b *testing.B, name string, f figures, count func() float64) {
	b.ReportMetric(float64(f.p50.Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(f.p99.Nanoseconds())/1e3, "p99-µs")
	b.ReportMetric(f.rate, "ops/s")
	r.mu.Lock()
	r.got[name] = f
	r.counts[name] = count
	r.mu.Unlock()
}

// countSyncsAll counts every case's fsyncs per operation, after all the
// timed runs: strace slows the whole process while it is attached (and
// for a while after), which must not fall on another case's timing.
func (r *results) countSyncsAll(b *testing.B) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for name, count := range r.counts {
		if r.settle != nil {
			r.settle(b)
		}
		f := r.got[name]
		f.syncs = count()
		r.got[name] = f
	}
}

// logRatios logs every case's p50, p99 and rate as multiples of its
// group's kv-sync-always case (kv-create-sync-always for the race):
// below 1 is faster than KV.
func (r *results) logRatios(b *testing.B) {
	r.mu.Lock()
	defer r.mu.Unlock()
	names := make([]string, 0, len(r.got))
	for n := range r.got {
		names = append(names, n)
	}
	sort.Strings(names)
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n%-44s %9s %9s %10s %8s | vs kv-sync-always: %6s %6s %6s\n", "case", "p50-µs", "p99-µs", "ops/s", "syncs/op", "p50", "p99", "rate")
	for _, n := range names {
		f := r.got[n]
		group := n[:strings.LastIndex(n, "/")]
		ref, ok := r.got[group+"/kv-sync-always"]
		if !ok {
			ref, ok = r.got[group+"/kv-create-sync-always"]
		}
		fmt.Fprintf(&sb, "%-44s %9.0f %9.0f %10.0f %8.2f |", n, us(f.p50), us(f.p99), f.rate, f.syncs)
		if ok {
			fmt.Fprintf(&sb, " %18.2fx %5.2fx %5.2fx", us(f.p50)/us(ref.p50), us(f.p99)/us(ref.p99), f.rate/ref.rate)
		}
		sb.WriteString("\n")
	}
	b.Log(sb.String())
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

// spread runs n calls of op split over writers goroutines, each running
// its calls one at a time, and returns the wall time and the first error.
func spread(n, writers int, op func(w int) error) (time.Duration, error) {
	start := time.Now()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	for w := range writers {
		count := n / writers
		if w < n%writers {
			count++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range count {
				if err := op(w); err != nil {
					mu.Lock()
					first = cmpErr(first, err)
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(start), first
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// waitAuditCaughtUp waits until the audit service behind nc has
// committed everything CODI_AUDIT holds.
func waitAuditCaughtUp(b *testing.B, nc *nats.Conn) {
	b.Helper()
	js, err := jetstream.New(nc)
	require.NoError(b, err)
	ac, err := audit.NewClient(nc)
	require.NoError(b, err)
	ctx := context.Background()
	require.Eventually(b, func() bool {
		stream, err := js.Stream(ctx, bus.StreamAudit)
		if err != nil {
			return false
		}
		st, err := ac.Status(ctx)
		return err == nil && st.StreamSeq >= stream.CachedInfo().State.LastSeq
	}, time.Minute, 10*time.Millisecond, "the audit service did not catch up")
}

// quiet drops pebble's informational logs.
type quiet struct{}

func (quiet) Infof(string, ...any) {}
func (quiet) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}
