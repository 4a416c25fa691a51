package state_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/vfs"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/codi2/codi2/bus"
	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/pebblekv"
	"github.com/codi2/codi2/state"
	"github.com/codi2/codi2/subjects"
)

// The state service on pebble (answers before the fsync, watermark after
// it) loses nothing below a committed watermark it published when the
// power goes. Five writers merge their own records; at a random moment the
// test reads the highest codi.state.committed seen so far, and from then on
// the file system drops every fsync (vfs.NewStrictMem): the "power" is
// cut, and everything the service confirms afterwards proves nothing. The
// service is stopped, the unsynced writes are discarded, and the store is
// opened again: its applied watermark is at least the one read before the
// cut. Then the service runs again on it and takes the lost tail from
// CODI_STATE: every answered command is applied exactly once (each
// writer's record is at the revision of its answered merges, its field n
// at the last of them). Three rounds run on the same file system.
//
// Each fsync takes slowSync, as on a disk, so that the cut often falls
// between a transaction's apply and its fsync: a watermark published before
// the fsync would be caught.
func TestService_PowerLoss_NothingBelowWatermarkLost(t *testing.T) {
	e := newEnv(t)
	fs := vfs.NewStrictMem()
	open := func() kv.Store {
		s, err := pebblekv.Open("db", pebblekv.Options{FS: slowSyncFS{fs}})
		require.NoError(t, err)
		return s
	}
	var seen atomic.Uint64
	sub, err := e.nc.Subscribe(subjects.StateCommitted, func(m *nats.Msg) {
		var w struct {
			StreamSeq uint64 `json:"stream_seq"`
		}
		if json.Unmarshal(m.Data, &w) == nil && w.StreamSeq > seen.Load() {
			seen.Store(w.StreamSeq)
		}
	})
	require.NoError(t, err)
	defer sub.Unsubscribe()
	require.NoError(t, e.nc.Flush())

	const writers = 5
	answered := make([]int64, writers) // merges answered applied, per writer, over all rounds
	for round := range 3 {
		store := open()
		r := e.startOn(store, fastConfig())

		var stop atomic.Bool
		var wg sync.WaitGroup
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := state.NewClient(e.nc, fmt.Sprintf("agent-%d", w))
				if !assert.NoError(t, err) {
					return
				}
				for !stop.Load() {
					n := answered[w] + 1
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					_, err := c.Apply(ctx, "task", fmt.Sprintf("w%d", w), state.Command{Op: state.OpMerge, Fields: map[string]any{"n": n}})
					cancel()
					if !assert.NoError(t, err, "writer %d merge %d", w, n) {
						return
					}
					answered[w] = n
				}
			}()
		}
		require.Eventually(t, func() bool { return seen.Load() > 0 }, 10*time.Second, time.Millisecond)
		time.Sleep(time.Duration(20+rand.IntN(200)) * time.Millisecond) // a random point under load
		confirmed := seen.Load()
		fs.SetIgnoreSyncs(true) // the power is cut
		stop.Store(true)
		wg.Wait()
		r.stop(t)
		require.NoError(t, store.Close())
		fs.ResetToSyncedState()
		fs.SetIgnoreSyncs(false)

		store = open()
		var kept uint64
		require.NoError(t, store.View(ctxT(t), func(tx kv.ReadTxn) error {
			var err error
			kept, err = state.StoredWatermark(tx, bus.StreamState)
			return err
		}))
		require.GreaterOrEqual(t, kept, confirmed, "round %d: the store lost commands below a committed watermark it published", round)
		t.Logf("round %d: committed %d before the cut, %d kept", round, confirmed, kept)

		// The service takes up the lost tail from the stream.
		r = e.startOn(store, fastConfig())
		info, err := e.js.Stream(ctxT(t), bus.StreamState)
		require.NoError(t, err)
		e.waitApplied(info.CachedInfo().State.LastSeq)
		c := e.client("observer")
		for w := range writers {
			rec, err := c.Get(ctxT(t), "task", fmt.Sprintf("w%d", w), 0)
			require.NoError(t, err)
			assert.Equal(t, uint64(answered[w]), rec.Rev, "writer %d: every answered merge applied exactly once", w)
			assert.Equal(t, fmt.Sprint(answered[w]), string(rec.Fields["n"]), "writer %d", w)
		}
		r.stop(t)
		require.NoError(t, store.Close())
	}
}

// slowSync is how long slowSyncFS's fsyncs take: a disk's, about.
const slowSync = 2 * time.Millisecond

// slowSyncFS is a vfs.FS whose files take slowSync to fsync.
type slowSyncFS struct{ vfs.FS }

func (f slowSyncFS) Create(name string) (vfs.File, error) {
	return slowFile(f.FS.Create(name))
}

func (f slowSyncFS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	return slowFile(f.FS.Open(name, opts...))
}

func (f slowSyncFS) OpenReadWrite(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	return slowFile(f.FS.OpenReadWrite(name, opts...))
}

func (f slowSyncFS) ReuseForWrite(oldname, newname string) (vfs.File, error) {
	return slowFile(f.FS.ReuseForWrite(oldname, newname))
}

func slowFile(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return slowSyncFile{f}, nil
}

type slowSyncFile struct{ vfs.File }

func (f slowSyncFile) Sync() error {
	time.Sleep(slowSync)
	return f.File.Sync()
}

func (f slowSyncFile) SyncData() error {
	time.Sleep(slowSync)
	return f.File.SyncData()
}
