package server

import (
	"fmt"
	"path/filepath"

	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/boltkv"
)

// openStores opens the state and audit stores: two bbolt files, so that
// their commits do not wait on one another, one bbolt file for both with
// Config.InlineAudit, or one FoundationDB database for both (their keys
// live under distinct tuple prefixes).
func openStores(cfg Config) (st, au kv.Store, err error) {
	if cfg.Store == StoreFDB {
		db, err := openFDB(cfg.FDBClusterFile)
		return db, db, err
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
	au, err = boltkv.Open(filepath.Join(cfg.DataDir, "audit.db"), boltkv.Options{InitialMmapSize: 8 << 30})
	if err != nil {
		_ = st.Close()
		return nil, nil, fmt.Errorf("audit store: %w", err)
	}
	return st, au, nil
}
