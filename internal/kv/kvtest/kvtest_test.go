package kvtest_test

import (
	"testing"

	"github.com/codi2/codi2/internal/kv"
	"github.com/codi2/codi2/internal/kv/kvtest"
)

// TestRun_Bolt runs the conformance suite on the default backend from the
// suite's own package, so that `go test -cover` measures the suite itself.
func TestRun_Bolt(t *testing.T) {
	kvtest.Run(t, func(t *testing.T) kv.Store { return kvtest.NewBolt(t) })
}
