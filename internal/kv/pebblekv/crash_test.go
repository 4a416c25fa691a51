package pebblekv_test

import (
	"path/filepath"
	"testing"

	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/kvtest"
	"github.com/codi2/codi2/internal/kv/pebblekv"
)

func openCrash(path string) (kv.Store, error) { return pebblekv.Open(path, pebblekv.Options{}) }

// TestStore_Update_CrashChild is the child process of
// TestStore_Update_SurvivesKill (kvtest.CrashChild: odd batches with
// Update, even ones with UpdateAsync and its durable); run alone it does
// nothing.
func TestStore_Update_CrashChild(t *testing.T) { kvtest.CrashChild(openCrash) }

// TestStore_Update_SurvivesKill kills a child committing batches with
// SIGKILL, twenty times on one directory, and checks that every batch it
// reported durable is there in full and none is partial (kvtest.RunCrash).
func TestStore_Update_SurvivesKill(t *testing.T) {
	kvtest.RunCrash(t, "TestStore_Update_CrashChild", filepath.Join(t.TempDir(), "crash"), openCrash)
}
