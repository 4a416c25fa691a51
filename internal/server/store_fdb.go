//go:build fdb

package server

import (
	"fmt"

	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/fdbkv"
)

// openFDB opens one FoundationDB database for both services: their keys live
// under distinct tuple prefixes ("state", "audit", and their own "meta" keys).
func openFDB(clusterFile string) (kv.Store, error) {
	st, err := fdbkv.Open(fdbkv.Options{ClusterFile: clusterFile})
	if err != nil {
		return nil, fmt.Errorf("fdb store: %w", err)
	}
	return st, nil
}
