package server

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/rs/zerolog"

	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/boltkv"
	"github.com/codi2/codi2/internal/kv/pebblekv"
)

// PebbleDir is the directory, in the data directory, of the pebble store
// (Config.Store StorePebble).
const PebbleDir = "pebble"

// boltFiles are the bbolt stores a data directory may hold: the state and
// audit files, and InlineAudit's one file.
var boltFiles = []string{"state.db", "audit.db", "store.db"}

// openStores opens the state and audit stores: two bbolt files, so that
// their commits do not wait on one another, one bbolt file for both with
// Config.InlineAudit, one pebble database for both with StorePebble, or one
// FoundationDB database for both (their keys live under distinct tuple
// prefixes). An embedded store refuses a data directory that holds the
// other embedded engine's files, rather than starting empty beside them.
func openStores(cfg Config, log zerolog.Logger) (st, au kv.Store, err error) {
	if cfg.Store != StoreFDB {
		if err := refuseBothEngines(cfg.DataDir); err != nil {
			return nil, nil, err
		}
	}
	switch cfg.Store {
	case StoreFDB:
		db, err := openFDB(cfg.FDBClusterFile)
		return db, db, err
	case StorePebble:
		if fi, err := os.Stat(filepath.Join(cfg.DataDir, PebbleDir)); err == nil && !fi.IsDir() {
			return nil, nil, fmt.Errorf("%w: %s is a file, not the pebble store's directory: move it out of %s", ErrOtherStore, filepath.Join(cfg.DataDir, PebbleDir), cfg.DataDir)
		}
		if err := refuseOtherEngine(cfg.DataDir, StorePebble, StoreBolt, boltFiles...); err != nil {
			return nil, nil, err
		}
		// One database, so that a state command and its audit record
		// commit together, in one write to its log.
		db, err := pebblekv.Open(filepath.Join(cfg.DataDir, PebbleDir), pebblekv.Options{
			Log: log.With().Str("component", "store").Logger(),
		})
		if err != nil {
			return nil, nil, fmt.Errorf("store: %w", err)
		}
		return db, db, nil
	}
	if hasPebbleDir(cfg.DataDir) {
		return nil, nil, refuseOtherEngine(cfg.DataDir, StoreBolt, StorePebble, PebbleDir)
	}
	if err := refuseOtherBoltLayout(cfg.DataDir, cfg.InlineAudit); err != nil {
		return nil, nil, err
	}
	// A memory map larger than the file spares commits the remap that would
	// wait for every open read (address space only, not memory or disk).
	if cfg.InlineAudit {
		// One file, so that a state command and its audit record commit
		// together (their keys live under distinct tuple prefixes).
		st, err = boltkv.Open(filepath.Join(cfg.DataDir, "store.db"), boltkv.Options{InitialMmapSize: 8 << 30})
		if err != nil {
			return nil, nil, fmt.Errorf("store: %w", err)
		}
		return st, st, nil
	}
	st, err = boltkv.Open(filepath.Join(cfg.DataDir, "state.db"), boltkv.Options{InitialMmapSize: 1 << 30})
	if err != nil {
		return nil, nil, fmt.Errorf("state store: %w", err)
	}
	// The audit log's keys are mostly appended: pages split fuller than
	// bbolt's default, and larger than the OS page, cost its commits fewer
	// page writes (a file made before keeps the page size it has).
	au, err = boltkv.Open(filepath.Join(cfg.DataDir, "audit.db"), boltkv.Options{InitialMmapSize: 8 << 30, FillPercent: boltkv.AppendFillPercent, PageSize: boltkv.AppendPageSize})
	if err != nil {
		_ = st.Close()
		return nil, nil, fmt.Errorf("audit store: %w", err)
	}
	return st, au, nil
}

// present returns those of names that exist in dataDir, in order.
func present(dataDir string, names ...string) []string {
	var found []string
	for _, name := range names {
		if _, err := os.Stat(filepath.Join(dataDir, name)); err == nil {
			found = append(found, name)
		}
	}
	return found
}

// refuseOtherEngine returns an error matching ErrOtherStore when dataDir
// holds any of names, the files of the engine other than store.
func refuseOtherEngine(dataDir, store, other string, names ...string) error {
	found := present(dataDir, names...)
	if len(found) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s holds %s, the %s store's data; --store %s would start empty beside it: run with --store %s, or use another --data directory",
		ErrOtherStore, dataDir, strings.Join(found, ", "), other, store, other)
}

// hasPebbleDir reports whether dataDir holds the pebble store's directory
// (a plain file of that name is not one).
func hasPebbleDir(dataDir string) bool {
	fi, err := os.Stat(filepath.Join(dataDir, PebbleDir))
	return err == nil && fi.IsDir()
}

// refuseBothEngines returns an error matching ErrOtherStore when dataDir
// holds both embedded engines' data: neither --store nor the detection of
// the engine a directory holds can tell which one is the server's, and
// each --store would only be refused for the other's files.
func refuseBothEngines(dataDir string) error {
	bolt := present(dataDir, boltFiles...)
	if len(bolt) == 0 || !hasPebbleDir(dataDir) {
		return nil
	}
	return fmt.Errorf("%w: %s holds both the bolt store's data (%s) and the pebble store's (%s/): codi2 will not choose between them; move the one that is not this server's out of %s",
		ErrOtherStore, dataDir, strings.Join(bolt, ", "), PebbleDir, dataDir)
}

// refuseOtherBoltLayout returns an error matching ErrOtherStore when
// dataDir holds the other bolt layout's files: store.db (InlineAudit's one
// file) for the two-file layout, state.db or audit.db for InlineAudit.
// Each layout would otherwise start empty beside the other's data.
func refuseOtherBoltLayout(dataDir string, inline bool) error {
	names, layout, other := []string{"store.db"}, "two files (state.db, audit.db)", "one file (store.db, InlineAudit)"
	if inline {
		names, layout, other = []string{"state.db", "audit.db"}, other, layout
	}
	found := present(dataDir, names...)
	if len(found) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s holds %s, the bolt store's data in %s; the bolt store in %s would start empty beside it: use the same layout, or another --data directory",
		ErrOtherStore, dataDir, strings.Join(found, ", "), other, layout)
}
