package kvtest_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/kvtest"
	"github.com/codi2/codi2/internal/kv/pebblekv"
	"github.com/stretchr/testify/require"
)

// TestRun_Bolt runs the conformance suite on the default backend from the
// suite's own package, so that `go test -cover` measures the suite itself.
func TestRun_Bolt(t *testing.T) {
	kvtest.Run(t, func(t *testing.T) kv.Store { return kvtest.NewBolt(t) })
}

// TestRunAsync_Pebble runs the AsyncStore suite on the backend with a
// split commit.
func TestRunAsync_Pebble(t *testing.T) {
	kvtest.RunAsync(t, func(t *testing.T) kv.AsyncStore { return kvtest.NewPebble(t) })
}

// TestRunAsync_BoltFallback runs the AsyncStore suite on bbolt through
// kv.UpdateAsync's fallback to Update, which must keep the same promises.
func TestRunAsync_BoltFallback(t *testing.T) {
	kvtest.RunAsync(t, func(t *testing.T) kv.AsyncStore { return fallback{kvtest.NewBolt(t)} })
}

// fallback is a Store whose UpdateAsync is kv.UpdateAsync's fallback.
type fallback struct{ kv.Store }

func (f fallback) UpdateAsync(ctx context.Context, fn func(tx kv.Txn) error) (func() error, error) {
	return kv.UpdateAsync(ctx, f.Store, fn)
}

// TestRunEmbedded_Pebble runs the embedded backends' suite from the
// suite's own package (boltkv and pebblekv run it from theirs too), on the
// backend that also goes through its UpdateAsync branches.
func TestRunEmbedded_Pebble(t *testing.T) {
	kvtest.RunEmbedded(t, func(t *testing.T, timeout time.Duration) kv.Store {
		s, err := pebblekv.Open(filepath.Join(t.TempDir(), "pebble"), pebblekv.Options{TxnTimeout: timeout})
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		return s
	})
}

func openCrashPebble(path string) (kv.Store, error) { return pebblekv.Open(path, pebblekv.Options{}) }

// TestCrashChild_Pebble is TestRunCrash_Pebble's child (CrashChild).
func TestCrashChild_Pebble(t *testing.T) { kvtest.CrashChild(openCrashPebble) }

// TestRunCrash_Pebble runs the kill -9 test from the suite's own package
// (boltkv and pebblekv run it from theirs too).
func TestRunCrash_Pebble(t *testing.T) {
	kvtest.RunCrash(t, "TestCrashChild_Pebble", filepath.Join(t.TempDir(), "crash"), openCrashPebble)
}
