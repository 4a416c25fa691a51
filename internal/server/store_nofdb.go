//go:build !fdb

package server

import (
	"errors"

	"github.com/codi2/codi2/internal/kv"
)

func openFDB(string) (kv.Store, error) {
	return nil, errors.New("--store fdb: this binary was built without FoundationDB support; rebuild with -tags fdb (needs libfdb_c)")
}
