package boltkv_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/boltkv"
	"github.com/codi2/codi2/internal/kv/kvtest"
)

func openCrash(path string) (kv.Store, error) {
	return boltkv.Open(path, boltkv.Options{Timeout: 5 * time.Second})
}

// TestStore_Update_CrashChild is the child process of
// TestStore_Update_SurvivesKill (kvtest.CrashChild); run alone it does
// nothing.
func TestStore_Update_CrashChild(t *testing.T) { kvtest.CrashChild(openCrash) }

// TestStore_Update_SurvivesKill kills a child committing batches with
// SIGKILL, twenty times on one file, and checks that every batch it
// reported is there in full and none is partial (kvtest.RunCrash).
func TestStore_Update_SurvivesKill(t *testing.T) {
	kvtest.RunCrash(t, "TestStore_Update_CrashChild", filepath.Join(t.TempDir(), "crash.db"), openCrash)
}
