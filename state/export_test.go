package state

import "github.com/codi2/codi2/internal/kv"

// StoredWatermark reads the applied watermark of stream kept in the store,
// for tests that reopen a store without running the service.
func StoredWatermark(tx kv.ReadTxn, stream string) (uint64, error) {
	seq, _, err := getAppliedAt(tx, stream)
	return seq, err
}
