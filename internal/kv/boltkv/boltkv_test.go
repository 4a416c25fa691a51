package boltkv_test

import (
	"testing"

	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/kvtest"
)

func TestStore_Conformance(t *testing.T) {
	kvtest.Run(t, func(t *testing.T) kv.Store { return kvtest.NewBolt(t) })
}
