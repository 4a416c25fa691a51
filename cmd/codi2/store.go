package main

import (
	"fmt"
	"path/filepath"

	"github.com/codi2/codi2/internal/kv/boltkv"
	"github.com/rs/zerolog"
)

// openStores opens the state and audit stores named by cfg.Store.
func openStores(cfg serveConfig, dataDir string, log zerolog.Logger) (stores, error) {
	if cfg.Store == "fdb" {
		st, err := openFDB(cfg.FDBClusterFile)
		if err != nil {
			return stores{}, err
		}
		return stores{state: st, audit: st}, nil
	}
	// A memory map larger than the file spares commits the remap that would
	// wait for every open read (address space only, not memory or disk).
	st, err := boltkv.Open(filepath.Join(dataDir, "state.db"), boltkv.Options{InitialMmapSize: 1 << 30})
	if err != nil {
		return stores{}, fmt.Errorf("state store: %w", err)
	}
	au, err := boltkv.Open(filepath.Join(dataDir, "audit.db"), boltkv.Options{InitialMmapSize: 8 << 30})
	if err != nil {
		_ = st.Close()
		return stores{}, fmt.Errorf("audit store: %w", err)
	}
	return stores{state: st, audit: au}, nil
}
